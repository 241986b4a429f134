/*
 * Names: 23 bytes is the longest accepted, a taken name fails with EEXIST,
 * and a CONTAINER_KILL_ON_CLOSE container gives its name back on close.
 */
#include "conformance.h"
#include <container.h>

int main(void)
{
	char name[CONTAINER_NAME_MAX];
	unsigned int kill = CONTAINER_KILL_ON_CLOSE;
	long deadline;
	int fd, fd2;

	conf_init("create_names");
	conf_require_root();

	/* "names-<pid>" padded with 'x' to exactly 23 bytes. */
	conf_name(name, sizeof(name), "names");
	while (strlen(name) < CONTAINER_NAME_MAX - 1)
		strcat(name, "x");
	CHECK(strlen(name) == 23, "name length %zu", strlen(name));

	fd = conf_create(name, kill);
	CHECK(fd >= 0, "unreachable");

	EXPECT_ERRNO(container_create(name, kill), EEXIST);
	/* Flags do not matter for the name check. */
	EXPECT_ERRNO(container_create(name, kill | CONTAINER_NEW_UTS_NS), EEXIST);

	/* Closing the only fd of a KILL_ON_CLOSE container frees the name.
	 * The emulation learns of the close asynchronously: allow 2 s. */
	close(fd);
	deadline = conf_now_ms() + 2000;
	for (;;) {
		fd2 = container_create(name, kill);
		if (fd2 >= 0)
			break;
		CHECK(errno == EEXIST, "re-create after close: %s", strerror(errno));
		CHECK(conf_now_ms() < deadline,
		      "name still taken 2 s after the last fd was closed");
		conf_sleep_ms(20);
	}
	close(fd2);
	conf_pass();
}
