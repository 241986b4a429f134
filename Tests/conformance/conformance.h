/*
 * conformance.h - shared helpers for the container.h conformance programs.
 *
 * Every program in Tests/conformance is one standalone test that runs
 * unchanged against both implementations of <container.h>: the userspace
 * emulation (libcontainerobject, ctrobjd) and the kernel patch in
 * kernel-patch/ (booted under qemu by kernel-patch/test.sh).
 *
 * Contract of a program:
 *   - prints exactly one line on stdout:
 *       PASS <name>
 *       FAIL <name>: <reason>
 *       SKIP <name>: <reason>
 *   - exits 0 (pass), 1 (fail) or 77 (skip);
 *   - finishes in a few seconds: a watchdog (alarm) turns a hang into FAIL;
 *   - leaves nothing behind: every container is CONTAINER_KILL_ON_CLOSE and
 *     every fd is closed before the result is printed.
 *
 * Environment:
 *   CONFORMANCE_IMPL      "kernel" or "emulation" (only where a test must
 *                         differ; keep that rare)
 *   CONFORMANCE_UPCALLS   "1" runs the upcall tests under the emulation too
 *
 * Children (a container's init and its descendants) never print: they report
 * through their exit status or a pipe, so the one-line rule holds.
 */
#ifndef CONFORMANCE_H
#define CONFORMANCE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <container.h>

#define CONF_EXIT_PASS 0
#define CONF_EXIT_FAIL 1
#define CONF_EXIT_SKIP 77

/* Seconds before the watchdog fails the test, and before a child gives up. */
#define CONF_TIMEOUT 20
#define CONF_CHILD_TIMEOUT 30

/* Exit status of a child whose own watchdog fired. */
#define CONF_CHILD_TIMED_OUT 99

static const char *conf_test_name = "unnamed";

/* Print the one result line with a single write(2). reason may be NULL. */
static __attribute__((unused)) void conf_emit(const char *verdict, const char *reason)
{
	char buf[600];

	if (reason)
		snprintf(buf, sizeof(buf), "%s %s: %s\n", verdict,
			 conf_test_name, reason);
	else
		snprintf(buf, sizeof(buf), "%s %s\n", verdict, conf_test_name);
	if (write(STDOUT_FILENO, buf, strlen(buf)) < 0)
		_exit(CONF_EXIT_FAIL);
}

__attribute__((noreturn))
static __attribute__((unused)) void conf_pass(void)
{
	conf_emit("PASS", NULL);
	exit(CONF_EXIT_PASS);
}

__attribute__((format(printf, 1, 2), noreturn))
static __attribute__((unused)) void conf_fail(const char *fmt, ...)
{
	char reason[480];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	conf_emit("FAIL", reason);
	exit(CONF_EXIT_FAIL);
}

__attribute__((format(printf, 1, 2), noreturn))
static __attribute__((unused)) void conf_skip(const char *fmt, ...)
{
	char reason[480];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	conf_emit("SKIP", reason);
	exit(CONF_EXIT_SKIP);
}

/* CHECK(cond, "reason %d", x): fail the test with a reason unless cond. */
#define CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			conf_fail(__VA_ARGS__); \
	} while (0)

/* EXPECT_ERRNO(call, ERR): call must return -1 with errno == ERR. */
#define EXPECT_ERRNO(call, err) \
	do { \
		errno = 0; \
		long conf_rc_ = (long)(call); \
		int conf_e_ = errno; \
		if (conf_rc_ >= 0) \
			conf_fail("%s: succeeded (%ld), expected %s", \
				  #call, conf_rc_, #err); \
		if (conf_e_ != (err)) \
			conf_fail("%s: errno %d (%s), expected %s", \
				  #call, conf_e_, strerror(conf_e_), #err); \
	} while (0)

static __attribute__((unused)) void conf_on_alarm(int sig)
{
	static const char pre[] = "FAIL ";
	static const char post[] = ": timed out (watchdog)\n";

	(void)sig;
	if (write(STDOUT_FILENO, pre, sizeof(pre) - 1) < 0 ||
	    write(STDOUT_FILENO, conf_test_name, strlen(conf_test_name)) < 0 ||
	    write(STDOUT_FILENO, post, sizeof(post) - 1) < 0)
		_exit(CONF_EXIT_FAIL);
	/* Exiting closes every container fd: KILL_ON_CLOSE cleans up. */
	_exit(CONF_EXIT_FAIL);
}

/* Call first in main(). */
static __attribute__((unused)) void conf_init(const char *name)
{
	struct sigaction sa;

	conf_test_name = name;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = conf_on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	alarm(CONF_TIMEOUT);
}

static __attribute__((unused)) void conf_child_on_alarm(int sig)
{
	(void)sig;
	_exit(CONF_CHILD_TIMED_OUT);
}

/*
 * Call first in every child.  A pid namespace's init ignores signals it has
 * no handler for (SIGALRM included), so the child's watchdog is a handler.
 */
static __attribute__((unused)) void conf_child_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = conf_child_on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(CONF_CHILD_TIMEOUT);
}

/* "kernel", "emulation" or "" when unset. */
static __attribute__((unused)) const char *conf_impl(void)
{
	const char *impl = getenv("CONFORMANCE_IMPL");

	return impl ? impl : "";
}

static __attribute__((unused)) int conf_impl_is(const char *impl)
{
	return strcmp(conf_impl(), impl) == 0;
}

/* A container name unique to this run: "<tag>-<pid>", always < 24 bytes. */
static __attribute__((unused)) void conf_name(char *buf, size_t size, const char *tag)
{
	snprintf(buf, size, "%.10s-%d", tag, (int)getpid());
}

static __attribute__((unused)) long conf_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static __attribute__((unused)) void conf_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Wait for pid for at most timeout_ms.  Returns 0 and fills *status when it
 * was reaped, -1 on timeout or error (errno says which; ETIMEDOUT).
 */
static __attribute__((unused)) int conf_wait(pid_t pid, int *status, long timeout_ms)
{
	long deadline = conf_now_ms() + timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (conf_now_ms() >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		conf_sleep_ms(10);
	}
}

/* Describe a wait status for a FAIL reason. */
static __attribute__((unused)) const char *conf_status_str(int status)
{
	static char buf[64];

	if (WIFEXITED(status))
		snprintf(buf, sizeof(buf), "exited %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof(buf), "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, sizeof(buf), "status 0x%x", status);
	return buf;
}

/* Read exactly len bytes unless EOF or timeout; returns bytes read. */
static __attribute__((unused)) ssize_t conf_read_timeout(int fd, void *buf, size_t len, long timeout_ms)
{
	long deadline = conf_now_ms() + timeout_ms;
	size_t got = 0;

	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		long left = deadline - conf_now_ms();
		ssize_t n;

		if (left <= 0)
			break;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Skip unless running as root (most of the API needs it on a stock kernel). */
static __attribute__((unused)) void conf_require_root(void)
{
	if (geteuid() != 0)
		conf_skip("needs root");
}

/*
 * Create a container or fail the test, reporting EHOSTDOWN (emulation
 * daemon not running) as a skip so a missing daemon is not a conformance
 * failure.
 */
static __attribute__((unused)) int conf_create(const char *name, unsigned int flags)
{
	int fd = container_create(name, flags);

	if (fd < 0 && errno == EHOSTDOWN)
		conf_skip("ctrobjd is not running (EHOSTDOWN)");
	if (fd < 0 && errno == ENOSYS)
		conf_skip("container_create: ENOSYS (kernel without the patch)");
	if (fd < 0)
		conf_fail("container_create(\"%s\", 0x%x): %s", name, flags,
			  strerror(errno));
	return fd;
}

/* ---- upcall tests ------------------------------------------------------ */

/*
 * The upcall programs are their own helpers: the test points the kernel's
 * helper (core_pattern, /sbin/request-key, /proc/sys/kernel/modprobe) at its
 * own executable, and the helper records what it learnt about the container
 * (CONTAINER_NAME and CONTAINER_ID from its environment, the %C argument).
 * Under the emulation they run only with CONFORMANCE_UPCALLS=1, where the
 * broker is expected to run the same helper with the same environment.
 */
static __attribute__((unused)) void conf_require_upcalls(void)
{
	const char *u = getenv("CONFORMANCE_UPCALLS");

	if (!conf_impl_is("kernel") && !(u && strcmp(u, "1") == 0))
		conf_skip("upcall test: needs CONFORMANCE_IMPL=kernel or CONFORMANCE_UPCALLS=1");
}

/* Absolute path of this program, for the kernel's helper settings. */
static __attribute__((unused)) void conf_self_exe(char *buf, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);

	if (n <= 0)
		conf_fail("readlink(/proc/self/exe): %s", strerror(errno));
	buf[n] = '\0';
}

/* Read a small file into buf (NUL-terminated, trailing newline kept). */
static __attribute__((unused)) int conf_read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

static __attribute__((unused)) int conf_write_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, data, strlen(data));
	close(fd);
	return n == (ssize_t)strlen(data) ? 0 : -1;
}

#endif /* CONFORMANCE_H */
