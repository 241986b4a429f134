/*
 * container.h - containers as kernel objects (David Howells' 2017 proposal).
 *
 * One header, two implementations:
 *   - the userspace emulation (libcontainerobject.so, talks to ctrobjd);
 *   - the kernel patch in kernel-patch/ (real syscalls; see
 *     include/uapi/linux/container.h there, which carries the same values).
 *
 * Every call returns -1 and sets errno on failure.  Errors are the same in
 * both implementations:
 *   EINVAL  unknown flag bit, CONTAINER_NEW_FS_NS with CONTAINER_NEW_EMPTY_FS_NS,
 *           empty name, name of CONTAINER_NAME_MAX bytes or more, '/' in a name
 *   EEXIST  the name is taken
 *   EBUSY   fork_into_container() after the container's init was started
 *   ESRCH   the container is dead (its init exited) or was destroyed
 *   EBADF   the fd is not a container fd
 *   EPERM   the caller may not do this (the message on stderr/log names it)
 *   ENOENT  container_open(): no container of that name
 * The emulation adds one: ECONNREFUSED never escapes; when ctrobjd is not
 * running every call fails with EHOSTDOWN and prints how to start it once.
 */
#ifndef CONTAINER_H
#define CONTAINER_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* container_create() flags: the proposal's uapi names and values. */
#define CONTAINER_NEW_FS_NS        0x00000001u /* copy of the creator's mount ns */
#define CONTAINER_NEW_EMPTY_FS_NS  0x00000002u /* mount ns whose root is an empty tmpfs */
#define CONTAINER_NEW_CGROUP_NS    0x00000004u
#define CONTAINER_NEW_UTS_NS       0x00000008u
#define CONTAINER_NEW_IPC_NS       0x00000010u
#define CONTAINER_NEW_USER_NS      0x00000020u /* root inside maps to the creator */
#define CONTAINER_NEW_PID_NS       0x00000040u /* born in fork_into_container() */
#define CONTAINER_NEW_NET_NS       0x00000080u
#define CONTAINER_KILL_ON_CLOSE    0x00000100u /* destroy when the last fd reference closes */
#define CONTAINER_FD_CLOEXEC       0x00000200u /* the fd does not survive execve() */
#define CONTAINER_NEW_TIME_NS      0x00000400u /* extension: not in the 2017 proposal */
#define CONTAINER__FLAG_MASK       0x000007ffu

/* A name is 1 to CONTAINER_NAME_MAX - 1 bytes and holds no '/'. */
#define CONTAINER_NAME_MAX 24

/* ---- the proposal ------------------------------------------------------ */

/* Create a container; returns a container fd. */
int container_create(const char *name, unsigned int flags);

/* Like fork(): returns the child's pid in the parent and 0 in the child.
 * The child is the container's init: PID 1 of its pid namespace (with
 * CONTAINER_NEW_PID_NS), in all its namespaces and its cgroup, with the
 * container's root as "/", and root of the container's user namespace.
 * Only once per container: later calls fail with EBUSY.  When init exits,
 * every process of the container is killed and poll() on the container fd
 * reports POLLHUP.  A multithreaded caller may only do async-signal-safe work
 * in the child before execve(). */
pid_t fork_into_container(int container_fd);

/* A socket in the container's network namespace. */
int container_socket(int container_fd, int domain, int type, int protocol);

/* ---- paths: the container fd as a dirfd --------------------------------
 * Paths, relative or absolute, resolve against the container's root and can
 * never leave it ("..", absolute symlinks and magic links stay inside).
 * With the kernel patch these are openat()/mkdirat() on the container fd. */
int container_openat(int container_fd, const char *path, int flags, mode_t mode);
int container_mkdirat(int container_fd, const char *path, mode_t mode);
int container_symlinkat(const char *target, int container_fd, const char *linkpath);
int container_unlinkat(int container_fd, const char *path, int flags);
int container_fchownat(int container_fd, const char *path, uid_t uid, gid_t gid);

/* ---- extensions (the proposal's "future work"; emulation only) ---------- */

/* Open an existing container by name (owner or root only).
 * flags: 0 or CONTAINER_FD_CLOEXEC. */
int container_open(const char *name, unsigned int flags);

/* container_create() with the container's cgroup at cgroup_path, relative
 * to each cgroup hierarchy's root ("/libpod_parent/libpod-1"), instead of
 * below ctrobjd's parent. Root only (EPERM); the directory must not exist
 * (EEXIST): ctrobjd makes it and removes what it made (docs/security.md). */
int container_create_cgroup(const char *name, unsigned int flags, const char *cgroup_path);

/* Mount into the container's mount namespace from outside.  source is a
 * host path for MS_BIND, else the filesystem's source string; target
 * resolves inside the container.  "proc" needs a running init when the
 * container has its own pid namespace. */
int container_mount(int container_fd, const char *source, const char *target,
                    const char *fstype, unsigned long mountflags, const char *data);

/* Share namespaces before init starts.  nstypes is a mask of CLONE_NEW*
 * bits; source_fd is another container fd, a pidfd, or (with exactly one bit)
 * an nsfs fd such as open("/proc/PID/ns/net").  EBUSY once init started. */
int container_set_ns(int container_fd, unsigned int nstypes, int source_fd);

enum container_limit {
	CONTAINER_LIMIT_MEMORY = 1, /* bytes */
	CONTAINER_LIMIT_PIDS   = 2, /* processes */
	CONTAINER_LIMIT_CPU    = 3, /* thousandths of a CPU */
};
/* value < 0 removes the limit. */
int container_set_limit(int container_fd, int which, int64_t value);

struct container_stats {
	uint64_t memory_bytes;
	uint64_t pids;
	uint64_t cpu_usage_ns;
};
int container_get_stats(int container_fd, struct container_stats *stats);

enum container_state {
	CONTAINER_STATE_CREATED = 1, /* no init yet */
	CONTAINER_STATE_RUNNING = 2,
	CONTAINER_STATE_FROZEN  = 3,
	CONTAINER_STATE_EXITED  = 4, /* init exited; exit_status is valid when has_exit_status */
};
struct container_status {
	uint64_t id;
	uint32_t flags;
	uint32_t state;
	pid_t    init_pid;        /* in the daemon's pid namespace; 0 when none */
	int32_t  has_exit_status;
	int32_t  exit_status;     /* a wait status: use WIFEXITED() and friends */
	uid_t    owner;
	char     name[CONTAINER_NAME_MAX];
};
int container_get_status(int container_fd, struct container_status *status);

int container_freeze(int container_fd);
int container_thaw(int container_fd);
/* Signal every process of the container. */
int container_kill(int container_fd, int signo);
/* Kill every process, remove the cgroup, release the namespaces and forget
 * the name, whatever fds still refer to it (they then fail with ESRCH). */
int container_destroy(int container_fd);

/* The message of the calling thread's last failed call (emulation: names the
 * container and what was refused; NULL if none). */
const char *container_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* CONTAINER_H */
