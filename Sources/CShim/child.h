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

#endif
