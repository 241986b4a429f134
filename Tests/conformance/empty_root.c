/*
 * CONTAINER_NEW_EMPTY_FS_NS: the init's root is an empty, writable
 * directory; nothing of the host's tree is reachable from it.
 */
#include "conformance.h"
#include <dirent.h>
#include <container.h>

int main(void)
{
	char name[32];
	int fd, status = 0;
	pid_t pid;

	conf_init("empty_root");
	conf_require_root();

	conf_name(name, sizeof(name), "empty");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE |
			 CONTAINER_NEW_EMPTY_FS_NS);

	pid = fork_into_container(fd);
	if (pid == 0) {
		struct dirent *d;
		struct stat st;
		DIR *dir;

		conf_child_init();
		dir = opendir("/");
		if (!dir)
			_exit(10);
		while ((d = readdir(dir)))
			if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
				_exit(11);
		closedir(dir);
		if (stat("/..", &st) < 0 || stat("/", &st) < 0)
			_exit(12);
		if (stat("/../../proc", &st) == 0 || stat("/etc", &st) == 0)
			_exit(13);
		if (mkdir("/made-inside", 0700) < 0)
			_exit(14);
		_exit(0);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not exit");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 10),
	      "init cannot open its root");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 11),
	      "the root is not empty");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 13),
	      "host paths are reachable from the root");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 14),
	      "the root is not writable");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "init %s",
	      conf_status_str(status));
	close(fd);
	conf_pass();
}
