/*
 * Paths through a container fd cannot leave the container's root: neither
 * ".." nor an absolute symlink planted inside by the container's init
 * (/esc -> /../../../../tmp) leads to the host.
 */
#include "conformance.h"
#include <container.h>

int main(void)
{
	char name[32], leaf[64], inside[96], via_link[96], host[96], dotdot[128];
	struct stat st;
	int fd, f, status = 0, ready[2], done[2];
	pid_t pid;
	char c;

	conf_init("path_escape");
	conf_require_root();
	CHECK(stat("/tmp", &st) == 0, "the host has no /tmp to escape to");
	CHECK(pipe2(ready, O_CLOEXEC) == 0 && pipe2(done, O_CLOEXEC) == 0,
	      "pipe2: %s", strerror(errno));

	conf_name(name, sizeof(name), "escape");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE |
			 CONTAINER_NEW_EMPTY_FS_NS);

	pid = fork_into_container(fd);
	if (pid == 0) {
		conf_child_init();
		close(fd);
		close(ready[0]);
		close(done[1]);
		if (mkdir("/tmp", 01777) < 0 && errno != EEXIST)
			_exit(10);
		if (symlink("/../../../../tmp", "/esc") < 0)
			_exit(11);
		if (write(ready[1], "r", 1) != 1)
			_exit(12);
		while (read(done[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	close(ready[1]);
	close(done[0]);
	if (conf_read_timeout(ready[0], &c, 1, 10000) != 1) {
		conf_wait(pid, &status, 5000);
		conf_fail("init did not plant the symlink (%s)",
			  conf_status_str(status));
	}

	snprintf(leaf, sizeof(leaf), "conformance-escape-%d", (int)getpid());
	snprintf(via_link, sizeof(via_link), "esc/%s", leaf);
	snprintf(inside, sizeof(inside), "tmp/%s", leaf);
	snprintf(host, sizeof(host), "/tmp/%s", leaf);
	unlink(host);

	/* Through the symlink: lands in the container's /tmp, or fails. */
	f = container_openat(fd, via_link, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (f >= 0) {
		close(f);
		f = container_openat(fd, inside, O_RDONLY | O_CLOEXEC, 0);
		CHECK(f >= 0, "created %s, but not at the container's /%s",
		      via_link, inside);
		close(f);
	}
	CHECK(stat(host, &st) < 0, "container_openat(\"%s\") created %s on the host",
	      via_link, host);

	/* Through "..": stays at the container's root. */
	snprintf(dotdot, sizeof(dotdot), "../../../../../tmp/%s.dd", leaf);
	f = container_openat(fd, dotdot, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (f >= 0)
		close(f);
	snprintf(host, sizeof(host), "/tmp/%s.dd", leaf);
	CHECK(stat(host, &st) < 0, "container_openat(\"%s\") created %s on the host",
	      dotdot, host);
	f = container_openat(fd, "../../../../../etc/passwd", O_RDONLY | O_CLOEXEC, 0);
	if (f >= 0 && stat("/etc/passwd", &st) == 0) {
		struct stat got;

		CHECK(fstat(f, &got) == 0 && !(got.st_dev == st.st_dev &&
					       got.st_ino == st.st_ino),
		      "\"../../../../../etc/passwd\" opened the host's /etc/passwd");
	}
	if (f >= 0)
		close(f);

	close(done[1]);
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not exit");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "init %s",
	      conf_status_str(status));
	close(ready[0]);
	close(fd);
	conf_pass();
}
