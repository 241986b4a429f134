/* A container has one init: a second fork_into_container() fails with EBUSY. */
#include "conformance.h"
#include <container.h>

int main(void)
{
	char name[32];
	int fd, status = 0, hold[2];
	pid_t pid, again;
	char c;

	conf_init("fork_ebusy");
	conf_require_root();
	CHECK(pipe2(hold, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));

	conf_name(name, sizeof(name), "ebusy");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_PID_NS);

	pid = fork_into_container(fd);
	if (pid == 0) {
		conf_child_init();
		close(fd);
		close(hold[1]);
		/* Live until the parent closes its end. */
		while (read(hold[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	close(hold[0]);

	errno = 0;
	again = fork_into_container(fd);
	if (again == 0)
		_exit(0); /* a second init must not exist: just leave */
	if (again > 0) {
		conf_wait(again, &status, 5000);
		conf_fail("second fork_into_container succeeded (pid %d)",
			  (int)again);
	}
	CHECK(errno == EBUSY, "second fork_into_container: %s, expected EBUSY",
	      strerror(errno));

	close(hold[1]);
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not exit");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "init %s",
	      conf_status_str(status));
	close(fd);
	conf_pass();
}
