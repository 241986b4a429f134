/*
 * A container fd is a dirfd that resolves against the container's root:
 * container_mkdirat() and container_openat(O_CREAT) make a file that the
 * container's init finds at that path, and the host does not.
 */
#include "conformance.h"
#include <container.h>

static const char payload[] = "written from outside";

int main(void)
{
	char name[32], hostpath[64];
	struct stat st;
	int fd, f, status = 0;
	pid_t pid;

	conf_init("path_create");
	conf_require_root();

	conf_name(name, sizeof(name), "pathc");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE |
			 CONTAINER_NEW_EMPTY_FS_NS);

	CHECK(container_mkdirat(fd, "d", 0755) == 0, "container_mkdirat(d): %s",
	      strerror(errno));
	/* An absolute path is relative to the container's root too. */
	f = container_openat(fd, "/d/f", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC,
			     0644);
	CHECK(f >= 0, "container_openat(/d/f, O_CREAT): %s", strerror(errno));
	CHECK(write(f, payload, sizeof(payload)) == (ssize_t)sizeof(payload),
	      "write: %s", strerror(errno));
	close(f);

	/* The file is found again through the container fd... */
	f = container_openat(fd, "d/f", O_RDONLY | O_CLOEXEC, 0);
	CHECK(f >= 0, "container_openat(d/f): %s", strerror(errno));
	CHECK(fstat(f, &st) == 0 && st.st_size == (off_t)sizeof(payload),
	      "d/f has the wrong size");
	close(f);

	/* ...and not at the host's root (unless the host had one already). */
	snprintf(hostpath, sizeof(hostpath), "/d/f");
	if (stat("/d", &st) < 0)
		CHECK(stat(hostpath, &st) < 0, "/d/f appeared on the host");

	pid = fork_into_container(fd);
	if (pid == 0) {
		char buf[sizeof(payload)];
		int in;

		conf_child_init();
		in = open("/d/f", O_RDONLY | O_CLOEXEC);
		if (in < 0)
			_exit(10);
		if (read(in, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			_exit(11);
		if (memcmp(buf, payload, sizeof(buf)) != 0)
			_exit(12);
		_exit(0);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not exit");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 10),
	      "init cannot open /d/f");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 11),
	      "init read a short /d/f");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 12),
	      "init read other bytes from /d/f");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "init %s",
	      conf_status_str(status));
	close(fd);
	conf_pass();
}
