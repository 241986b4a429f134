/*
 * When a container's init exits, the other processes of the container die
 * too (its pid namespace goes), and poll() on the container fd reports POLLHUP.
 */
#include "init_exit_common.h"

int main(void)
{
	return init_exit_test("init_exit", "initexit", CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_PID_NS);
}
