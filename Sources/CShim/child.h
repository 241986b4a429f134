/* Helpers for code that runs in a child between clone and exec or _exit.
 * Everything here is async-signal-safe: raw syscalls, no malloc, no locks.
 * glibc's setresuid() broadcasts to every thread the parent had, which a
 * child of a multithreaded parent must not attempt, hence the raw calls. */
#ifndef CSHIM_CHILD_H
#define CSHIM_CHILD_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

struct ccs_report {
	char tag;     /* 'U' 'R' 'P' 'O' 'E' 'M' 'X' */
	char stage;
	char pad[2];
	int32_t value; /* errno for 'E', pid for 'P' */
};

static inline void ccs_child_report(int fd, char tag, int stage, int value)
{
	struct ccs_report r;
	memset(&r, 0, sizeof(r));
	r.tag = tag;
	r.stage = (char)stage;
	r.value = value;
	while (write(fd, &r, sizeof(r)) < 0 && errno == EINTR)
		;
}

static inline int ccs_child_read(int fd, struct ccs_report *r)
{
	ssize_t n;
	do {
		n = read(fd, r, sizeof(*r));
	} while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(*r))
		return 1;
	return n == 0 ? 0 : -1;
}

static inline pid_t ccs_raw_fork(void)
{
	return (pid_t)syscall(SYS_clone, 17 /* SIGCHLD */, 0, 0, 0, 0);
}

static inline int ccs_raw_become(uid_t uid, gid_t gid, int drop_groups)
{
	if (drop_groups && syscall(SYS_setgroups, 0, NULL) < 0 && errno != EPERM)
		return -1;
	if (syscall(SYS_setresgid, gid, gid, gid) < 0)
		return -1;
	if (syscall(SYS_setresuid, uid, uid, uid) < 0)
		return -1;
	return 0;
}

static inline int ccs_join_cgroups(const int *fds, int count)
{
	for (int i = 0; i < count; i++) {
		if (fds[i] < 0)
			continue;
		ssize_t n;
		do {
			n = pwrite(fds[i], "0", 1, 0);
		} while (n < 0 && errno == EINTR);
		if (n < 0)
			return -1;
	}
	return 0;
}

/* socketpair(SEQPACKET, CLOEXEC) + raw fork: returns the pid (0 in the
 * child); sv[0] is the parent's end, sv[1] the child's. On failure -1 with
 * errno and both ends closed. */
static inline pid_t ccs_fork_with_reports(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	pid_t pid = ccs_raw_fork();
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		errno = e;
	}
	return pid;
}

/* Close every fd but keep[0..n) (n <= 8; negative entries ignored): a child
 * that runs work for a client holds nothing else of ctrobjd's. */
static inline void ccs_close_fds_except(const int *keep, int n)
{
	int k[8], m = 0;
	for (int i = 0; i < n && m < 8; i++) {
		if (keep[i] < 0)
			continue;
		int j = m++;
		while (j > 0 && k[j - 1] > keep[i]) {
			k[j] = k[j - 1];
			j--;
		}
		k[j] = keep[i];
	}
	unsigned int from = 0;
	for (int i = 0; i < m; i++) {
		if ((unsigned int)k[i] > from)
			syscall(SYS_close_range, from, (unsigned int)k[i] - 1, 0);
		from = (unsigned int)k[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
}

/* A non-root caller's child joins the container's cgroup by asking ctrobjd
 * (op "cgroup.join" with the container fd, on a connection of its own; the
 * daemon moves the peer, i.e. this process). Raw syscalls only. 0, or -1
 * with the errno ctrobjd answered (EPROTO if the answer is unreadable). */
static inline int ccs_child_cgroup_join(int container_fd, const char *path)
{
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	for (size_t i = 0; i < sizeof(a.sun_path) - 1 && path[i]; i++)
		a.sun_path[i] = path[i];
	struct timeval tv = { 30, 0 };
	(void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int rc;
	do {
		rc = connect(s, (struct sockaddr *)&a, sizeof(a));
	} while (rc < 0 && errno == EINTR);
	static const char req[] = "cgroup.join\n";
	char buf[512];
	ssize_t n = -1;
	if (rc == 0 && ccs_send_with_fds(s, req, sizeof(req) - 1, &container_fd, 1) >= 0) {
		do {
			n = recv(s, buf, sizeof(buf) - 1, 0);
		} while (n < 0 && errno == EINTR);
	}
	int e = errno;
	close(s);
	if (n < 0) {
		errno = e;
		return -1;
	}
	buf[n < 0 ? 0 : n] = 0;
	if (n >= 3 && buf[0] == 'o' && buf[1] == 'k' && buf[2] == '\n')
		return 0;
	int err = 0;
	for (ssize_t i = 0; i + 7 <= n; i++) {
		if ((i == 0 || buf[i - 1] == '\n') && memcmp(buf + i, "errno=", 6) == 0) {
			for (ssize_t k = i + 6; k < n && buf[k] >= '0' && buf[k] <= '9'; k++)
				err = err * 10 + (buf[k] - '0');
			break;
		}
	}
	errno = err > 0 && err < 4096 ? err : EPROTO;
	return -1;
}

#endif
