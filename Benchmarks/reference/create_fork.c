/* Reference for "create + fork_into_container(/bin/true) + wait + close":
 *
 *   mkdir <hierarchy>/<parent>/r<seq> in every hierarchy the library uses
 *   clone3(CLONE_NEW* | CLONE_INTO_CGROUP(v2 dir) | CLONE_PIDFD)
 *     child: [user ns: wait for the id maps, become root]
 *            write "0" to each v1 cgroup.procs, execve(/bin/true)
 *     parent: [user ns: write uid_map/gid_map 0 -> REF_ID_BASE, 65536]
 *   waitid(P_PIDFD), rmdir every directory
 *
 * The child is PID 1 of its pid namespace and its cgroup namespace is
 * rooted at the new v2 cgroup, as with the library.  No daemon, no
 * persistence, no namespace holder: this is the floor.
 */
#include "ref.h"

static struct {
	int n;
	int v2;
	char mount[REF_MAX_HIER][256];
	char parent[256];
} H = { .v2 = -1 };

int ref_setup(const char *const *mounts, int n, const char *parent)
{
	if (n > REF_MAX_HIER)
		return -E2BIG;
	H.n = n;
	H.v2 = -1;
	snprintf(H.parent, sizeof(H.parent), "%s", parent);
	for (int i = 0; i < n; i++) {
		snprintf(H.mount[i], sizeof(H.mount[i]), "%s", mounts[i]);
		struct statfs sf;
		if (statfs(mounts[i], &sf) == 0 && sf.f_type == REF_CGROUP2_MAGIC)
			H.v2 = i;
		char d[600];
		snprintf(d, sizeof(d), "%s/%s", mounts[i], parent);
		if (mkdir(d, 0755) < 0 && errno != EEXIST)
			return -errno;
	}
	return 0;
}

void ref_teardown(void)
{
	for (int i = 0; i < H.n; i++) {
		char d[600];
		snprintf(d, sizeof(d), "%s/%s", H.mount[i], H.parent);
		rmdir(d);
	}
}

int ref_cgroups_make(struct ref_cgroups *c, const char *name)
{
	c->n = H.n;
	c->v2 = H.v2;
	for (int i = 0; i < H.n; i++) {
		snprintf(c->dir[i], sizeof(c->dir[i]), "%s/%s/%s", H.mount[i], H.parent, name);
		if (mkdir(c->dir[i], 0755) < 0 && errno != EEXIST) {
			int e = errno;
			c->n = i;
			ref_cgroups_remove(c);
			return -e;
		}
	}
	return 0;
}

void ref_cgroups_remove(const struct ref_cgroups *c)
{
	for (int i = 0; i < c->n; i++) {
		for (int tries = 0; rmdir(c->dir[i]) < 0 && errno == EBUSY && tries < 1000; tries++)
			usleep(1000);
	}
}

/* v2 directory fd (for CLONE_INTO_CGROUP) and the v1 cgroup.procs fds. */
int ref_cgroups_open(const struct ref_cgroups *c, int *v2dir, int *procs)
{
	int k = 0;
	*v2dir = -1;
	for (int i = 0; i < c->n; i++) {
		if (i == c->v2) {
			*v2dir = open(c->dir[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (*v2dir < 0)
				return -errno;
			continue;
		}
		char p[600];
		snprintf(p, sizeof(p), "%s/cgroup.procs", c->dir[i]);
		procs[k] = open(p, O_WRONLY | O_CLOEXEC);
		if (procs[k] < 0)
			return -errno;
		k++;
	}
	return k;
}

pid_t ref_clone3(unsigned long long flags, int v2dir, int *pidfd)
{
	struct clone_args a;
	memset(&a, 0, sizeof(a));
	a.flags = flags | CLONE_PIDFD | (v2dir >= 0 ? CLONE_INTO_CGROUP : 0);
	a.pidfd = (uint64_t)(uintptr_t)pidfd;
	a.exit_signal = SIGCHLD;
	a.cgroup = v2dir >= 0 ? (uint64_t)v2dir : 0;
	return (pid_t)syscall(SYS_clone3, &a, sizeof(a));
}

int ref_pwrite_zero(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (pwrite(fds[i], "0", 1, 0) < 0)
			return -1;
	return 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	return n < 0 ? -e : 0;
}

int ref_write_maps(pid_t pid)
{
	char path[64], map[64];
	snprintf(map, sizeof(map), "0 %u 65536\n", REF_ID_BASE);
	snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
	int r = write_file(path, map);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "/proc/%d/gid_map", pid);
	return write_file(path, map);
}

int ref_become_root(void)
{
	if (syscall(SYS_setgroups, 0, NULL) < 0 && errno != EPERM)
		return -1;
	if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
		return -1;
	return 0;
}

static char *const true_env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };

int ref_create_fork(unsigned long long nsflags, const char *path, long seq)
{
	struct ref_cgroups c;
	char name[32];
	snprintf(name, sizeof(name), "r%ld", seq);
	int r = ref_cgroups_make(&c, name);
	if (r < 0)
		return r;
	int v2dir = -1, procs[REF_MAX_HIER], nprocs = 0, sync[2] = { -1, -1 }, pidfd = -1;
	int userns = (nsflags & CLONE_NEWUSER) != 0;
	r = ref_cgroups_open(&c, &v2dir, procs);
	if (r < 0)
		goto out;
	nprocs = r;
	r = 0;
	if (userns && pipe2(sync, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	pid_t pid = ref_clone3(nsflags, v2dir, &pidfd);
	if (pid < 0) {
		r = -errno;
		goto out;
	}
	if (pid == 0) {
		if (userns) {
			char go;
			close(sync[1]);
			if (read(sync[0], &go, 1) != 1 || ref_become_root() < 0)
				_exit(126);
		}
		if (ref_pwrite_zero(procs, nprocs) < 0)
			_exit(125);
		char *argv[] = { (char *)path, NULL };
		execve(path, argv, true_env);
		_exit(127);
	}
	if (userns) {
		close(sync[0]);
		sync[0] = -1;
		r = ref_write_maps(pid);
		if (write(sync[1], "x", 1) < 0 && r == 0)
			r = -errno;
	}
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	if (r == 0 && (si.si_code != CLD_EXITED || si.si_status != 0))
		r = -ECHILD;
out:
	if (pidfd >= 0)
		close(pidfd);
	if (sync[0] >= 0)
		close(sync[0]);
	if (sync[1] >= 0)
		close(sync[1]);
	if (v2dir >= 0)
		close(v2dir);
	for (int i = 0; i < nprocs; i++)
		close(procs[i]);
	ref_cgroups_remove(&c);
	return r;
}
