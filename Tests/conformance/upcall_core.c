/*
 * A crash inside a container reaches the core_pattern pipe helper with the
 * container named: as the %C argument and as CONTAINER_NAME/CONTAINER_ID in
 * the helper's environment.
 *
 * This program is its own helper:
 *   upcall_core --helper <log> core <%C>   (stdin: the core; drained)
 * appends "core arg=<%C> name=<CONTAINER_NAME> id=<CONTAINER_ID>" to <log>.
 *
 * Kernel: the test sets core_pattern itself and restores it.  Emulation
 * (CONFORMANCE_UPCALLS=1): the broker owns core_pattern; the harness must
 * route this container's core to "<this program> --helper $CONFORMANCE_UPCALL_LOG
 * core <name>" with the same environment.
 */
#include "conformance.h"
#include <sys/resource.h>
#include <container.h>

static char saved_pattern[512];
static int pattern_changed;

static int helper(int argc, char **argv)
{
	const char *name = getenv("CONTAINER_NAME");
	const char *id = getenv("CONTAINER_ID");
	char line[256], sink[4096];
	int fd;

	while (read(STDIN_FILENO, sink, sizeof(sink)) > 0)
		;
	if (argc < 4)
		return 2;
	snprintf(line, sizeof(line), "%s arg=%s name=%s id=%s\n", argv[3],
		 argc > 4 ? argv[4] : "", name ? name : "", id ? id : "");
	fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return 3;
	if (write(fd, line, strlen(line)) < 0)
		return 4;
	close(fd);
	return 0;
}

static void restore_pattern(void)
{
	if (pattern_changed)
		conf_write_file("/proc/sys/kernel/core_pattern", saved_pattern);
}

int main(int argc, char **argv)
{
	char name[32], exe[256], log[128], pattern[512], buf[1024], want[64];
	int fd, status = 0;
	long deadline;
	pid_t pid;

	if (argc >= 2 && strcmp(argv[1], "--helper") == 0)
		return helper(argc, argv);

	conf_init("upcall_core");
	conf_require_upcalls();
	conf_require_root();

	conf_name(name, sizeof(name), "core");
	if (conf_impl_is("kernel")) {
		snprintf(log, sizeof(log), "/tmp/conformance-core-%d.log",
			 (int)getpid());
		conf_self_exe(exe, sizeof(exe));
		if (conf_read_file("/proc/sys/kernel/core_pattern", saved_pattern,
				   sizeof(saved_pattern)) < 0)
			conf_skip("no /proc/sys/kernel/core_pattern");
		snprintf(pattern, sizeof(pattern), "|%s --helper %s core %%C",
			 exe, log);
		CHECK(strlen(pattern) < 128, "core_pattern too long: %s", pattern);
		atexit(restore_pattern);
		pattern_changed = 1;
		CHECK(conf_write_file("/proc/sys/kernel/core_pattern", pattern) == 0,
		      "set core_pattern: %s", strerror(errno));
	} else {
		const char *l = getenv("CONFORMANCE_UPCALL_LOG");

		if (!l)
			conf_skip("emulation: set CONFORMANCE_UPCALL_LOG");
		snprintf(log, sizeof(log), "%s", l);
	}
	unlink(log);

	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_UTS_NS);
	pid = fork_into_container(fd);
	if (pid == 0) {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

		conf_child_init();
		close(fd);
		setrlimit(RLIMIT_CORE, &rl);
		*(volatile int *)0 = 1; /* SIGSEGV: dumps core */
		_exit(10);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not die");
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
	      "init %s, expected SIGSEGV", conf_status_str(status));

	snprintf(want, sizeof(want), "name=%s ", name);
	deadline = conf_now_ms() + 5000;
	while (conf_read_file(log, buf, sizeof(buf)) < 0 || !strstr(buf, want)) {
		CHECK(conf_now_ms() < deadline,
		      "no core upcall naming \"%s\" within 5 s (log: %s)", name,
		      conf_read_file(log, buf, sizeof(buf)) == 0 ? buf : "none");
		conf_sleep_ms(20);
	}
	buf[strcspn(buf, "\n")] = '\0';
	if (conf_impl_is("kernel")) {
		snprintf(want, sizeof(want), "arg=%s ", name);
		CHECK(strstr(buf, want), "%%C did not expand to the name: %s", buf);
		CHECK(!strstr(buf, "id= ") && buf[strlen(buf) - 1] != '=',
		      "no CONTAINER_ID: %s", buf);
	}
	unlink(log);
	close(fd);
	conf_pass();
}
