/*
 * CONTAINER_KILL_ON_CLOSE: closing one of two fds (dup) keeps init alive;
 * closing the last one kills it with SIGKILL.
 */
#include "conformance.h"
#include <container.h>

int main(void)
{
	char name[32];
	int fd, fd2, status = 0;
	pid_t pid;

	conf_init("kill_on_close");
	conf_require_root();

	conf_name(name, sizeof(name), "killclose");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_PID_NS);
	fd2 = dup(fd);
	CHECK(fd2 >= 0, "dup: %s", strerror(errno));

	pid = fork_into_container(fd);
	if (pid == 0) {
		conf_child_init();
		/* The parent must hold the last references. */
		close(fd);
		close(fd2);
		for (;;)
			pause();
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));

	close(fd);
	conf_sleep_ms(300);
	CHECK(waitpid(pid, &status, WNOHANG) == 0,
	      "init died when one of two fds was closed (%s)",
	      conf_status_str(status));

	close(fd2);
	CHECK(conf_wait(pid, &status, 5000) == 0,
	      "init still alive 5 s after the last fd was closed");
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	      "init %s, expected SIGKILL", conf_status_str(status));
	conf_pass();
}
