/* A hostname set inside a CONTAINER_NEW_UTS_NS container is not seen outside. */
#include "conformance.h"
#include <sys/utsname.h>
#include <container.h>

int main(void)
{
	char name[32], host_before[256], host_after[256];
	int fd, status = 0;
	pid_t pid;

	conf_init("uts_hostname");
	conf_require_root();

	CHECK(gethostname(host_before, sizeof(host_before)) == 0,
	      "gethostname: %s", strerror(errno));
	conf_name(name, sizeof(name), "uts");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_UTS_NS);

	pid = fork_into_container(fd);
	if (pid == 0) {
		struct utsname u;

		conf_child_init();
		if (sethostname(name, strlen(name)) < 0)
			_exit(10);
		if (uname(&u) < 0 || strcmp(u.nodename, name) != 0)
			_exit(11);
		_exit(0);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not exit");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 10),
	      "sethostname inside the container failed");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 11),
	      "uname inside did not show the new hostname");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "init %s",
	      conf_status_str(status));

	CHECK(gethostname(host_after, sizeof(host_after)) == 0,
	      "gethostname: %s", strerror(errno));
	CHECK(strcmp(host_after, name) != 0, "host's hostname became \"%s\"",
	      host_after);
	CHECK(strcmp(host_after, host_before) == 0,
	      "host's hostname changed from \"%s\" to \"%s\"", host_before,
	      host_after);
	close(fd);
	conf_pass();
}
