/* With CONTAINER_NEW_USER_NS the container's init is root (uid and gid 0)
 * of the container's user namespace. */
#include "conformance.h"
#include <container.h>

int main(void)
{
	char name[32];
	int fd, status = 0;
	pid_t pid;
	uid_t uid_before = getuid();

	conf_init("userns_root");
	conf_require_root();

	conf_name(name, sizeof(name), "userns");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_USER_NS |
			 CONTAINER_NEW_UTS_NS);

	pid = fork_into_container(fd);
	if (pid == 0) {
		conf_child_init();
		if (getuid() != 0 || geteuid() != 0)
			_exit(10);
		if (getgid() != 0 || getegid() != 0)
			_exit(11);
		/* Root of the container's user ns owns its uts ns. */
		if (sethostname("userns", 6) < 0)
			_exit(12);
		_exit(0);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not exit");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 10),
	      "uid inside is not 0");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 11),
	      "gid inside is not 0");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 12),
	      "root inside may not sethostname in the container's uts ns");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "init %s",
	      conf_status_str(status));
	CHECK(getuid() == uid_before, "the caller's uid changed");
	close(fd);
	conf_pass();
}
