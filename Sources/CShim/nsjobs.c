/* One-off jobs inside a container's namespaces, each in a child or on a
 * dedicated pthread so the caller's own namespaces never change. */
#include "cshim.h"
#include "child.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <stdio.h>

/* Run fn(arg) on a fresh pthread and wait for it: namespace joins and id
 * changes made there end with the thread. 0, or -1 with errno. */
static int run_on_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	int rc = pthread_create(&t, NULL, fn, arg);
	if (rc) {
		errno = rc;
		return -1;
	}
	pthread_join(t, NULL);
	return 0;
}

int ccs_socket_in_netns(int netns_fd, int domain, int type, int protocol)
{
	return ccs_socket_as(netns_fd, -1, -1, domain, type, protocol);
}

static void wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
}

/* Wait for a mount child's report on rep (closed here), killing it after
 * CCS_MOUNT_TIMEOUT_MS, and reap it: 0, or -1 with errno and *stage. */
static int await_mount_child(pid_t pid, int rep, int *stage)
{
	struct ccs_report r;
	int got;
	if (ccs_wait_readable(rep, CCS_MOUNT_TIMEOUT_MS) < 0) {
		/* A path inside that never resolves (a FUSE server that does not
		 * answer): the child is ours, its pid cannot have been reused. */
		kill(pid, SIGKILL);
		close(rep);
		wait_child(pid);
		*stage = CCS_STAGE_MOUNT;
		errno = ETIMEDOUT;
		return -1;
	}
	got = ccs_child_read(rep, &r);
	close(rep);
	wait_child(pid);
	if (got == 1 && r.tag == 'O')
		return 0;
	if (got == 1 && r.tag == 'E') {
		*stage = r.stage;
		errno = r.value;
		return -1;
	}
	*stage = CCS_STAGE_SYNC;
	errno = ECHILD;
	return -1;
}


int ccs_mount_in_container(int userns_fd, int mntns_fd, int pidns_fd, int tree_fd,
                           const char *source, const char *target, const char *fstype,
                           unsigned long flags, const char *data, int *stage)
{
	int sv[2];
	*stage = 0;
	pid_t pid = ccs_fork_with_reports(sv);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int keep[] = { sv[1], userns_fd, mntns_fd, pidns_fd, tree_fd };
		ccs_close_fds_except(keep, 5);
		if (userns_fd >= 0 && setns(userns_fd, CLONE_NEWUSER) < 0) {
			ccs_child_report(sv[1], 'E', CCS_STAGE_USERNS, errno);
			_exit(1);
		}
		if (setns(mntns_fd, CLONE_NEWNS) < 0) {
			ccs_child_report(sv[1], 'E', CCS_STAGE_SETNS, errno);
			_exit(1);
		}
		if (pidns_fd >= 0 && setns(pidns_fd, CLONE_NEWPID) < 0) {
			ccs_child_report(sv[1], 'E', CCS_STAGE_PIDNS, errno);
			_exit(1);
		}
		if (userns_fd >= 0 && ccs_raw_become(0, 0, 1) < 0) {
			ccs_child_report(sv[1], 'E', CCS_STAGE_SETID, errno);
			_exit(1);
		}
		if (pidns_fd >= 0) {
			/* Only children enter the pid ns (proc needs it). */
			pid_t inner = ccs_raw_fork();
			if (inner < 0) {
				ccs_child_report(sv[1], 'E', CCS_STAGE_FORK, errno);
				_exit(1);
			}
			if (inner > 0) {
				int st;
				while (waitpid(inner, &st, 0) < 0 && errno == EINTR)
					;
				_exit(0);
			}
		}
		if (chdir("/") < 0) {
			ccs_child_report(sv[1], 'E', CCS_STAGE_CHDIR, errno);
			_exit(1);
		}
		int rc = tree_fd >= 0 ? ccs_move_mount_to(tree_fd, AT_FDCWD, target)
		                      : mount(source, target, fstype, flags, data);
		if (rc < 0) {
			ccs_child_report(sv[1], 'E', CCS_STAGE_MOUNT, errno);
			_exit(1);
		}
		ccs_child_report(sv[1], 'O', 0, 0);
		_exit(0);
	}
	close(sv[1]);
	return await_mount_child(pid, sv[0], stage);
}

int ccs_open_root_of_mntns(int mntns_fd)
{
	int sv[2];
	pid_t pid = ccs_fork_with_reports(sv);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int keep[] = { sv[1], mntns_fd };
		ccs_close_fds_except(keep, 2);
		int root = -1;
		int32_t err = 0;
		if (setns(mntns_fd, CLONE_NEWNS) < 0)
			err = errno;
		else if ((root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
			err = errno;
		if (root >= 0)
			ccs_send_with_fds(sv[1], &err, sizeof(err), &root, 1);
		else
			ccs_send_with_fds(sv[1], &err, sizeof(err), NULL, 0);
		_exit(0);
	}
	close(sv[1]);
	int32_t err = 0;
	int fd = -1, nfds = 0;
	ssize_t n = ccs_recv_with_fds(sv[0], &err, sizeof(err), &fd, 1, &nfds);
	int e = errno;
	close(sv[0]);
	wait_child(pid);
	if (n != (ssize_t)sizeof(err)) {
		errno = n < 0 ? e : ECHILD;
		return -1;
	}
	if (nfds != 1) {
		errno = err ? err : EPROTO;
		return -1;
	}
	return fd;
}

/* ---- work done with a caller's credentials, on a thread of its own ---- */

/* setresgid, setgroups(0), setresuid on this thread only (raw syscalls;
 * glibc's wrappers would change every thread). Going from uid 0 to another
 * uid clears the thread's capabilities. */
static int become_on_thread(int64_t uid, int64_t gid)
{
	if (uid < 0)
		return 0;
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		return -1;
	if (syscall(SYS_setresgid, (gid_t)gid, (gid_t)gid, (gid_t)gid) < 0)
		return -1;
	if (syscall(SYS_setresuid, (uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
		return -1;
	return 0;
}

struct socket_as_job {
	int netns_fd, domain, type, protocol;
	int64_t uid, gid;
	int result, err;
};

static void *socket_as_thread(void *arg)
{
	struct socket_as_job *j = arg;
	if (j->netns_fd >= 0 && setns(j->netns_fd, CLONE_NEWNET) < 0) {
		j->err = errno;
		return NULL;
	}
	if (become_on_thread(j->uid, j->gid) < 0) {
		j->err = errno;
		return NULL;
	}
	j->result = socket(j->domain, j->type | SOCK_CLOEXEC, j->protocol);
	if (j->result < 0)
		j->err = errno;
	return NULL; /* the thread ends here, with its namespace and ids */
}

int ccs_socket_as(int netns_fd, int64_t uid, int64_t gid, int domain, int type, int protocol)
{
	struct socket_as_job j = { netns_fd, domain, type, protocol, uid, gid, -1, 0 };
	if (run_on_thread(socket_as_thread, &j) < 0)
		return -1;
	if (j.result < 0)
		errno = j.err;
	return j.result;
}

struct signal_as_job {
	uid_t uid;
	gid_t gid;
	const pid_t *pids;
	int n, sig, done, err;
};

static void *signal_as_thread(void *arg)
{
	struct signal_as_job *j = arg;
	if (become_on_thread(j->uid, j->gid) < 0) {
		j->err = errno;
		return NULL;
	}
	for (int i = 0; i < j->n; i++) {
		int fd = ccs_pidfd_open(j->pids[i], 0);
		if (fd < 0)
			continue;
		if (ccs_pidfd_send_signal(fd, j->sig) == 0)
			j->done++;
		close(fd);
	}
	return NULL;
}

int ccs_signal_pids_as(uid_t uid, gid_t gid, const pid_t *pids, int n, int sig)
{
	struct signal_as_job j = { uid, gid, pids, n, sig, 0, 0 };
	if (run_on_thread(signal_as_thread, &j) < 0)
		return -1;
	if (j.err) {
		errno = j.err;
		return -1;
	}
	return j.done;
}

struct move_job {
	pid_t pid;
	int pidfd;
	const int *fds;
	int n;
	uint64_t userns_ino;
	int err;
};

static void *move_thread(void *arg)
{
	struct move_job *j = arg;
	if (ptrace(PTRACE_SEIZE, j->pid, 0, 0) < 0) {
		j->err = errno;
		return NULL;
	}
	/* Seized: from here the pid cannot pass to another process. Is it
	 * still the one the pidfd names (not a stranger that got the pid)? */
	if (ccs_pidfd_pid(j->pidfd) != j->pid) {
		j->err = ESRCH;
		return NULL;
	}
	if (j->userns_ino) {
		char path[64];
		struct stat st;
		snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)j->pid);
		if (stat(path, &st) < 0 || (uint64_t)st.st_ino != j->userns_ino) {
			j->err = EPERM;
			return NULL;
		}
	}
	char text[16];
	int len = snprintf(text, sizeof(text), "%d", (int)j->pid);
	for (int i = 0; i < j->n; i++) {
		ssize_t w;
		do {
			w = pwrite(j->fds[i], text, (size_t)len, 0);
		} while (w < 0 && errno == EINTR);
		if (w < 0) {
			j->err = errno;
			return NULL;
		}
	}
	return NULL; /* the thread's exit detaches the tracee */
}

int ccs_cgroup_move_pinned(pid_t pid, int pidfd, const int *procs_fds, int n, uint64_t userns_ino)
{
	struct move_job j = { pid, pidfd, procs_fds, n, userns_ino, 0 };
	if (run_on_thread(move_thread, &j) < 0)
		return -1;
	if (j.err) {
		errno = j.err;
		return -1;
	}
	return 0;
}

struct open_as_job {
	uid_t uid;
	gid_t gid;
	const char *path;
	int flags, result, err;
};

static void *open_as_thread(void *arg)
{
	struct open_as_job *j = arg;
	if (become_on_thread(j->uid, j->gid) < 0) {
		j->err = errno;
		return NULL;
	}
	j->result = open(j->path, j->flags | O_CLOEXEC);
	if (j->result < 0)
		j->err = errno;
	return NULL;
}

int ccs_open_as(uid_t uid, gid_t gid, const char *path, int flags)
{
	struct open_as_job j = { uid, gid, path, flags, -1, 0 };
	if (run_on_thread(open_as_thread, &j) < 0)
		return -1;
	if (j.result < 0)
		errno = j.err;
	return j.result;
}

/* The child of ccs_bind_as_owner: 0 or a stage with errno set. */
static int bind_as_owner_child(uid_t uid, gid_t gid, int userns_fd, int mntns_fd, const char *source,
                               int source_fd, const char *target)
{
	if (ccs_raw_become(uid, gid, 1) < 0)
		return CCS_STAGE_SETID;
	if (setns(userns_fd, CLONE_NEWUSER) < 0)
		return CCS_STAGE_USERNS;
	/* A copy of ctrobjd's (the host's) mounts, owned by the container's
	 * user namespace: the kernel locks their flags and submounts. */
	if (unshare(CLONE_NEWNS) < 0)
		return CCS_STAGE_SETNS;
	int tree = ccs_open_tree(AT_FDCWD, source, CCS_OPEN_TREE_CLONE | CCS_AT_RECURSIVE);
	if (tree < 0)
		return CCS_STAGE_MOUNT;
	struct stat a, b;
	if (fstat(tree, &a) < 0 || fstat(source_fd, &b) < 0)
		return CCS_STAGE_MOUNT;
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		errno = EXDEV; /* the path no longer names what the caller opened */
		return CCS_STAGE_MOUNT;
	}
	if (setns(mntns_fd, CLONE_NEWNS) < 0)
		return CCS_STAGE_SETNS;
	if (chdir("/") < 0)
		return CCS_STAGE_CHDIR;
	if (ccs_move_mount_to(tree, AT_FDCWD, target) < 0)
		return CCS_STAGE_MOUNT;
	return 0;
}

int ccs_bind_as_owner(uid_t uid, gid_t gid, int userns_fd, int mntns_fd, const char *source, int source_fd,
                      const char *target, int *stage)
{
	int sv[2];
	*stage = 0;
	pid_t pid = ccs_fork_with_reports(sv);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int keep[] = { sv[1], userns_fd, mntns_fd, source_fd };
		ccs_close_fds_except(keep, 4);
		int st = bind_as_owner_child(uid, gid, userns_fd, mntns_fd, source, source_fd, target);
		ccs_child_report(sv[1], st ? 'E' : 'O', st, st ? errno : 0);
		_exit(st ? 1 : 0);
	}
	close(sv[1]);
	return await_mount_child(pid, sv[0], stage);
}
