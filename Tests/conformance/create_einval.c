/* container_create() rejects bad flags and bad names with EINVAL. */
#include "conformance.h"
#include <container.h>

int main(void)
{
	char name[64];
	char long_name[CONTAINER_NAME_MAX + 1];
	unsigned int kill = CONTAINER_KILL_ON_CLOSE;

	conf_init("create_einval");
	conf_require_root();
	conf_name(name, sizeof(name), "einval");

	/* A probe that must succeed, so ENOSYS/EHOSTDOWN become a skip. */
	close(conf_create(name, kill));

	EXPECT_ERRNO(container_create(name, kill | 0x800u), EINVAL);
	EXPECT_ERRNO(container_create(name, kill | 0x80000000u), EINVAL);
	EXPECT_ERRNO(container_create(name, kill | CONTAINER_NEW_FS_NS |
				      CONTAINER_NEW_EMPTY_FS_NS), EINVAL);
	EXPECT_ERRNO(container_create("", kill), EINVAL);

	/* CONTAINER_NAME_MAX bytes (24) is one too many. */
	memset(long_name, 'n', CONTAINER_NAME_MAX);
	long_name[CONTAINER_NAME_MAX] = '\0';
	EXPECT_ERRNO(container_create(long_name, kill), EINVAL);

	EXPECT_ERRNO(container_create("a/b", kill), EINVAL);
	EXPECT_ERRNO(container_create("/", kill), EINVAL);
	conf_pass();
}
