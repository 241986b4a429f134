/* With CONTAINER_NEW_PID_NS the child of fork_into_container() is PID 1 of
 * its namespace, and the caller can waitpid() it and see its exit status. */
#include "conformance.h"
#include <container.h>

int main(void)
{
	char name[32];
	int fd, status = 0;
	pid_t pid;

	conf_init("fork_pid1");
	conf_require_root();

	conf_name(name, sizeof(name), "pid1");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_PID_NS);

	pid = fork_into_container(fd);
	if (pid == 0) {
		conf_child_init();
		if (getpid() != 1)
			_exit(3);
		if (getppid() != 0)
			_exit(4);
		_exit(42);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	CHECK(pid != getpid() && pid != 1, "parent got pid %d", (int)pid);

	CHECK(conf_wait(pid, &status, 10000) == 0, "waitpid(%d): %s", (int)pid,
	      strerror(errno));
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 3),
	      "child's getpid() was not 1");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 4),
	      "child's getppid() was not 0");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42,
	      "child %s, expected exit 42", conf_status_str(status));
	close(fd);
	conf_pass();
}
