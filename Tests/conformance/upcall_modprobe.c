/*
 * A module request made from inside a container reaches the modprobe
 * helper with the container named (CONTAINER_NAME/CONTAINER_ID in its
 * environment).  socket(AF_PACKET) asks for "net-pf-17" when af_packet is
 * a module that is not loaded yet (as in kernel-patch's config).
 *
 * This program is its own helper: invoked as "<self> -q -- <module>" (how the
 * kernel runs /proc/sys/kernel/modprobe) it appends
 * "modprobe <module> name=<CONTAINER_NAME> id=<CONTAINER_ID>" to
 * /tmp/conformance-modprobe.log, then runs /sbin/modprobe if there is one so
 * the module really loads.
 *
 * Only a kernel with CONFIG_MODULES can run this: elsewhere it skips, and
 * so it does when af_packet is loaded already.  It unloads af_packet again
 * afterwards.
 */
#include "conformance.h"
#include <sys/socket.h>
#include <sys/syscall.h>
#include <container.h>

#define MODPROBE_SYSCTL "/proc/sys/kernel/modprobe"
#define MODPROBE_LOG "/tmp/conformance-modprobe.log"
#define REAL_MODPROBE "/sbin/modprobe"

static char saved_modprobe[256];
static int modprobe_changed;

/* Is af_packet a loaded module?  Built in, it is not listed. */
static int af_packet_loaded(void)
{
	static char buf[65536];

	if (conf_read_file("/proc/modules", buf, sizeof(buf)) < 0)
		return 0;
	return strncmp(buf, "af_packet ", 10) == 0 || strstr(buf, "\naf_packet ");
}

static int helper(int argc, char **argv)
{
	const char *name = getenv("CONTAINER_NAME");
	const char *id = getenv("CONTAINER_ID");
	char line[256], self[256], real[256];
	ssize_t n;
	int fd;

	snprintf(line, sizeof(line), "modprobe %s name=%s id=%s\n", argv[3],
		 name ? name : "", id ? id : "");
	fd = open(MODPROBE_LOG, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, line, strlen(line)) < 0)
			return 3;
		close(fd);
	}
	/* Hand over to the real modprobe, unless that would be ourselves. */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0 && realpath(REAL_MODPROBE, real)) {
		self[n] = '\0';
		if (strcmp(self, real) != 0) {
			argv[0] = (char *)REAL_MODPROBE;
			(void)argc;
			execv(REAL_MODPROBE, argv);
		}
	}
	return 0;
}

static void restore_modprobe(void)
{
	if (modprobe_changed)
		conf_write_file(MODPROBE_SYSCTL, saved_modprobe);
}

int main(int argc, char **argv)
{
	char name[32], exe[256], buf[4096], want[64];
	int fd, status = 0;
	long deadline;
	pid_t pid;

	if (argc >= 4 && strcmp(argv[1], "-q") == 0 && strcmp(argv[2], "--") == 0)
		return helper(argc, argv);

	conf_init("upcall_modprobe");
	conf_require_upcalls();
	conf_require_root();
	if (access(MODPROBE_SYSCTL, F_OK) < 0)
		conf_skip("kernel without module support (no %s)", MODPROBE_SYSCTL);

	if (af_packet_loaded())
		conf_skip("af_packet is loaded already: no module request to see");

	conf_self_exe(exe, sizeof(exe));
	CHECK(conf_read_file(MODPROBE_SYSCTL, saved_modprobe,
			     sizeof(saved_modprobe)) == 0,
	      "read %s: %s", MODPROBE_SYSCTL, strerror(errno));
	saved_modprobe[strcspn(saved_modprobe, "\n")] = '\0';
	atexit(restore_modprobe);
	modprobe_changed = 1;
	CHECK(conf_write_file(MODPROBE_SYSCTL, exe) == 0, "set %s: %s",
	      MODPROBE_SYSCTL, strerror(errno));
	unlink(MODPROBE_LOG);

	conf_name(name, sizeof(name), "modprobe");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_UTS_NS);
	pid = fork_into_container(fd);
	if (pid == 0) {
		int s;

		conf_child_init();
		close(fd);
		s = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s >= 0)
			close(s);
		_exit(0);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	CHECK(conf_wait(pid, &status, 15000) == 0, "init did not exit");

	snprintf(want, sizeof(want), "name=%s ", name);
	deadline = conf_now_ms() + 3000;
	while (conf_read_file(MODPROBE_LOG, buf, sizeof(buf)) < 0 ||
	       !strstr(buf, want)) {
		CHECK(conf_now_ms() < deadline,
		      "no module request naming \"%s\" (log: %s)", name,
		      conf_read_file(MODPROBE_LOG, buf, sizeof(buf)) == 0 ?
		      buf : "none; af_packet already loaded or built in?");
		conf_sleep_ms(20);
	}
	CHECK(strstr(buf, "net-pf-17"), "unexpected module request: %s", buf);
	unlink(MODPROBE_LOG);
	/* Leave the module state as we found it, so the test can run again. */
	if (af_packet_loaded())
		syscall(SYS_delete_module, "af_packet", O_NONBLOCK);
	close(fd);
	conf_pass();
}
