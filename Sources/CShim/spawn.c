/* Joining a container: the child side of fork_into_container, of spawning
 * an init and of entering a running container.  No Swift runs here.
 *
 * Report protocol (SOCK_SEQPACKET, struct ccs_report):
 *   child -> parent  'P' pid        the intermediate made the target (pid in our ns)
 *   child -> parent  'O'            target is ready and returns 0 (no exec)
 *   child -> parent  'G'            target waits at the start gate (exec follows)
 *   child -> parent  'E' stage err  a step failed
 *   EOF                             the target exec'd (the socket is CLOEXEC)
 * With a new pid namespace 'P' (from the intermediate) and 'O'/'G' (from the
 * target) come in either order: the parent waits for both.
 */
#include "cshim.h"
#include "child.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/wait.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static void reset_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < 65; s++)
		(void)syscall(SYS_rt_sigaction, s, &sa, NULL, 8);
	uint64_t none = 0;
	(void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
}

/* Join everything but the pid ns. Returns 0 or a stage with errno set. */
static int join_namespaces(const struct ccs_join_plan *p)
{
	if (p->die_with_parent)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Root's way: the cgroup.procs fds ctrobjd opened, then the user ns.
	 * Everyone else asks ctrobjd from inside the container's user ns (a
	 * setuid-root program exec'd there later gains nothing: its owner is
	 * not mapped), which ctrobjd checks. */
	if (!p->join_via_daemon && ccs_join_cgroups(p->cgroup_procs_fds, p->cgroup_count) < 0)
		return CCS_STAGE_CGROUP;
	if (p->userns_fd >= 0 && setns(p->userns_fd, CLONE_NEWUSER) < 0)
		return CCS_STAGE_USERNS;
	if (p->join_via_daemon && ccs_child_cgroup_join(p->join_container_fd, p->daemon_path) < 0)
		return CCS_STAGE_CGROUP;
	for (int i = 0; i < p->ns_count; i++)
		if (setns(p->ns_fds[i], p->ns_types[i]) < 0)
			return CCS_STAGE_SETNS;
	if (p->unshare_cgroup && unshare(CLONE_NEWCGROUP) < 0)
		return CCS_STAGE_SETNS;
	if (p->pidns_mode == 1 && unshare(CLONE_NEWPID) < 0)
		return CCS_STAGE_PIDNS;
	if (p->pidns_mode == 2 && setns(p->pidns_fd, CLONE_NEWPID) < 0)
		return CCS_STAGE_PIDNS;
	if (p->become_root && ccs_raw_become(0, 0, 1) < 0)
		return CCS_STAGE_SETID;
	if (p->chdir_root && chdir("/") < 0)
		return CCS_STAGE_CHDIR;
	if (p->die_with_parent)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	return 0;
}

/* The target: exec, or tell the parent we are ready and return 0. */
/* Drop to the privilege of the container's init (see limit_privileges in
 * cshim.h): the bounding set first (root's exec computes its caps from it),
 * then inheritable and ambient, then no_new_privs. Raw syscalls only. */
static int limit_privileges(const struct ccs_join_plan *p)
{
	for (int cap = 0; cap < 64; cap++) {
		if (p->cap_bounding & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
			break; /* past the kernel's last capability */
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return -1;
	}
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return -1;
	d[0].inheritable = 0;
	d[1].inheritable = 0;
	if (syscall(SYS_capset, &h, d) < 0)
		return -1;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return 0;
}

static int become_target(const struct ccs_join_plan *p, int rep)
{
	if (!p->path) {
		ccs_child_report(rep, 'O', 0, 0);
		close(rep);
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		if (p->stdio[i] < 0)
			continue;
		if (p->stdio[i] == i) {
			int fl = fcntl(i, F_GETFD);
			if (fl >= 0)
				fcntl(i, F_SETFD, fl & ~FD_CLOEXEC);
		} else if (dup2(p->stdio[i], i) < 0) {
			ccs_child_report(rep, 'E', CCS_STAGE_STDIO, errno);
			_exit(127);
		}
	}
	/* Everything above stdio closes at exec, except keep_fd (and rep,
	 * which is CLOEXEC already and tells the parent the exec happened). */
	if (p->keep_fd > 2) {
		if (p->keep_fd > 3)
			ccs_close_range(3, (unsigned)p->keep_fd - 1, CLOSE_RANGE_CLOEXEC);
		ccs_close_range((unsigned)p->keep_fd + 1, ~0U, CLOSE_RANGE_CLOEXEC);
		int fl = fcntl(p->keep_fd, F_GETFD);
		if (fl >= 0)
			fcntl(p->keep_fd, F_SETFD, fl & ~FD_CLOEXEC);
	} else {
		ccs_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	}
	if (p->gate_fd >= 0) {
		/* Tell the parent we are at the gate; exec errors after it
		 * show only as exit status 127. */
		ccs_child_report(rep, 'G', 0, 0);
		close(rep);
		char go;
		ssize_t n;
		do {
			n = read(p->gate_fd, &go, 1);
		} while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(127);
	}
	if (p->new_pgrp)
		(void)setpgid(0, 0);
	if (p->limit_privileges && limit_privileges(p) < 0) {
		ccs_child_report(rep, 'E', CCS_STAGE_CAPS, errno);
		_exit(127);
	}
	reset_signals();
	execve(p->path, p->argv, p->envp);
	ccs_child_report(rep, 'E', CCS_STAGE_EXEC, errno);
	_exit(127);
}

static void reap(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR)
		;
}

struct first_ctx {
	const struct ccs_join_plan *p;
	int rep, other;
};

/* The first child when it shares the caller's memory (CLONE_VM|CLONE_VFORK,
 * as posix_spawn does): no copy of the caller's page tables. The caller is
 * suspended until this child execs or exits, and signals are blocked. */
static int first_child(void *arg)
{
	struct first_ctx *c = arg;
	const struct ccs_join_plan *p = c->p;
	close(c->other);
	int st = join_namespaces(p);
	if (st) {
		ccs_child_report(c->rep, 'E', st, errno);
		_exit(127);
	}
	if (!p->pidns_mode) {
		become_target(p, c->rep); /* execs */
		_exit(127);
	}
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_PARENT;
	pid_t target = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (target < 0) {
		ccs_child_report(c->rep, 'E', CCS_STAGE_CLONE, errno);
		_exit(127);
	}
	if (target == 0) {
		become_target(p, c->rep); /* execs: its memory is its own copy */
		_exit(127);
	}
	ccs_child_report(c->rep, 'P', 0, target);
	_exit(0);
}

/* Shared memory only where nothing can go wrong with it: an exec at the end,
 * no start gate (the caller could not open it while suspended), and no time
 * namespace (setns refuses a task whose mm is shared). */
static int can_share_memory(const struct ccs_join_plan *p)
{
	if (!p->path || p->gate_fd >= 0 || p->into_cgroup)
		return 0;
	for (int i = 0; i < p->ns_count; i++)
		if (p->ns_types[i] == CLONE_NEWTIME)
			return 0;
	return 1;
}

#define CCS_CHILD_STACK (256 * 1024)

void ccs_plan_set_cgroup_join(struct ccs_join_plan *p, int container_fd, const char *daemon_path)
{
	p->join_via_daemon = 1;
	p->join_container_fd = container_fd;
	memset(p->daemon_path, 0, sizeof(p->daemon_path));
	for (size_t i = 0; i < sizeof(p->daemon_path) - 1 && daemon_path[i]; i++)
		p->daemon_path[i] = daemon_path[i];
}

pid_t ccs_join_fork(const struct ccs_join_plan *p, int *stage)
{
	int sv[2];
	*stage = 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		*stage = CCS_STAGE_SYNC;
		return -1;
	}
	pid_t mid = -1;
	int shared = 0;
	void *stack = can_share_memory(p)
		? mmap(NULL, CCS_CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0)
		: MAP_FAILED;
	if (stack != MAP_FAILED) {
		struct first_ctx ctx = { p, sv[1], sv[0] };
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		mid = clone(first_child, (char *)stack + CCS_CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &ctx);
		int e = errno;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		munmap(stack, CCS_CHILD_STACK);
		errno = e;
		shared = mid > 0;
	}
	if (!shared && p->into_cgroup) {
		/* Born in the container's cgroup: no migration afterwards. */
		struct clone_args args;
		memset(&args, 0, sizeof(args));
		args.flags = CLONE_INTO_CGROUP;
		args.exit_signal = SIGCHLD;
		args.cgroup = (uint64_t)p->cgroup_dir_fd;
		mid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	} else if (!shared) {
		mid = ccs_raw_fork();
	}
	if (mid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		*stage = p->into_cgroup ? CCS_STAGE_CGROUP : CCS_STAGE_FORK;
		errno = e;
		return -1;
	}
	if (mid == 0 && !shared) {
		close(sv[0]);
		int rep = sv[1];
		int st = join_namespaces(p);
		if (st) {
			ccs_child_report(rep, 'E', st, errno);
			_exit(127);
		}
		if (!p->pidns_mode)
			return become_target(p, rep);
		struct clone_args args;
		memset(&args, 0, sizeof(args));
		args.flags = CLONE_PARENT;
		pid_t target = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
		if (target < 0) {
			ccs_child_report(rep, 'E', CCS_STAGE_CLONE, errno);
			_exit(127);
		}
		if (target == 0)
			return become_target(p, rep);
		ccs_child_report(rep, 'P', 0, target);
		_exit(0);
	}
	close(sv[1]);
	int rep = sv[0];
	struct ccs_report r;
	pid_t target = p->pidns_mode ? -1 : mid;
	int failed_stage = 0, failed_errno = 0, ready = 0;
	for (;;) {
		int got = ccs_child_read(rep, &r);
		if (got <= 0) {
			if (target < 0 && !failed_stage) {
				failed_stage = CCS_STAGE_SYNC;
				failed_errno = ECHILD;
			}
			break;
		}
		if (r.tag == 'P') {
			target = r.value;
			if (ready)
				break;
		} else if (r.tag == 'O' || r.tag == 'G') {
			/* With a new pid namespace the target's report and the
			 * intermediate's 'P' race: wait for both. */
			ready = 1;
			if (target > 0)
				break;
		} else if (r.tag == 'E') {
			failed_stage = r.stage;
			failed_errno = r.value;
			break;
		}
	}
	close(rep);
	if (p->pidns_mode)
		reap(mid);
	if (failed_stage) {
		if (target > 0 && target != mid)
			reap(target);
		else if (!p->pidns_mode)
			reap(mid);
		*stage = failed_stage;
		errno = failed_errno;
		return -1;
	}
	return target;
}
