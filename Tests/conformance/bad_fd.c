/* Calls that take a container fd fail with EBADF on anything else. */
#include "conformance.h"
#include <sys/socket.h>
#include <container.h>

int main(void)
{
	int devnull;
	int pipefd[2];

	conf_init("bad_fd");
	conf_require_root();

	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(devnull >= 0, "open /dev/null: %s", strerror(errno));
	CHECK(pipe2(pipefd, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));

	errno = 0;
	if (fork_into_container(-1) < 0 && (errno == EHOSTDOWN || errno == ENOSYS))
		conf_skip("fork_into_container: %s", strerror(errno));

	EXPECT_ERRNO(fork_into_container(-1), EBADF);
	EXPECT_ERRNO(fork_into_container(devnull), EBADF);
	EXPECT_ERRNO(fork_into_container(pipefd[0]), EBADF);
	EXPECT_ERRNO(container_socket(-1, AF_UNIX, SOCK_STREAM, 0), EBADF);
	EXPECT_ERRNO(container_socket(devnull, AF_UNIX, SOCK_STREAM, 0), EBADF);

	close(pipefd[0]);
	close(pipefd[1]);
	close(devnull);
	conf_pass();
}
