/* CONTAINER_FD_CLOEXEC sets FD_CLOEXEC on the container fd; without it the
 * fd survives execve(). */
#include "conformance.h"
#include <container.h>

int main(void)
{
	char name[32];
	int fd, fdflags;

	conf_init("fd_cloexec");
	conf_require_root();

	conf_name(name, sizeof(name), "cloexec");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_FD_CLOEXEC);
	fdflags = fcntl(fd, F_GETFD);
	CHECK(fdflags >= 0, "fcntl(F_GETFD): %s", strerror(errno));
	CHECK(fdflags & FD_CLOEXEC, "CONTAINER_FD_CLOEXEC: FD_CLOEXEC not set");
	close(fd);

	conf_name(name, sizeof(name), "inherit");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE);
	fdflags = fcntl(fd, F_GETFD);
	CHECK(fdflags >= 0, "fcntl(F_GETFD): %s", strerror(errno));
	CHECK(!(fdflags & FD_CLOEXEC), "FD_CLOEXEC set without CONTAINER_FD_CLOEXEC");
	close(fd);
	conf_pass();
}
