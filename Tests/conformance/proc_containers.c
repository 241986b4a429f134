/*
 * Kernel only: /proc/containers lists a container while it exists and
 * forgets it when a KILL_ON_CLOSE container's last fd is closed.
 * The emulation has no /proc file (its listing is `ctrobj list`).
 */
#include "conformance.h"
#include <container.h>

static int listed(const char *name)
{
	static char buf[65536];
	char *line;

	if (conf_read_file("/proc/containers", buf, sizeof(buf)) < 0)
		conf_fail("read /proc/containers: %s", strerror(errno));
	for (line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char *p = line;
		size_t n = strlen(name);

		/* name is a whitespace-separated field */
		while ((p = strstr(p, name))) {
			if ((p == line || p[-1] == ' ' || p[-1] == '\t') &&
			    (p[n] == '\0' || p[n] == ' ' || p[n] == '\t'))
				return 1;
			p += n;
		}
	}
	return 0;
}

int main(void)
{
	char name[32];
	struct stat st;
	int fd;

	conf_init("proc_containers");
	if (!conf_impl_is("kernel"))
		conf_skip("/proc/containers is kernel-only");
	conf_require_root();
	if (stat("/proc/containers", &st) < 0)
		conf_fail("/proc/containers: %s", strerror(errno));

	conf_name(name, sizeof(name), "procctr");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE);
	CHECK(listed(name), "\"%s\" is not in /proc/containers", name);
	close(fd);
	CHECK(!listed(name), "\"%s\" still in /proc/containers after close", name);
	conf_pass();
}
