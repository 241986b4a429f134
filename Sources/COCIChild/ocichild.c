/* The child side of ctrobj-oci's init and exec: everything between the
 * fork (ccs_join_fork, which joins the container) and execve.  No Swift runs
 * here, no malloc, no locks: raw syscalls and stack buffers only, because
 * the parent is multithreaded.  The protocol is in ocichild.h. */
#include "ocichild.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* The new mount API and openat2, by number (glibc 2.36 wraps some, older
 * ones none): masks and read-only paths act on fds, never on paths a
 * container's symlink could redirect (runc's CVE-2025-31133 pattern). */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define OCI_OPEN_TREE_CLONE 1U
#define OCI_AT_RECURSIVE 0x8000U
#define OCI_MOVE_MOUNT_F_EMPTY_PATH 0x4U
#define OCI_MOVE_MOUNT_T_EMPTY_PATH 0x40U
#define OCI_FSOPEN_CLOEXEC 1U
#define OCI_FSMOUNT_CLOEXEC 1U
#define OCI_FSCONFIG_SET_STRING 1U
#define OCI_FSCONFIG_CMD_CREATE 6U
#define OCI_MOUNT_ATTR_RDONLY 0x1ULL
#define OCI_MOUNT_ATTR_NOSUID 0x2ULL
#define OCI_MOUNT_ATTR_NODEV 0x4ULL
#define OCI_MOUNT_ATTR_NOEXEC 0x8ULL
#define OCI_RESOLVE_NO_MAGICLINKS 0x02ULL
#define OCI_RESOLVE_NO_SYMLINKS 0x04ULL

struct oci_open_how { uint64_t flags, mode, resolve; };
struct oci_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

int oci_ctl_send(int fd, char tag, const void *payload, size_t len)
{
	char buf[sizeof(struct oci_msg) + 65536];
	if (len > 65536) {
		errno = EMSGSIZE;
		return -1;
	}
	struct oci_msg m;
	memset(&m, 0, sizeof(m));
	m.tag = tag;
	memcpy(buf, &m, sizeof(m));
	if (len)
		memcpy(buf + sizeof(m), payload, len);
	ssize_t n;
	do {
		n = send(fd, buf, sizeof(m) + len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -1 : 0;
}


/* A new network namespace starts with "lo" down; runc brings it up, and
 * a pod's members talk over it (127.0.0.1). */
static int loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

static void report(int fd, char tag, int stage, int value)
{
	struct oci_msg m;
	memset(&m, 0, sizeof(m));
	m.tag = tag;
	m.stage = (char)stage;
	m.value = value;
	while (send(fd, &m, sizeof(m), MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/* Wait until fd is readable: 0, or -1 with ETIMEDOUT after timeout_ms
 * (< 0: no wait here, the recv blocks). */
static int wait_readable(int fd, int timeout_ms)
{
	if (timeout_ms < 0)
		return 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;
	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	return r < 0 ? -1 : 0;
}

/* A received datagram of n >= sizeof(*msg) bytes: the header into msg, at
 * most size bytes of the rest into payload; returns the payload's length. */
static ssize_t split_message(const char *buf, size_t n, struct oci_msg *msg, void *payload, size_t size)
{
	memcpy(msg, buf, sizeof(*msg));
	size_t plen = n - sizeof(*msg);
	if (plen > size)
		plen = size;
	if (plen)
		memcpy(payload, buf + sizeof(*msg), plen);
	return (ssize_t)plen;
}

ssize_t oci_ctl_recv(int fd, struct oci_msg *msg, void *payload, size_t size, int timeout_ms)
{
	char buf[sizeof(struct oci_msg) + 65536];
	if (wait_readable(fd, timeout_ms) < 0)
		return -1;
	ssize_t n;
	do {
		n = recv(fd, buf, sizeof(buf), 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n < (ssize_t)sizeof(*msg)) {
		errno = EPIPE;
		return -1;
	}
	return split_message(buf, (size_t)n, msg, payload, size);
}

ssize_t oci_ctl_recv_fd(int fd, struct oci_msg *msg, void *payload, size_t size, int timeout_ms, int *rfd)
{
	char buf[sizeof(struct oci_msg) + 4096];
	*rfd = -1;
	if (wait_readable(fd, timeout_ms) < 0)
		return -1;
	int nfds = 0;
	ssize_t n = ccs_recv_with_fds(fd, buf, sizeof(buf), rfd, 1, &nfds);
	if (nfds == 0)
		*rfd = -1;
	if (n < 0)
		return -1;
	if (n < (ssize_t)sizeof(*msg)) {
		if (*rfd >= 0)
			close(*rfd);
		*rfd = -1;
		errno = EPIPE;
		return -1;
	}
	return split_message(buf, (size_t)n, msg, payload, size);
}

/* A pty of the container's own devpts (its /dev/ptmx): the master goes to
 * the parent ('T' with the fd), the slave is returned. */
static int console_inside(const struct oci_child_spec *s)
{
	int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return -1;
	int unlock = 0;
	if (ioctl(m, TIOCSPTLCK, &unlock) < 0) {
		close(m);
		return -1;
	}
	int sl = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	if (sl < 0) {
		close(m);
		return -1;
	}
	struct oci_msg msg;
	memset(&msg, 0, sizeof(msg));
	msg.tag = 'T';
	if (ccs_send_with_fds(s->ctl_fd, &msg, sizeof(msg), &m, 1) < 0) {
		close(m);
		close(sl);
		return -1;
	}
	close(m);
	return sl;
}

static void say(const char *a, const char *b)
{
	/* An error after the parent stopped listening: stderr is all there is. */
	(void)!write(2, "ctrobj-oci init: ", 17);
	(void)!write(2, a, strlen(a));
	if (b) {
		(void)!write(2, ": ", 2);
		(void)!write(2, b, strlen(b));
	}
	(void)!write(2, "\n", 1);
}

static __attribute__((noreturn)) void fail(const struct oci_child_spec *s, int stage)
{
	int e = errno;
	if (s->ctl_fd >= 0)
		report(s->ctl_fd, 'E', stage, e);
	_exit(127);
}

int oci_run_hook(const struct oci_hook *h, const char *input, size_t len)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		errno = e;
		return -1;
	}
	if (pid == 0) {
		if (dup2(sv[1], 0) < 0)
			_exit(127);
		syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(h->path, h->argv, h->envp);
		_exit(127);
	}
	close(sv[1]);
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(sv[0], input + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the hook does not read its stdin: fine */
		off += (size_t)n;
	}
	close(sv[0]);
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int status = 0;
	if (pfd >= 0 && h->timeout_s > 0) {
		struct pollfd p = { .fd = pfd, .events = POLLIN };
		int r;
		do {
			r = poll(&p, 1, h->timeout_s * 1000);
		} while (r < 0 && errno == EINTR);
		if (r == 0) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			close(pfd);
			errno = ETIMEDOUT;
			return -1;
		}
	}
	if (pfd >= 0)
		close(pfd);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return status;
}

static int write_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = strlen(data);
	ssize_t n = write(fd, data, len);
	int e = errno;
	close(fd);
	if (n != (ssize_t)len) {
		errno = n < 0 ? e : EIO;
		return -1;
	}
	return 0;
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);
	if (len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] == '/' || buf[i] == 0) {
			char c = buf[i];
			buf[i] = 0;
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				return -1;
			buf[i] = c;
		}
	}
	return 0;
}

/* An O_PATH fd of path in the container (init's root is its rootfs), with
 * no symlink anywhere on the way: a masked or read-only path reached
 * through one is refused (ELOOP) rather than followed elsewhere. */
static int open_nofollow(const char *path, struct stat *st)
{
	struct oci_open_how how = { .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC, .mode = 0,
				    .resolve = OCI_RESOLVE_NO_SYMLINKS | OCI_RESOLVE_NO_MAGICLINKS };
	int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
	if (fd < 0)
		return -1;
	if (fstat(fd, st) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int move_onto(int tree, int target_fd)
{
	return (int)syscall(SYS_move_mount, tree, "", target_fd, "",
			    OCI_MOVE_MOUNT_F_EMPTY_PATH | OCI_MOVE_MOUNT_T_EMPTY_PATH);
}

static int close_keep_errno(int fd, int rc)
{
	int e = errno;
	if (fd >= 0)
		close(fd);
	errno = e;
	return rc;
}

/* maskedPaths: a file gets the host's null device (a detached clone of the
 * host's /dev/null the parent made, data is its fd: never the container's
 * own /dev/null, which an image may make a symlink to a sysctl), checked to
 * be the character device 1:3; a directory gets an empty read-only tmpfs.
 * Both are attached to the target by fd. */
static int do_mask(const struct oci_op *o)
{
	struct stat st, nst;
	int t = open_nofollow(o->target, &st);
	if (t < 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISDIR(st.st_mode)) {
		int fs = (int)syscall(SYS_fsopen, "tmpfs", OCI_FSOPEN_CLOEXEC);
		if (fs < 0)
			return close_keep_errno(t, -1);
		if (syscall(SYS_fsconfig, fs, OCI_FSCONFIG_SET_STRING, "size", "0k", 0) < 0 ||
		    syscall(SYS_fsconfig, fs, OCI_FSCONFIG_SET_STRING, "mode", "755", 0) < 0 ||
		    syscall(SYS_fsconfig, fs, OCI_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
			close_keep_errno(fs, 0);
			return close_keep_errno(t, -1);
		}
		int mnt = (int)syscall(SYS_fsmount, fs, OCI_FSMOUNT_CLOEXEC, (unsigned int)OCI_MOUNT_ATTR_RDONLY);
		close_keep_errno(fs, 0);
		if (mnt < 0)
			return close_keep_errno(t, -1);
		int rc = move_onto(mnt, t);
		close_keep_errno(mnt, 0);
		return close_keep_errno(t, rc);
	}
	char *end = NULL;
	long null_tree = o->data ? strtol(o->data, &end, 10) : -1;
	if (!o->data || end == o->data || *end || null_tree < 0 || fstat((int)null_tree, &nst) < 0 ||
	    !S_ISCHR(nst.st_mode) || major(nst.st_rdev) != 1 || minor(nst.st_rdev) != 3) {
		errno = EBADF;
		return close_keep_errno(t, -1);
	}
	int rc = move_onto((int)null_tree, t);
	close_keep_errno((int)null_tree, 0);
	return close_keep_errno(t, rc);
}

/* readonlyPaths: a recursive clone of what is at the path (reached without
 * symlinks) attached over it, read-only, nosuid, nodev, noexec. */
static int do_readonly(const struct oci_op *o)
{
	struct stat st;
	int t = open_nofollow(o->target, &st);
	if (t < 0)
		return errno == ENOENT ? 0 : -1;
	int tree = (int)syscall(SYS_open_tree, t, "", OCI_OPEN_TREE_CLONE | OCI_AT_RECURSIVE | AT_EMPTY_PATH | O_CLOEXEC);
	if (tree < 0)
		return close_keep_errno(t, -1);
	int rc = move_onto(tree, t);
	if (rc == 0) {
		struct oci_mount_attr a = { .attr_set = OCI_MOUNT_ATTR_RDONLY | OCI_MOUNT_ATTR_NOSUID |
						      OCI_MOUNT_ATTR_NODEV | OCI_MOUNT_ATTR_NOEXEC };
		rc = (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &a, sizeof(a));
	}
	close_keep_errno(tree, 0);
	return close_keep_errno(t, rc);
}

/* linux.devices: the node is made with exactly its mode (umask 0). Whatever
 * is already at the path must be a node of the same kind (it is replaced);
 * anything else (a symlink, a file, a directory) fails with EEXIST. The
 * owner is set through an O_PATH fd of what was made, checked to be the
 * device asked for, never through the path. */
static int do_mknod(const struct oci_op *o)
{
	struct stat st;
	mode_t old = umask(0);
	int rc = mknod(o->target, o->mode, o->dev);
	if (rc < 0 && errno == EEXIST) {
		if (fstatat(AT_FDCWD, o->target, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    (st.st_mode & S_IFMT) == (o->mode & S_IFMT) && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) &&
		    unlink(o->target) == 0)
			rc = mknod(o->target, o->mode, o->dev);
		else
			errno = EEXIST;
	}
	umask(old);
	if (rc < 0)
		return -1;
	int fd = open(o->target, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		return close_keep_errno(fd, -1);
	if ((st.st_mode & S_IFMT) != (o->mode & S_IFMT) || (!S_ISFIFO(st.st_mode) && st.st_rdev != o->dev)) {
		errno = EEXIST;
		return close_keep_errno(fd, -1);
	}
	rc = fchownat(fd, "", o->uid, o->gid, AT_EMPTY_PATH);
	return close_keep_errno(fd, rc);
}

static int do_op(const struct oci_op *o)
{
	switch (o->kind) {
	case OCI_OP_REMOUNT:
		return mount(NULL, o->target, NULL, MS_REMOUNT | MS_BIND | o->flags, NULL);
	case OCI_OP_PROPAGATE:
		return mount(NULL, o->target, NULL, o->flags, NULL);
	case OCI_OP_MASK:
		return do_mask(o);
	case OCI_OP_READONLY:
		return do_readonly(o);
	case OCI_OP_MKNOD:
		return do_mknod(o);
	case OCI_OP_MOUNT: {
		char buf[4096];
		size_t dl = strlen(o->data);
		if (dl >= sizeof(buf)) {
			errno = E2BIG;
			return -1;
		}
		memcpy(buf, o->data, dl + 1);
		char *source = strchr(buf, 2);
		if (!source) {
			errno = EINVAL;
			return -1;
		}
		*source++ = 0;
		char *opts = strchr(source, 2);
		if (!opts) {
			errno = EINVAL;
			return -1;
		}
		*opts++ = 0;
		if (mkdir_p(o->target) < 0)
			return -1;
		if (strcmp(buf, "proc") == 0 || strcmp(buf, "sysfs") == 0) {
			/* proc and sysfs only on a plain directory reached without
			 * symlinks: one an image redirects would leave the path the
			 * masks and read-only paths name unprotected (those then fail
			 * with ELOOP anyway) and a full proc elsewhere. */
			struct stat st;
			int t = open_nofollow(o->target, &st);
			if (t < 0)
				return -1;
			close(t);
			if (!S_ISDIR(st.st_mode)) {
				errno = ENOTDIR;
				return -1;
			}
		}
		return mount(*source ? source : buf, o->target, buf, o->flags, *opts ? opts : NULL);
	}
	case OCI_OP_MOVE:
		/* A detached tree (open_tree clone) the parent made before the
		 * fork; data is its fd number. */
		return ccs_move_mount_to((int)strtol(o->data, NULL, 10), AT_FDCWD, o->target);
	case OCI_OP_SYMLINK:
		if (symlink(o->data, o->target) < 0 && errno != EEXIST)
			return -1;
		return 0;
	case OCI_OP_MKDIR:
		return mkdir_p(o->target);
	case OCI_OP_SYSCTL: {
		char path[4096];
		const char *pre = "/proc/sys/";
		size_t pl = strlen(pre), tl = strlen(o->target);
		if (pl + tl + 1 > sizeof(path)) {
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(path, pre, pl);
		memcpy(path + pl, o->target, tl + 1);
		return write_file(path, o->data);
	}
	}
	errno = EINVAL;
	return -1;
}

static int cap_data(uint64_t eff, uint64_t perm, uint64_t inh)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	d[0].effective = (uint32_t)eff;
	d[1].effective = (uint32_t)(eff >> 32);
	d[0].permitted = (uint32_t)perm;
	d[1].permitted = (uint32_t)(perm >> 32);
	d[0].inheritable = (uint32_t)inh;
	d[1].inheritable = (uint32_t)(inh >> 32);
	return (int)syscall(SYS_capset, &h, d);
}

/* execvpe on the container's PATH, without malloc. */
static void exec_path(const char *file, char *const *argv, char *const *envp)
{
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		return;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (char *const *e = envp; e && *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	int saved = ENOENT;
	size_t fl = strlen(file);
	char buf[4096];
	while (*path) {
		const char *end = strchr(path, ':');
		size_t dl = end ? (size_t)(end - path) : strlen(path);
		if (dl + fl + 2 <= sizeof(buf)) {
			memcpy(buf, path, dl);
			size_t at = dl;
			if (at == 0)
				buf[at++] = '.';
			buf[at++] = '/';
			memcpy(buf + at, file, fl + 1);
			execve(buf, argv, envp);
			if (errno != ENOENT && errno != ENOTDIR)
				saved = errno;
		}
		if (!end)
			break;
		path = end + 1;
	}
	errno = saved;
}

static char state_buf[65537];

static const char *created_state = "";
static size_t created_len;

static int run_hooks(const struct oci_hook *hooks, int n, const char *state, size_t state_len)
{
	for (int i = 0; i < n; i++) {
		int st = oci_run_hook(&hooks[i], state, state_len);
		if (st < 0)
			return -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			say("hook failed", hooks[i].path);
			errno = ECANCELED;
			return -1;
		}
	}
	return 0;
}

#define OCI_MAX_OPS 512
static struct oci_op parsed_ops[OCI_MAX_OPS];

/* "state\0op\0op..." from the 'a' message: each op is kind, flags, mode,
 * dev, uid, gid, data, target separated by \1.  Returns the op count and
 * sets *state_len; -1 when malformed. */
static int parse_ops(char *buf, size_t len, size_t *state_len)
{
	buf[len] = 0;
	size_t sl = strlen(buf);
	*state_len = sl;
	int n = 0;
	char *p = buf + sl;
	char *end = buf + len;
	while (p < end) {
		p++; /* the NUL before the op */
		if (p >= end || n >= OCI_MAX_OPS)
			return p >= end ? n : -1;
		char *f[8];
		int k = 0;
		f[k++] = p;
		for (char *q = p; q < end && *q && k < 8; q++) {
			if (*q == 1) {
				*q = 0;
				f[k++] = q + 1;
			}
		}
		if (k != 8)
			return -1;
		struct oci_op *o = &parsed_ops[n++];
		o->kind = (int)strtol(f[0], NULL, 10);
		o->flags = strtoul(f[1], NULL, 10);
		o->mode = (mode_t)strtoul(f[2], NULL, 10);
		o->dev = (dev_t)strtoull(f[3], NULL, 10);
		o->uid = (uid_t)strtoul(f[4], NULL, 10);
		o->gid = (gid_t)strtoul(f[5], NULL, 10);
		o->data = f[6];
		o->target = f[7];
		p = f[7] + strlen(f[7]);
	}
	return n;
}

static __attribute__((noreturn)) void child_main(const struct oci_child_spec *s)
{
	struct oci_msg m;
	size_t state_len = 0;
	/* Not dumpable until execve resets it: until then this process holds
	 * fds of the runtime (a root connection to ctrobjd among them), and a
	 * process of the container with the same uid must not ptrace it or
	 * take them with pidfd_getfd while it waits at the start gate or after
	 * its capabilities were dropped (runc's CVE-2016-9962). */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < 65; sig++)
		(void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, 8);
	if (s->mode == OCI_MODE_INIT) {
		ssize_t n;
		int nops;
		for (;;) {
			/* 'o' + "\0ops": a batch of mounts the parent's next ones
			 * stack on; 'a' + "creating\3created\0ops": the last batch. */
			n = oci_ctl_recv(s->ctl_fd, &m, state_buf, sizeof(state_buf) - 1, -1);
			if (n < 0 || (m.tag != 'a' && m.tag != 'o'))
				_exit(127);
			nops = parse_ops(state_buf, (size_t)n, &state_len);
			if (nops < 0) {
				errno = EINVAL;
				fail(s, OCI_STAGE_SYNC);
			}
			if (m.tag == 'a')
				break;
			for (int i = 0; i < nops; i++)
				if (do_op(&parsed_ops[i]) < 0)
					fail(s, OCI_STAGE_MOUNT);
			report(s->ctl_fd, 'O', 0, 0);
		}
		/* The two states: "creating" for createContainer, "created" for
		 * startContainer. */
		char *created = memchr(state_buf, 3, state_len);
		size_t creating_len = state_len;
		if (created) {
			creating_len = (size_t)(created - state_buf);
			*created++ = 0;
			created_state = created;
			created_len = state_len - creating_len - 1;
		}
		if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
			fail(s, OCI_STAGE_HOSTNAME);
		if (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0)
			fail(s, OCI_STAGE_HOSTNAME);
		if (s->loopback_up && loopback_up() < 0)
			fail(s, OCI_STAGE_LOOPBACK);
		for (int i = 0; i < nops; i++)
			if (do_op(&parsed_ops[i]) < 0)
				fail(s, parsed_ops[i].kind == OCI_OP_SYSCTL ? OCI_STAGE_SYSCTL
				      : parsed_ops[i].kind == OCI_OP_MKNOD ? OCI_STAGE_MKNOD : OCI_STAGE_MOUNT);
		if (s->sync_runtime_hooks) {
			/* The parent runs prestart/createRuntime now that the
			 * environment exists. */
			char tmp[16];
			report(s->ctl_fd, 'B', 0, 0);
			n = oci_ctl_recv(s->ctl_fd, &m, tmp, sizeof(tmp), -1);
			if (n < 0 || m.tag != 'b')
				_exit(127);
		}
		if (run_hooks(s->create_hooks, s->ncreate_hooks, state_buf, creating_len) < 0)
			fail(s, OCI_STAGE_HOOK);
	}
	int console = s->console_fd;
	if (console == OCI_CONSOLE_INSIDE && (console = console_inside(s)) < 0)
		fail(s, OCI_STAGE_CONSOLE);
	if (console >= 0) {
		if (setsid() < 0 || ioctl(console, TIOCSCTTY, 0) < 0)
			fail(s, OCI_STAGE_CONSOLE);
		for (int i = 0; i < 3; i++)
			if (dup2(console, i) < 0)
				fail(s, OCI_STAGE_CONSOLE);
		if (console > 2)
			close(console);
	} else {
		if (s->new_session)
			(void)setsid();
		for (int i = 0; i < 3; i++)
			if (s->stdio[i] >= 0 && s->stdio[i] != i && dup2(s->stdio[i], i) < 0)
				fail(s, OCI_STAGE_STDIO);
	}
	for (int i = 0; i < s->nrlimits; i++) {
		struct rlimit rl = { (rlim_t)s->rlimits[i].soft, (rlim_t)s->rlimits[i].hard };
		if (setrlimit(s->rlimits[i].resource, &rl) < 0)
			fail(s, OCI_STAGE_RLIMIT);
	}
	if (s->umask >= 0)
		umask((mode_t)s->umask);
	if (s->cwd && chdir(s->cwd) < 0)
		fail(s, OCI_STAGE_CWD);
	if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail(s, OCI_STAGE_NNP);
	struct sock_fprog prog = { s->seccomp_len, (struct sock_filter *)s->seccomp_filter };
	if (s->seccomp_len && !s->no_new_privs &&
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, s->seccomp_flags, &prog) < 0)
		fail(s, OCI_STAGE_SECCOMP);
	if (s->set_caps) {
		for (int c = 0; c <= s->last_cap; c++)
			if (!(s->cap_bounding & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
				fail(s, OCI_STAGE_CAPS);
	}
	if (s->set_user) {
		if (syscall(SYS_setgroups, s->ngroups, s->groups) < 0)
			fail(s, OCI_STAGE_GROUPS);
		if (s->set_caps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
			fail(s, OCI_STAGE_USER);
		if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0)
			fail(s, OCI_STAGE_USER);
		if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0)
			fail(s, OCI_STAGE_USER);
	}
	if (s->set_caps) {
		if (cap_data(s->cap_effective, s->cap_permitted, s->cap_inheritable) < 0)
			fail(s, OCI_STAGE_CAPS);
		(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		for (int c = 0; c <= s->last_cap; c++)
			if ((s->cap_ambient & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
				fail(s, OCI_STAGE_CAPS);
	}
	/* fds above 2 (and the preserved ones) close at exec. */
	unsigned first = 3 + (unsigned)(s->preserve_fds > 0 ? s->preserve_fds : 0);
	syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC);
	if (s->gate_fd >= 0) {
		report(s->ctl_fd, 'R', 0, 0);
		close(s->ctl_fd);
		char go;
		ssize_t n;
		do {
			n = read(s->gate_fd, &go, 1);
		} while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(127);
		close(s->gate_fd);
		if (run_hooks(s->start_hooks, s->nstart_hooks, created_state, created_len) < 0) {
			say("startContainer hook failed", NULL);
			_exit(127);
		}
	}
	if (s->seccomp_len && s->no_new_privs &&
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, s->seccomp_flags, &prog) < 0) {
		if (s->gate_fd < 0)
			fail(s, OCI_STAGE_SECCOMP);
		say("seccomp", strerror(errno));
		_exit(127);
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	exec_path(s->path, s->argv, s->envp);
	if (s->gate_fd < 0)
		fail(s, OCI_STAGE_EXEC);
	say(s->path, strerror(errno));
	_exit(127);
}

pid_t oci_spawn(const struct ccs_join_plan *plan, const struct oci_child_spec *spec, int *stage)
{
	if (plan->path) {
		errno = EINVAL;
		return -1;
	}
	pid_t pid = ccs_join_fork(plan, stage);
	if (pid != 0)
		return pid;
	child_main(spec);
}
