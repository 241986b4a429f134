/* The raw C reference for ctrobj-bench: the same kernel work as the
 * library, with nothing else.  Built by the harness at run time:
 *
 *   cc -O2 -shared -fPIC -o /tmp/ctrobj-bench-PID/libref.so create_fork.c enter.c
 *
 * and called in-process through dlopen, so that the reference forks from
 * the same (Swift) address space as the library does and the fork cost is
 * the same for both.  Every function returns 0 or -errno.
 */
#ifndef CTROBJ_BENCH_REF_H
#define CTROBJ_BENCH_REF_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define REF_CGROUP2_MAGIC 0x63677270
#define REF_MAX_HIER 8
#define REF_ID_BASE 900000000u /* host ids of the reference's user ns (65536 of them) */

/* Hierarchies (cgroup mount points) and the parent directory below each,
 * shared by both reference programs. */
struct ref_cgroups {
	int n;
	int v2;                       /* index of the cgroup2 hierarchy or -1 */
	char dir[REF_MAX_HIER][512];  /* <mount>/<parent>/<name> */
};

int ref_setup(const char *const *mounts, int n, const char *parent);
void ref_teardown(void);

/* create + fork_into_container(/bin/true) + wait + close */
int ref_create_fork(unsigned long long nsflags, const char *path, long seq);

/* a running init to enter; then setns(pidfd) + fork + exec + wait */
int ref_enter_start(unsigned long long nsflags);
int ref_enter_once(const char *path);
int ref_enter_init_pid(void);
void ref_enter_stop(void);

/* shared helpers (create_fork.c) */
int ref_cgroups_make(struct ref_cgroups *c, const char *name);
void ref_cgroups_remove(const struct ref_cgroups *c);
int ref_cgroups_open(const struct ref_cgroups *c, int *v2dir, int *procs);
int ref_write_maps(pid_t pid);
int ref_pwrite_zero(const int *fds, int n);
/* clone3 with CLONE_PIDFD (into *pidfd) and, when v2dir >= 0,
 * CLONE_INTO_CGROUP of that cgroup2 directory; like fork() otherwise. */
pid_t ref_clone3(unsigned long long flags, int v2dir, int *pidfd);
int ref_become_root(void);

#endif
