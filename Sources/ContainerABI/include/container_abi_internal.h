/* Between the C half of libcontainerobject (fork_into_container, which must
 * return in the child without running any Swift) and its Swift half. */
#ifndef CONTAINER_ABI_INTERNAL_H
#define CONTAINER_ABI_INTERNAL_H
#include "cshim.h"

#define CTROBJ_ABI_MAX_FDS 32
struct ctrobj_abi_fork {
	struct ccs_join_plan plan;
	int conn;                         /* the process's shared connection to ctrobjd
	                                     (the child closes it; never the parent) */
	int container_fd;
	int fds[CTROBJ_ABI_MAX_FDS];      /* every fd the plan refers to */
	int nfds;
};

/* Swift: ask ctrobjd for the plan. 0, or -1 with errno. */
int ctrobj_abi_fork_prepare(int container_fd, struct ctrobj_abi_fork *f);
/* Swift: report the new init; closes everything in f. Returns pid or -1. */
pid_t ctrobj_abi_fork_commit(struct ctrobj_abi_fork *f, pid_t pid);
/* Swift: the fork failed at stage with err; closes everything in f. */
void ctrobj_abi_fork_abort(struct ctrobj_abi_fork *f, int err, int stage);
#endif
