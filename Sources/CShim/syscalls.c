/* One wrapper per syscall. Each returns -1 with errno set on failure. */
#include "cshim.h"
#include <sys/vfs.h>
#include "pidfd_info.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/openat2.h>
#include <sched.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif


int ccs_pidfd_open(pid_t pid, unsigned int flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

int ccs_pidfd_open_task(pid_t tid)
{
	/* PIDFD_THREAD is O_EXCL (6.9+): a pidfd of that very thread. */
	int fd = (int)syscall(SYS_pidfd_open, tid, O_EXCL);
	if (fd < 0 && errno == EINVAL)
		fd = (int)syscall(SYS_pidfd_open, tid, 0);
	return fd;
}

int ccs_pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int ccs_setns(int fd, int nstype)
{
	return setns(fd, nstype);
}

int ccs_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve)
{
	struct open_how how;
	memset(&how, 0, sizeof(how));
	how.flags = (uint64_t)(unsigned int)flags | O_CLOEXEC;
	how.mode = ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) ? mode : 0;
	how.resolve = resolve;
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int ccs_open_tree(int dirfd, const char *path, unsigned int flags)
{
	return (int)syscall(SYS_open_tree, dirfd, path, flags | O_CLOEXEC);
}

int ccs_move_mount_to(int from_fd, int to_dirfd, const char *to_path)
{
	return (int)syscall(SYS_move_mount, from_fd, "", to_dirfd, to_path, MOVE_MOUNT_F_EMPTY_PATH);
}

int ccs_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
	return (int)syscall(SYS_close_range, first, last, flags);
}

int ccs_pidfd_wait(int pidfd, int options, int *status)
{
	siginfo_t info;
	memset(&info, 0, sizeof(info));
	if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | options) < 0)
		return -1;
	if (info.si_pid == 0)
		return 0;
	if (status) {
		switch (info.si_code) {
		case CLD_EXITED: *status = (info.si_status & 0xff) << 8; break;
		case CLD_DUMPED: *status = (info.si_status & 0x7f) | 0x80; break;
		default: *status = info.si_status & 0x7f; break;
		}
	}
	return 1;
}

int ccs_pidfd_exit_status(int pidfd, int *status)
{
	struct ccs_pidfd_info info;
	memset(&info, 0, sizeof(info));
	info.mask = CCS_PIDFD_INFO_EXIT;
	if (ioctl(pidfd, CCS_PIDFD_GET_INFO, &info) < 0) {
		/* ESRCH: exited and reaped but the kernel kept no exit info. */
		return -1;
	}
	if (!(info.mask & CCS_PIDFD_INFO_EXIT))
		return 0;
	*status = info.exit_code;
	return 1;
}

/* Whether fd is a pidfd at all, before any pidfd ioctl is sent to a file a
 * client handed us: pidfs (6.9+) or, before it, an anon inode named
 * [pidfd]. */
static int is_pidfd(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf) < 0)
		return 0;
	if ((unsigned long)sf.f_type == 0x50494446UL) /* PID_FS_MAGIC */
		return 1;
	if ((unsigned long)sf.f_type != 0x09041934UL) /* ANON_INODE_FS_MAGIC */
		return 0;
	char path[64], name[32];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, name, sizeof(name) - 1);
	if (n <= 0)
		return 0;
	name[n] = 0;
	return strcmp(name, "anon_inode:[pidfd]") == 0;
}

pid_t ccs_pidfd_pid(int pidfd)
{
	if (!is_pidfd(pidfd)) {
		errno = EBADF;
		return -1;
	}
	/* PIDFD_GET_INFO (6.13+) first: one ioctl, no /proc walk. Not for a
	 * thread's pidfd (PIDFD_THREAD, i.e. O_EXCL, in its flags): the ioctl
	 * names the thread group's leader there, fdinfo the thread. */
	int flags = fcntl(pidfd, F_GETFL);
	struct ccs_core_info info;
	if (flags >= 0 && !(flags & O_EXCL)) {
		if (ccs_pidfd_coredump_info(pidfd, &info) == 0)
			return info.pid;
		if (errno == ESRCH)
			return -1;
	}
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strstr(buf, "\nPid:");
	if (!p) {
		errno = EBADF;
		return -1;
	}
	return (pid_t)strtol(p + 5, NULL, 10); /* -1 once the process is gone */
}

uint64_t ccs_socket_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) < 0)
		return 0;
	return cookie;
}

int ccs_peer_pidfd(int sockfd)
{
	int pidfd = -1;
	socklen_t len = sizeof(pidfd);
	if (getsockopt(sockfd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
		return -1;
	return pidfd;
}

int ccs_peer_cred(int sockfd, pid_t *pid, uid_t *uid, gid_t *gid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(sockfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -1;
	*pid = cred.pid;
	*uid = cred.uid;
	*gid = cred.gid;
	return 0;
}

long ccs_getxattr(const char *path, const char *name, void *value, unsigned long size)
{
	return (long)getxattr(path, name, value, size);
}

int ccs_seqpacket_pair(int fds[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

int ccs_bind_mount_fd(int fd, const char *target)
{
	char src[64];
	snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
	return mount(src, target, NULL, MS_BIND, NULL);
}

int ccs_bind_mount(const char *src, const char *target)
{
	return mount(src, target, NULL, MS_BIND, NULL);
}

int ccs_make_private(const char *target)
{
	return mount(NULL, target, NULL, MS_PRIVATE | MS_REC, NULL);
}

int ccs_umount_detach(const char *target)
{
	return umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW);
}

int ccs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ccs_set_cloexec(int fd, int on)
{
	int flags = fcntl(fd, F_GETFD);
	if (flags < 0)
		return -1;
	flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
	return fcntl(fd, F_SETFD, flags);
}

int ccs_get_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);
	if (flags < 0)
		return -1;
	return (flags & FD_CLOEXEC) ? 1 : 0;
}

long ccs_statfs_type(const char *path)
{
	struct statfs fs;
	if (statfs(path, &fs) < 0)
		return -1;
	return (long)fs.f_type;
}

int ccs_accept(int listen_fd)
{
	return accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
}

int ccs_pipe_cloexec(int fds[2])
{
	return pipe2(fds, O_CLOEXEC);
}

void ccs_swap_fsids(uid_t uid, gid_t gid, uid_t *old_uid, gid_t *old_gid)
{
	*old_gid = (gid_t)syscall(SYS_setfsgid, gid);
	*old_uid = (uid_t)syscall(SYS_setfsuid, uid);
}

long ccs_keyctl(int op, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
{
	return syscall(SYS_keyctl, op, a2, a3, a4, a5);
}

void ccs_line_buffer_stdout(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}
