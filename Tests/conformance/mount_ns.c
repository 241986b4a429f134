/*
 * CONTAINER_NEW_FS_NS: the init sees the creator's mounts, and a mount it
 * makes stays inside the container even where the host's mounts are shared.
 */
#include "conformance.h"
#include <sys/mount.h>
#include <container.h>

int main(void)
{
	char name[32], dir[96], marker[128];
	struct stat st;
	int fd, status = 0;
	pid_t pid;

	conf_init("mount_ns");
	conf_require_root();

	snprintf(dir, sizeof(dir), "/tmp/conformance-mnt-%d", (int)getpid());
	snprintf(marker, sizeof(marker), "%s/made-inside", dir);
	CHECK(mkdir(dir, 0700) == 0, "mkdir %s: %s", dir, strerror(errno));

	conf_name(name, sizeof(name), "mountns");
	fd = container_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_FS_NS);
	if (fd < 0) {
		rmdir(dir);
		fd = conf_create(name, CONTAINER_KILL_ON_CLOSE |
				 CONTAINER_NEW_FS_NS);
	}

	pid = fork_into_container(fd);
	if (pid == 0) {
		int f;

		conf_child_init();
		/* The copy has the host's tree: dir is there. */
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			_exit(10);
		if (mount("conformance", dir, "tmpfs", 0, "size=64k") < 0)
			_exit(11);
		f = open(marker, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		if (f < 0)
			_exit(12);
		close(f);
		_exit(0);
	}
	if (pid < 0)
		rmdir(dir);
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	if (conf_wait(pid, &status, 10000) < 0) {
		rmdir(dir);
		conf_fail("init did not exit");
	}
	if (stat(marker, &st) == 0) {
		umount2(dir, MNT_DETACH);
		unlink(marker);
		rmdir(dir);
		conf_fail("the init's mount on %s appeared on the host", dir);
	}
	rmdir(dir);
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 10),
	      "the init does not see the host's %s", dir);
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 11),
	      "mount inside the container failed");
	CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 12),
	      "cannot create a file on the new mount");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "init %s",
	      conf_status_str(status));
	close(fd);
	conf_pass();
}
