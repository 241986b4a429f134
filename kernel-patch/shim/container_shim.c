// SPDX-License-Identifier: GPL-2.0
/*
 * container_shim.c - <container.h> on top of the kernel patch's syscalls.
 *
 * The proposal's three calls are system calls; the path calls are the
 * ordinary *at() calls with the container fd as the dirfd (the patched
 * kernel resolves them against the container's root).  The emulation-only
 * extensions fail with ENOSYS.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <container.h>

/* x86_64 numbers from kernel-patch's syscall_64.tbl. */
#ifndef __NR_container_create
#define __NR_container_create 451
#endif
#ifndef __NR_fork_into_container
#define __NR_fork_into_container 452
#endif
#ifndef __NR_container_socket
#define __NR_container_socket 453
#endif

/*
 * 451-453 are other system calls on kernels after 6.1 (cachestat ...), so
 * never issue them unless the kernel has the patch: /proc/containers is
 * its mark.  Decided once, on the first call (normally before any fork
 * into a container, whose root may have no /proc).
 */
static int kernel_has_containers(void)
{
	static int known; /* 0 unknown, 1 yes, -1 no */

	if (!known)
		known = access("/proc/containers", F_OK) == 0 ? 1 : -1;
	if (known < 0)
		errno = ENOSYS;
	return known > 0;
}

int container_create(const char *name, unsigned int flags)
{
	if (!kernel_has_containers())
		return -1;
	return (int)syscall(__NR_container_create, name, flags);
}

pid_t fork_into_container(int container_fd)
{
	if (!kernel_has_containers())
		return -1;
	return (pid_t)syscall(__NR_fork_into_container, container_fd);
}

int container_socket(int container_fd, int domain, int type, int protocol)
{
	if (!kernel_has_containers())
		return -1;
	return (int)syscall(__NR_container_socket, container_fd, domain, type,
			    protocol);
}

int container_openat(int container_fd, const char *path, int flags, mode_t mode)
{
	return openat(container_fd, path, flags, mode);
}

int container_mkdirat(int container_fd, const char *path, mode_t mode)
{
	return mkdirat(container_fd, path, mode);
}

int container_symlinkat(const char *target, int container_fd,
			const char *linkpath)
{
	return symlinkat(target, container_fd, linkpath);
}

int container_unlinkat(int container_fd, const char *path, int flags)
{
	return unlinkat(container_fd, path, flags);
}

int container_fchownat(int container_fd, const char *path, uid_t uid, gid_t gid)
{
	return fchownat(container_fd, path, uid, gid, 0);
}

static int no_kernel_support(void)
{
	errno = ENOSYS;
	return -1;
}

int container_open(const char *name, unsigned int flags)
{
	(void)name;
	(void)flags;
	return no_kernel_support();
}

int container_mount(int container_fd, const char *source, const char *target,
		    const char *fstype, unsigned long mountflags,
		    const char *data)
{
	(void)container_fd;
	(void)source;
	(void)target;
	(void)fstype;
	(void)mountflags;
	(void)data;
	return no_kernel_support();
}

int container_set_ns(int container_fd, unsigned int nstypes, int source_fd)
{
	(void)container_fd;
	(void)nstypes;
	(void)source_fd;
	return no_kernel_support();
}

int container_set_limit(int container_fd, int which, int64_t value)
{
	(void)container_fd;
	(void)which;
	(void)value;
	return no_kernel_support();
}

int container_get_stats(int container_fd, struct container_stats *stats)
{
	(void)container_fd;
	(void)stats;
	return no_kernel_support();
}

int container_get_status(int container_fd, struct container_status *status)
{
	(void)container_fd;
	(void)status;
	return no_kernel_support();
}

int container_freeze(int container_fd)
{
	(void)container_fd;
	return no_kernel_support();
}

int container_thaw(int container_fd)
{
	(void)container_fd;
	return no_kernel_support();
}

int container_kill(int container_fd, int signo)
{
	(void)container_fd;
	(void)signo;
	return no_kernel_support();
}

int container_destroy(int container_fd)
{
	(void)container_fd;
	return no_kernel_support();
}
