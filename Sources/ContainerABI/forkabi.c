/* fork_into_container(): the one call of the C ABI written in C, because it
 * returns twice and the child must not run Swift (or anything that is not
 * async-signal-safe) on its way back to the caller. */
#include "container.h"
#include "container_abi_internal.h"

#include <errno.h>
#include <unistd.h>

pid_t fork_into_container(int container_fd)
{
	struct ctrobj_abi_fork f;
	if (ctrobj_abi_fork_prepare(container_fd, &f) < 0)
		return -1;
	int stage = 0;
	pid_t pid = ccs_join_fork(&f.plan, &stage);
	if (pid == 0) {
		/* The child: drop what only the parent needs, return like fork(). */
		for (int i = 0; i < f.nfds; i++)
			close(f.fds[i]);
		if (f.conn >= 0)
			close(f.conn);
		return 0;
	}
	if (pid < 0) {
		int err = errno;
		ctrobj_abi_fork_abort(&f, err, stage);
		errno = err;
		return -1;
	}
	return ctrobj_abi_fork_commit(&f, pid);
}
