/*
 * Without a pid namespace of its own, too: when a container's init exits,
 * the other processes of the container die (the kernel or the daemon kills
 * them; no pid namespace does it), and poll() on the container fd reports
 * POLLHUP.
 */
#include "init_exit_common.h"

int main(void)
{
	return init_exit_test("init_exit_nopidns", "initexit2", CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_UTS_NS);
}
