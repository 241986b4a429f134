/* Reference for "enter a running container and run /bin/true":
 *
 * start (untimed): a fresh cgroup "e" in every hierarchy and an init made
 *   like create_fork.c's child, which then sleeps in pause().
 * once (timed):
 *   clone3(CLONE_INTO_CGROUP(v2 dir))                  the intermediate
 *     intermediate: write "0" to each v1 cgroup.procs,
 *                   setns(init pidfd, every CLONE_NEW* flag) in one call,
 *                   [user ns: become root], fork
 *       grandchild: execve(/bin/true)    (first process in init's pid ns)
 *     intermediate: waitpid, _exit with its status
 *   waitid(P_PIDFD) on the intermediate
 */
#include "ref.h"

static struct ref_cgroups E;
static int e_v2dir = -1, e_procs[REF_MAX_HIER], e_nprocs, e_pidfd = -1;
static pid_t e_pid = -1;
static unsigned long long e_flags;

static char *const true_env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };

int ref_enter_start(unsigned long long nsflags)
{
	int r = ref_cgroups_make(&E, "e");
	if (r < 0)
		return r;
	r = ref_cgroups_open(&E, &e_v2dir, e_procs);
	if (r < 0)
		return r;
	e_nprocs = r;
	e_flags = nsflags;
	int userns = (nsflags & CLONE_NEWUSER) != 0, sync[2];
	if (pipe2(sync, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = ref_clone3(nsflags, e_v2dir, &e_pidfd);
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		char go;
		close(sync[1]);
		if (read(sync[0], &go, 1) != 1)
			_exit(126);
		if (userns && ref_become_root() < 0)
			_exit(126);
		if (ref_pwrite_zero(e_procs, e_nprocs) < 0)
			_exit(125);
		for (;;)
			pause();
	}
	close(sync[0]);
	r = userns ? ref_write_maps(pid) : 0;
	if (write(sync[1], "x", 1) < 0 && r == 0)
		r = -errno;
	close(sync[1]);
	e_pid = pid;
	/* Let init join its v1 cgroups before anyone enters. */
	usleep(20000);
	return r;
}

int ref_enter_init_pid(void) { return e_pid; }

int ref_enter_once(const char *path)
{
	int pidfd = -1;
	pid_t mid = ref_clone3(0, e_v2dir, &pidfd);
	if (mid < 0)
		return -errno;
	if (mid == 0) {
		if (ref_pwrite_zero(e_procs, e_nprocs) < 0)
			_exit(125);
		if (setns(e_pidfd, (int)e_flags) < 0)
			_exit(124);
		if ((e_flags & CLONE_NEWUSER) && ref_become_root() < 0)
			_exit(123);
		pid_t t = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		if (t < 0)
			_exit(122);
		if (t == 0) {
			char *argv[] = { (char *)path, NULL };
			execve(path, argv, true_env);
			_exit(127);
		}
		int st;
		while (waitpid(t, &st, 0) < 0 && errno == EINTR)
			;
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128);
	}
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	close(pidfd);
	if (si.si_code != CLD_EXITED || si.si_status != 0)
		return -(1000 + si.si_status);
	return 0;
}

void ref_enter_stop(void)
{
	if (e_pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, e_pidfd, SIGKILL, NULL, 0);
		siginfo_t si;
		while (waitid((idtype_t)P_PIDFD, (id_t)e_pidfd, &si, WEXITED) < 0 && errno == EINTR)
			;
		close(e_pidfd);
		e_pidfd = -1;
	}
	if (e_v2dir >= 0)
		close(e_v2dir);
	e_v2dir = -1;
	for (int i = 0; i < e_nprocs; i++)
		close(e_procs[i]);
	e_nprocs = 0;
	ref_cgroups_remove(&E);
	E.n = 0;
}
