/*
 * COCIChild: the child side of ctrobj-oci's init and exec processes, in C
 * (no Swift runs between fork and exec), plus the parent-side helpers that
 * must be C: compiling a seccomp profile with libseccomp, running a hook
 * with a timeout.
 *
 * Protocol between `ctrobj-oci create` (parent) and init (child) on the
 * SOCK_SEQPACKET ctl socket (struct oci_msg, then an optional payload):
 *
 *   parent -> child   'o' + \0ops      (any number) mounts init makes before the
 *                                     parent's next ones (container_mount), which stack on them
 *   child  -> parent  'O'             done
 *   parent -> child   'a' + creating\3created\0ops
 *                                     the last ops (mounts, /dev, sysctls, masked and
 *                                     read-only paths); the two state JSONs for the hooks
 *   child  -> parent  'B'             (only with sync_runtime_hooks) ops done: the
 *   parent -> child   'b'             parent ran prestart and createRuntime hooks
 *                                     (init then runs createContainer hooks)
 *   child  -> parent  'T' + fd        (with process.terminal and a devpts in the container)
 *                                     the pty master from the container's /dev/ptmx
 *   child  -> parent  'R'             credentials dropped; waiting at the start gate
 *   child  -> parent  'E' stage errno a step failed (the child exits 127)
 *   EOF on either side               the other is gone: the child exits
 *
 * For exec (mode OCI_MODE_EXEC) there are no ops: EOF (it exec'd) or 'E'.
 * After 'R' the init reads one byte from
 * the start gate (the exec fifo of the state dir, opened O_RDWR), runs the
 * startContainer hooks and execs; EOF without a byte: _exit(127).
 */
#ifndef OCICHILD_H
#define OCICHILD_H

#include <stdint.h>
#include <sys/types.h>
#include "cshim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OCI_CONSOLE_INSIDE (-2)
#define OCI_MODE_INIT 1
#define OCI_MODE_EXEC 2

enum oci_stage {
	OCI_STAGE_JOIN = 1, OCI_STAGE_SYNC, OCI_STAGE_HOSTNAME, OCI_STAGE_SYSCTL,
	OCI_STAGE_MOUNT, OCI_STAGE_MKNOD, OCI_STAGE_HOOK, OCI_STAGE_CONSOLE,
	OCI_STAGE_GROUPS, OCI_STAGE_USER, OCI_STAGE_CAPS, OCI_STAGE_RLIMIT,
	OCI_STAGE_NNP, OCI_STAGE_SECCOMP, OCI_STAGE_CWD, OCI_STAGE_GATE,
	OCI_STAGE_EXEC, OCI_STAGE_OOM, OCI_STAGE_STDIO, OCI_STAGE_APPARMOR,
	OCI_STAGE_LOOPBACK,
};

/* Mount work init does itself, in its mount namespace, before it drops
 * privileges: what a mount made from outside cannot carry. */
enum oci_op_kind {
	OCI_OP_REMOUNT = 1, /* mount(NULL, target, NULL, MS_REMOUNT|MS_BIND|flags): per-mount flags of a bind */
	OCI_OP_PROPAGATE,   /* mount(NULL, target, NULL, flags): MS_PRIVATE/MS_SLAVE/MS_SHARED [|MS_REC] */
	OCI_OP_MASK,        /* the host's /dev/null (data: the fd of a detached clone of it, checked
	                       to be char 1:3) over a file, an empty read-only tmpfs over a directory;
	                       by fd, the target reached without symlinks (else ELOOP); absent: skipped */
	OCI_OP_READONLY,    /* a clone of target attached over it, read-only (by fd, no symlinks); absent: skipped */
	OCI_OP_MKNOD,       /* mknod(target, mode, dev) (an existing node of that kind replaced, anything
	                       else EEXIST), then fchownat(uid, gid) through an O_PATH fd of the node */
	OCI_OP_SYSCTL,      /* write data to /proc/sys/<target> */
	OCI_OP_MOUNT,       /* mkdir -p target, mount(source, target, fstype, flags, options);
	                       data is "fstype\2source\2options": the kernel filesystems
	                       (proc, sysfs, tmpfs, devpts, mqueue), made inside */
	OCI_OP_SYMLINK,     /* symlink(data, target); an existing target is left */
	OCI_OP_MKDIR,       /* mkdir -p target */
	OCI_OP_MOVE,        /* move_mount of the detached tree whose fd (inherited) is data onto target */
};

struct oci_op {
	int kind;
	const char *target;
	unsigned long flags;
	const char *data;
	mode_t mode;
	dev_t dev;
	uid_t uid;
	gid_t gid;
};

struct oci_hook {
	const char *path;
	char *const *argv;
	char *const *envp;
	int timeout_s; /* 0: none */
};

struct oci_rlimit {
	int resource;
	uint64_t soft, hard;
};

struct oci_child_spec {
	int mode;                /* OCI_MODE_INIT or OCI_MODE_EXEC */
	int ctl_fd;              /* the child's end of the ctl socket */
	const char *path;        /* resolved inside the container after the mounts */
	char *const *argv;
	char *const *envp;
	const char *cwd;
	const char *hostname;    /* NULL: leave */
	const char *domainname;  /* NULL: leave */
	const struct oci_hook *create_hooks; int ncreate_hooks; /* createContainer */
	const struct oci_hook *start_hooks; int nstart_hooks;   /* startContainer */
	int set_user; uid_t uid; gid_t gid;
	const gid_t *groups; int ngroups;           /* setgroups (only with set_user) */
	int set_caps;
	uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
	int last_cap;            /* highest capability this kernel knows */
	const struct oci_rlimit *rlimits; int nrlimits;
	int no_new_privs;
	const void *seccomp_filter; unsigned short seccomp_len; /* struct sock_filter[len], 0: none */
	unsigned int seccomp_flags;
	int oom_score_adj; int set_oom;
	int umask; /* -1: leave */
	int console_fd;          /* pty slave: setsid, controlling tty, 0-2; -1: none;
	                            OCI_CONSOLE_INSIDE: made from the container's /dev/ptmx,
	                            the master sent to the parent ('T' with the fd) */
	int stdio[3];            /* -1: keep the caller's */
	int preserve_fds;        /* fds 3..3+n-1 stay open across exec */
	int gate_fd;             /* start gate (exec fifo, O_RDWR), -1: none */
	int new_session;         /* setsid() without a console */
	int sync_runtime_hooks;  /* 'B'/'b' after the ops: the parent runs prestart/createRuntime hooks */
	int loopback_up;         /* a network namespace of its own: "lo" up (as runc), before privileges go */
};

/* Fork the process through ccs_join_fork(plan) (plan->path must be NULL) and
 * run the child side of spec in it; it never returns in the child.  Returns
 * the pid (in the caller's pid namespace), or -1 with errno and *stage (a
 * ccs_stage from joining). */
pid_t oci_spawn(const struct ccs_join_plan *plan, const struct oci_child_spec *spec, int *stage);

struct oci_msg {
	char tag;
	char stage;
	char pad[2];
	int32_t value;
};
/* Send a tag (and payload) on the ctl socket; read one: returns the payload
 * length (>= 0) with *msg set, or -1 (0-length read: errno = EPIPE). */
int oci_ctl_send(int fd, char tag, const void *payload, size_t len);
ssize_t oci_ctl_recv(int fd, struct oci_msg *msg, void *payload, size_t size, int timeout_ms);
/* The same, and an fd that came with the message in *rfd (-1: none). */
ssize_t oci_ctl_recv_fd(int fd, struct oci_msg *msg, void *payload, size_t size, int timeout_ms, int *rfd);

/* Run a hook: fork, stdin from a pipe fed with `input`, exec; wait at most
 * timeout_s seconds (0: forever), then SIGKILL.  Returns the wait status,
 * or -1 with errno (ETIMEDOUT on timeout). Async-signal-safe apart from the
 * caller's strings. */
int oci_run_hook(const struct oci_hook *hook, const char *input, size_t len);

/* ---- seccomp (seccomp.c, libseccomp) ---------------------------------- */
struct oci_sc_arg {
	unsigned int index;
	uint64_t value, value_two;
	int op; /* libseccomp's enum scmp_compare: NE 1, LT 2, LE 3, EQ 4, GE 5, GT 6, MASKED_EQ 7 */
};
void *oci_sc_new(uint32_t default_action);
/* 0, or -1 (EINVAL: unknown name). */
int oci_sc_add_arch(void *ctx, const char *name);
/* 0 added, 1 the syscall is unknown here (skipped), -1 with errno. */
int oci_sc_add_rule(void *ctx, uint32_t action, const char *syscall, const struct oci_sc_arg *args, unsigned int nargs);
/* The BPF program (malloc'd) and its length in instructions. */
int oci_sc_export(void *ctx, void **prog, unsigned short *len);
void oci_sc_free(void *ctx);
/* libseccomp's version (major<<16 | minor<<8 | micro): part of the key of compiled programs kept. */
unsigned int oci_sc_version(void);

/* ---- small parent-side syscalls ----------------------------------------- */
/* A pty: master (O_RDWR|O_NOCTTY|O_CLOEXEC) and slave fds. */
int oci_openpty(int *master, int *slave);
/* Connect to the unix socket at path and send fd with SCM_RIGHTS (as runc
 * does: the payload is the pty's name). */
int oci_send_console(const char *socket_path, int fd, const char *name);
/* mkfifo + open O_RDWR|O_CLOEXEC. */
int oci_make_fifo(const char *path);
/* open O_WRONLY|O_NONBLOCK and write one byte: 0, or -1 (ENXIO: no init waits). */
int oci_fifo_release(const char *path);
/* The start time (clock ticks after boot, field 22 of /proc/PID/stat). 0: no such pid. */
unsigned long long oci_proc_start_time(pid_t pid);

#ifdef __cplusplus
}
#endif
#endif
