/*
 * CShim: every raw syscall the project makes, one ccs_<name> function each,
 * and the whole child side of every clone (see spawn.c, holder.c).
 * All functions return -1 with errno set on failure unless documented.
 */
#ifndef CSHIM_H
#define CSHIM_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/file.h>
#include <sys/eventfd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- named constants the Swift side uses ----------------------------- */
#define CCS_MS_BIND 4096UL          /* MS_BIND */
#define CCS_MS_REC 16384UL          /* MS_REC */
#define CCS_OPEN_TREE_CLONE 1U      /* OPEN_TREE_CLONE */
#define CCS_AT_EMPTY_PATH 0x1000U   /* AT_EMPTY_PATH */
#define CCS_AT_RECURSIVE 0x8000U    /* AT_RECURSIVE */
#define CCS_MS_NOSUID 2UL           /* MS_NOSUID */
#define CCS_MS_NODEV 4UL            /* MS_NODEV */
#define CCS_MS_NOEXEC 8UL           /* MS_NOEXEC */
#define CCS_RESOLVE_NO_MAGICLINKS 0x02ULL /* RESOLVE_NO_MAGICLINKS */
#define CCS_RESOLVE_NO_SYMLINKS 0x04ULL   /* RESOLVE_NO_SYMLINKS */
#define CCS_RESOLVE_BENEATH 0x08ULL       /* RESOLVE_BENEATH */
#define CCS_RESOLVE_IN_ROOT 0x10ULL       /* RESOLVE_IN_ROOT */
#define CCS_KEYCTL_NEGATE 13        /* KEYCTL_NEGATE */
#define CCS_NSFS_MAGIC 0x6e736673L  /* NSFS_MAGIC: statfs f_type of a namespace file */
#define CCS_NS_GET_USERNS 0xb701UL  /* NS_GET_USERNS, _IO(0xb7, 0x1) */
#define CCS_NS_GET_NSTYPE 0xb703UL  /* NS_GET_NSTYPE, _IO(0xb7, 0x3) */
#define CCS_PF_EXITING 0x4ULL       /* PF_EXITING in /proc/PID/stat's flags */

/* ---- plain syscalls (syscalls.c) ------------------------------------- */
int ccs_pidfd_open(pid_t pid, unsigned int flags);
/* A pidfd of the task tid, a thread or a process (PIDFD_THREAD, 6.9+; before
 * that only a thread-group leader can be opened: EINVAL for other threads). */
int ccs_pidfd_open_task(pid_t tid);
int ccs_pidfd_send_signal(int pidfd, int sig);
int ccs_setns(int fd, int nstype);
int ccs_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve);
int ccs_open_tree(int dirfd, const char *path, unsigned int flags);
int ccs_move_mount_to(int from_fd, int to_dirfd, const char *to_path);
int ccs_close_range(unsigned int first, unsigned int last, unsigned int flags);
/* waitid(P_PIDFD): *status gets a wait(2)-style status; WNOHANG honoured.
 * Returns 1 if reaped, 0 if still running (WNOHANG), -1 on error. */
int ccs_pidfd_wait(int pidfd, int options, int *status);
/* PIDFD_GET_INFO (6.13+), exit code only (6.15+). Returns 1 and fills
 * *status when the kernel knows the exit status, 0 when not yet, -1 error. */
int ccs_pidfd_exit_status(int pidfd, int *status);
/* The pid of a pidfd in the caller's pid namespace (PIDFD_GET_INFO; fdinfo on
 * older kernels and for a thread's pidfd, where it is the thread's id); -1 once
 * the task is gone. */
pid_t ccs_pidfd_pid(int pidfd);
uint64_t ccs_socket_cookie(int fd);
/* 1 if the peer of connected AF_UNIX socket fd was released (every
 * reference to it closed), 0 if it is still open, -1 with errno when the
 * kernel cannot say (no CONFIG_UNIX_DIAG). Right even after fd itself was
 * shut down, when poll() reports HUP whatever the peer does (unixdiag.c). */
int ccs_unix_peer_gone(int fd);
int ccs_peer_pidfd(int sockfd);
int ccs_peer_cred(int sockfd, pid_t *pid, uid_t *uid, gid_t *gid);
/* mount(src, target, MS_BIND): a directory bound onto itself becomes a mount point. */
int ccs_bind_mount(const char *src, const char *target);
/* mount(MS_PRIVATE | MS_REC): nothing mounted below target propagates in or out. */
int ccs_make_private(const char *target);
/* getxattr(2): the value's length, or -1 with errno (ENODATA: not set). */
long ccs_getxattr(const char *path, const char *name, void *value, unsigned long size);
int ccs_seqpacket_pair(int fds[2]);
int ccs_bind_mount_fd(int fd, const char *target);
/* statfs(2)'s f_type of path (NSFS_MAGIC, CGROUP2_SUPER_MAGIC, ...). */
long ccs_statfs_type(const char *path);
int ccs_umount_detach(const char *target);

/* ---- the pin namespace (pinner.c) -------------------------------------- */
/* A private mount namespace rooted at root_dir (<state>/containers), kept by
 * one C pthread; pins (bind mounts of nsfs files) live in it, not in the
 * host's mount table. Joins the namespace pinned at pin_path, or makes a new
 * one: then *new_ns_fd is its nsfs fd, which the caller pins at pin_path
 * (else -1). *view_fd: O_PATH fd of its root, for openat/fstatat of pins. */
struct ccs_pinner;
struct ccs_pinner *ccs_pinner_start(const char *pin_path, const char *root_dir, int *view_fd, int *new_ns_fd);
/* Bind the nsfs fd onto relpath (an existing file) inside the pin namespace. */
int ccs_pinner_bind(struct ccs_pinner *p, int nsfd, const char *relpath);
int ccs_pinner_umount(struct ccs_pinner *p, const char *relpath);
/* The pinner thread's id: /proc/self/task/TID/mountinfo lists the pins. */
pid_t ccs_pinner_tid(struct ccs_pinner *p);
void ccs_pinner_stop(struct ccs_pinner *p);
/* statfs(2)'s f_type of dirfd/path (not following a last symlink). */
long ccs_statfs_type_at(int dirfd, const char *path);
int ccs_write_all(int fd, const void *buf, size_t len);
int ccs_set_cloexec(int fd, int on);
int ccs_get_cloexec(int fd);
/* accept4(SOCK_CLOEXEC), no address. */
int ccs_accept(int listen_fd);
int ccs_pipe_cloexec(int fds[2]);
/* keyctl(2), raw: returns the syscall's long result, -1 with errno. */
long ccs_keyctl(int op, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
/* setfsgid+setfsuid on the calling thread only (raw syscalls); returns the
 * previous ids through old_uid and old_gid. */
void ccs_swap_fsids(uid_t uid, gid_t gid, uid_t *old_uid, gid_t *old_gid);

/* ---- fd passing (fdpass.c) -------------------------------------------- */
/* Send len bytes with nfds fds attached (SCM_RIGHTS). MSG_NOSIGNAL. */
/* 1 when the peer of a stream/seqpacket socket has hung up (POLLRDHUP,
 * POLLHUP or POLLERR now), else 0. */
int ccs_peer_hung_up(int sock);
/* Take the next datagram off sock and drop it (its fds are closed). */
ssize_t ccs_discard_datagram(int sock);
ssize_t ccs_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* Receive one message; fds arrive CLOEXEC. At most maxfds are kept in fds
 * and *nfds set; any beyond that are closed (and MSG_CTRUNC is an error). */
ssize_t ccs_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);
/* The size of the next datagram without taking it (MSG_PEEK|MSG_TRUNC);
 * 0 at EOF. */
ssize_t ccs_peek_size(int sock);
/* Like recv but gives up after timeout_ms (-1: wait forever): ETIMEDOUT. */
int ccs_wait_readable(int fd, int timeout_ms);

/* ---- ContainerWire messages, for the C helpers (wire.c) ---------------
 * Message.swift's encoding: "op\n" then "key=value\n" lines, "%" and "\n"
 * in values escaped as "%25" and "%0A". */
/* Append key=value (escaped) at buf+*len: 0, or -1 when it does not fit. */
int ccs_msg_add(char *buf, size_t size, size_t *len, const char *key, const char *value);
/* 1 when the message's op line is op. */
int ccs_msg_op_is(const char *msg, size_t len, const char *op);
/* The unescaped value of key into out (NUL-terminated): 1 found, 0 absent,
 * -1 longer than size-1. */
int ccs_msg_get(const char *msg, size_t len, const char *key, char *out, size_t size);

/* ---- namespaces: the holder (holder.c) --------------------------------
 * container_create's short-lived process: optionally becomes the
 * unprivileged creator, unshares the user namespace (the parent writes the
 * id maps), unshares the rest, builds an empty tmpfs root if asked, reports
 * ready, and waits to be told to exit.  (The cgroup namespace is born with
 * init, which joins the container's cgroup: see ccs_join_plan.) */
#define CCS_MAX_CGROUPS 16
struct ccs_holder_plan {
	int become_user;      /* setresuid/gid to uid/gid before the user ns */
	uid_t uid;
	gid_t gid;
	int new_user;         /* unshare(CLONE_NEWUSER) and wait for maps */
	int unshare_flags;    /* CLONE_NEW{NS,UTS,IPC,NET,CGROUP,TIME} */
	int empty_root;       /* pivot into a fresh tmpfs */
};
/* Starts the holder; *ctl is the parent's end of the control socket.
 * Returns the holder's pid. */
pid_t ccs_holder_start(const struct ccs_holder_plan *plan, int *ctl);
/* Read the holder's next report: 'U' (user ns made), 'R' (ready).
 * On 'E' returns -1 with errno set and *stage set to the failing step. */
int ccs_holder_expect(int ctl, char want, int timeout_ms, int *stage);
/* Tell the holder to go on ('M') or exit ('X'). */
int ccs_holder_tell(int ctl, char what);

/* ---- joining a container and running there (spawn.c) ------------------ */
#define CCS_MAX_NS 8
struct ccs_join_plan {
	int cgroup_procs_fds[CCS_MAX_CGROUPS];
	int cgroup_count;
	int userns_fd;              /* -1: stay in the caller's user ns */
	int ns_fds[CCS_MAX_NS];     /* joined after the user ns, in order */
	int ns_types[CCS_MAX_NS];
	int ns_count;
	int pidns_mode;             /* 0: none, 1: unshare a new one, 2: join pidns_fd */
	int pidns_fd;
	int unshare_cgroup;         /* unshare(CLONE_NEWCGROUP) after joining the cgroup:
	                               the container's cgroup ns is born with its init */
	int become_root;            /* setresuid/gid(0) after joining the user ns */
	int chdir_root;             /* chdir("/") after joining the mount ns */
	/* exec part: path == NULL means "return 0 in the child like fork()" */
	const char *path;
	char *const *argv;
	char *const *envp;
	int stdio[3];               /* -1: keep */
	int keep_fd;                /* an extra fd left open across exec, or -1 */
	int die_with_parent;        /* PR_SET_PDEATHSIG SIGKILL */
	int gate_fd;                /* >= 0: read one byte from it before exec
	                               (EOF without a byte: _exit(127)) */
	int new_pgrp;               /* setpgid(0, 0) before exec, so that a timeout
	                               can kill what the program started too */
	/* Joining the cgroup without cgroup.procs fds (a non-root caller): the
	 * child connects to ctrobjd at daemon_path and sends "cgroup.join" with
	 * join_container_fd; ctrobjd moves the child itself. Only when
	 * join_via_daemon is 1 (a zeroed plan does not). */
	int join_via_daemon;
	int join_container_fd;
	char daemon_path[108];
	/* Pure cgroup v2: the first child is made by clone3(CLONE_INTO_CGROUP)
	 * with cgroup_dir_fd (the container's cgroup directory) instead of
	 * writing cgroup.procs. Only when into_cgroup is 1. */
	int into_cgroup;
	int cgroup_dir_fd;
};
/* Set the cgroup.join part of a plan (path truncated to sun_path's size). */
void ccs_plan_set_cgroup_join(struct ccs_join_plan *p, int container_fd, const char *daemon_path);
/* Steps reported on failure (the child's stage, with its errno). */
enum ccs_stage {
	CCS_STAGE_FORK = 1, CCS_STAGE_CGROUP, CCS_STAGE_USERNS, CCS_STAGE_SETNS,
	CCS_STAGE_SETID, CCS_STAGE_PIDNS, CCS_STAGE_CLONE, CCS_STAGE_STDIO,
	CCS_STAGE_EXEC, CCS_STAGE_CHDIR, CCS_STAGE_MOUNT, CCS_STAGE_SYNC,
	CCS_STAGE_ROOT,
};
/* Fork a process that is in every namespace and cgroup of the plan.  With a
 * new or joined pid ns the process is made by an intermediate child with
 * CLONE_PARENT, so it is still the caller's child.  Returns its pid in the
 * parent (and 0 in the child when plan->path is NULL).  On failure returns
 * -1, errno, and *stage. */
pid_t ccs_join_fork(const struct ccs_join_plan *plan, int *stage);
/* JoinPlan.fields (ContainerWire's JoinPlan.swift) from a message into *p, the
 * fd indexes resolved through fds[0..nfds), for ctrobj-upcall-key (wire.c).
 * The pid namespace to join is left out of the plan and given in *pidns_fd
 * (-1: none): the caller joins it itself, for its children.  Exec fields are
 * left empty, chdir_root set.  0, or -1 when malformed ("new" pid namespace
 * included: that is for a container's init only). */
int ccs_msg_join_plan(const char *msg, size_t len, const int *fds, int nfds, struct ccs_join_plan *p, int *pidns_fd);

/* ---- one-off jobs in a container's namespaces (nsjobs.c) -------------- */
/* A socket in the network ns of netns_fd, made on a fresh pthread. */
int ccs_socket_in_netns(int netns_fd, int domain, int type, int protocol);
/* The same with a caller's credentials: the thread joins netns_fd (if >= 0)
 * and, if uid >= 0, drops to uid/gid with no groups and no capabilities
 * (raw setres[ug]id: this thread only) before socket(2). */
int ccs_socket_as(int netns_fd, int64_t uid, int64_t gid, int domain, int type, int protocol);
/* Move pid (named by pidfd too) into the cgroups of procs_fds[0..n), pinned
 * for the move: a thread PTRACE_SEIZEs it (so that, should it exit, nobody
 * can reap it and reuse its pid until the thread is gone, which detaches it),
 * checks the pidfd still names pid, and, if userns_ino is not 0, that the
 * process is in that user namespace (EPERM otherwise). 0 or -1 with errno. */
int ccs_cgroup_move_pinned(pid_t pid, int pidfd, const int *procs_fds, int n, uint64_t userns_ino);
/* open(2) of path on a thread that runs as uid/gid (fs ids too, no groups,
 * no capabilities): the kernel's permission checks are the caller's. */
int ccs_open_as(uid_t uid, gid_t gid, const char *path, int flags);
/* Signal pids[0..n) through pidfds from a thread running as uid/gid (no
 * groups, no capabilities): the kernel's kill permission check is the
 * caller's. Returns how many were signalled. */
int ccs_signal_pids_as(uid_t uid, gid_t gid, const pid_t *pids, int n, int sig);
/* How long a mount inside a container may take before its child is killed. */
#define CCS_MOUNT_TIMEOUT_MS 10000
/* Run a mount inside a container: a child joins userns_fd (if >= 0 and
 * as_container_root) and mntns_fd, (pidns_fd: fork once more to be in it),
 * then either moves tree_fd onto target (tree_fd >= 0) or mounts
 * source/fstype/data on target.  target resolves inside the container. */
int ccs_mount_in_container(int userns_fd, int mntns_fd, int pidns_fd, int tree_fd,
                           const char *source, const char *target, const char *fstype,
                           unsigned long flags, const char *data, int *stage);
/* A bind mount for a container's owner, made as the owner could: a child
 * becomes uid/gid, joins userns_fd (the container's user namespace, which it
 * owns), unshares a mount namespace (a copy of ctrobjd's, whose flags and
 * submounts the kernel locks), clones source there recursively (it must be
 * what source_fd names: EXDEV otherwise), joins mntns_fd and moves the
 * clone onto target. Killed after CCS_MOUNT_TIMEOUT_MS. */
int ccs_bind_as_owner(uid_t uid, gid_t gid, int userns_fd, int mntns_fd, const char *source, int source_fd,
                      const char *target, int *stage);
/* Open "/" of mntns_fd as an O_PATH directory fd. */
int ccs_open_root_of_mntns(int mntns_fd);

/* ---- uevent injection (uevent.c) -------------------------------------- */
/* Send one uevent, the kernel's "ACTION@DEVPATH\0KEY=VALUE\0..." buffer
 * without SEQNUM, to the kernel through sock (AF_NETLINK,
 * NETLINK_KOBJECT_UEVENT): the kernel appends a SEQNUM and broadcasts it in
 * sock's network namespace as its own (sender portid 0).  uid and gid are
 * the credentials the listeners see.  Waits for the kernel's ack: returns 0,
 * or -1 with its errno (EPERM without CAP_SYS_ADMIN over the namespace's
 * owner, EINVAL when too big, ECONNREFUSED before Linux 4.18). */
int ccs_uevent_inject(int sock, const void *buf, size_t len, uid_t uid, gid_t gid);
/* Bind a netlink socket to multicast groups (1: the kernel's uevents). */
int ccs_netlink_bind_groups(int sock, unsigned int groups);
/* Whether network interface `name` exists in sock's network namespace,
 * asked under the rtnl lock (SIOCGHWTSTAMP), so a move between namespaces is
 * seen whole: 1 yes, 0 no, -1 error. */
int ccs_netdev_present(int sock, const char *name);

/* core_pattern socket mode (coresock.c). */
struct ccs_core_info {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	unsigned int coredump_mask; /* PIDFD_COREDUMPED 1, SKIP 2, USER 4, ROOT 8 */
	int signal;                 /* 0 when this kernel does not say */
};
/* 1 when the stream starts with an ELF header ("@" mode: no request). */
int ccs_coredump_first_bytes_are_elf(int fd);
/* "@@" request protocol: read the request, ack KERNEL|WAIT, read the mark. */
int ccs_coredump_handshake(int fd);
int ccs_pidfd_coredump_info(int pidfd, struct ccs_core_info *out);
/* The signal in the core's NT_PRSTATUS note, peeked; 0 if not found. */
int ccs_core_signal_peek(int fd, int timeout_ms);
/* fork, setsid, fork, exec: an orphaned daemon; ready_fd becomes its fd 3.
 * Returns the daemon's pid. */
pid_t ccs_spawn_detached(const char *path, char *const argv[], int ready_fd);
/* PR_SET_DUMPABLE 0: a core server must not dump into itself. */
int ccs_set_nondumpable(void);
/* The key route (keyhelper.c): everything request-key's program does for
 * one request; argv as `ctrobj-upcall key STATE %k %t %u %g %T %P %S %d`.
 * Returns the exit code (it may exec request-key instead). */
int ccs_key_helper(int argc, char **argv);
/* 1 when every namespace of pid among kinds (CLONE_NEW* bits) that can be
 * read is the caller's (inode and device), and at least one can; else 0. */
int ccs_is_host_process(pid_t pid, int kinds);
/* setvbuf(stdout, _IOLBF): stdout is a C global Swift 6 will not touch. */
void ccs_line_buffer_stdout(void);
/* F_SETPIPE_SZ. */
int ccs_grow_pipe(int fd, int size);
/* Copy src to EOF into dst (dst < 0: discard), keeping at most limit bytes
 * (the rest drained); by splice where the kernel can, else read/write.
 * 0 or -1 (errno); *written: bytes kept. */
int ccs_copy_stream(int src, int dst, uint64_t limit, uint64_t *written);


#ifdef __cplusplus
}
#endif

#endif
