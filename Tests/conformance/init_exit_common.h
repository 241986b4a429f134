/*
 * init_exit_common.h - the init-exit case, shared by init_exit.c (with a pid
 * namespace) and init_exit_nopidns.c (without one): when a container's init
 * exits, the other processes of the container die too, and poll() on the
 * container fd reports POLLHUP.
 */
#ifndef INIT_EXIT_COMMON_H
#define INIT_EXIT_COMMON_H
#include "conformance.h"
#include <container.h>

static int init_exit_test(const char *test, const char *tag, unsigned int flags)
{
	char name[32];
	int fd, status = 0, hold[2], ready[2], go[2];
	struct pollfd pfd;
	pid_t pid;
	char c;

	conf_init(test);
	conf_require_root();
	CHECK(pipe2(hold, O_CLOEXEC) == 0 && pipe2(ready, O_CLOEXEC) == 0 &&
	      pipe2(go, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));

	conf_name(name, sizeof(name), tag);
	fd = conf_create(name, flags);

	pid = fork_into_container(fd);
	if (pid == 0) {
		pid_t other;

		conf_child_init();
		close(fd);
		close(hold[0]);
		close(ready[0]);
		close(go[1]);
		other = fork();
		if (other < 0)
			_exit(10);
		if (other == 0) {
			/* Holds hold[1] open for as long as it lives. */
			conf_child_init();
			close(go[0]);
			if (write(ready[1], "r", 1) != 1)
				_exit(1);
			close(ready[1]);
			for (;;)
				pause();
		}
		close(hold[1]);
		close(ready[1]);
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(7);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	close(hold[1]);
	close(ready[1]);
	close(go[0]);

	CHECK(conf_read_timeout(ready[0], &c, 1, 10000) == 1,
	      "the second process in the container did not start");

	pfd.fd = fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	CHECK(poll(&pfd, 1, 0) >= 0, "poll: %s", strerror(errno));
	CHECK(!(pfd.revents & POLLHUP), "POLLHUP while init is alive");

	close(go[1]); /* init exits 7 */
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not exit");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7, "init %s, expected exit 7",
	      conf_status_str(status));

	/* EOF on hold[0]: the other process is gone. */
	CHECK(conf_read_timeout(hold[0], &c, 1, 5000) == 0,
	      "the other process in the container outlived init");

	pfd.revents = 0;
	CHECK(poll(&pfd, 1, 5000) == 1, "poll on the container fd: %s",
	      errno ? strerror(errno) : "no event in 5 s");
	CHECK(pfd.revents & POLLHUP, "revents 0x%x without POLLHUP",
	      (unsigned int)pfd.revents);

	close(hold[0]);
	close(ready[0]);
	close(fd);
	conf_pass();
}

#endif
