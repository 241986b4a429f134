/* Upcall benchmark: puts the global kernel state back when the harness is
 * interrupted or dies of a signal.
 *
 *   cc -O2 -shared -fPIC -o libguard.so guard.c      (dlopen'd by ctrobj-bench)
 *
 * guard_arm() takes the saved core_pattern and core_pipe_limit bytes (as
 * read before anything was changed) and installs the handler; guard_unlink()
 * and guard_rmdir() register files and directories the run may have made
 * (/etc/request-key.d/ctrobj.conf, ctrobj-bench.conf).  The handler does
 * only async-signal-safe work (open, write, close, unlink, rmdir), then:
 *   SIGINT, SIGTERM, SIGHUP   chains to the harness's handler (it sets a
 *                             flag, so the harness's own clean-up still runs);
 *   SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE (a Swift trap)
 *                             re-raises with the default action: the kernel
 *                             state is back, the private ctrobjd is orphaned.
 * SIGKILL cannot be caught: after one, run the harness again (it refuses to
 * start while ctrobj.conf exists) or `ctrobj uninstall --state-dir DIR`.
 * guard_restore() does the same restoring from normal code.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define GUARD_MAX 8
#define GUARD_LEN 512

static char pattern[GUARD_LEN], limit[64];
static size_t pattern_len, limit_len;
static char unlinks[GUARD_MAX][GUARD_LEN], rmdirs[GUARD_MAX][GUARD_LEN];
static volatile int n_unlinks, n_rmdirs, armed;
static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE };
#define NSIGS (int)(sizeof(sigs) / sizeof(sigs[0]))
static struct sigaction old[NSIGS];

static void put(const char *path, const char *s, size_t n)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	(void)!write(fd, s, n);
	close(fd);
}

void guard_restore(void)
{
	if (!armed)
		return;
	for (int i = 0; i < n_unlinks; i++)
		unlink(unlinks[i]);
	for (int i = 0; i < n_rmdirs; i++)
		rmdir(rmdirs[i]);
	put("/proc/sys/kernel/core_pattern", pattern, pattern_len);
	put("/proc/sys/kernel/core_pipe_limit", limit, limit_len);
}

static void handler(int sig)
{
	guard_restore();
	for (int i = 0; i < NSIGS; i++) {
		if (sigs[i] != sig)
			continue;
		if ((sig == SIGINT || sig == SIGTERM || sig == SIGHUP) && old[i].sa_handler != SIG_DFL && old[i].sa_handler != SIG_IGN) {
			old[i].sa_handler(sig);
			return;
		}
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

int guard_arm(const char *core_pattern, size_t n1, const char *pipe_limit, size_t n2)
{
	if (n1 >= sizeof(pattern) || n2 >= sizeof(limit))
		return -1;
	memcpy(pattern, core_pattern, n1);
	pattern_len = n1;
	memcpy(limit, pipe_limit, n2);
	limit_len = n2;
	armed = 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < NSIGS; i++)
		sigaddset(&sa.sa_mask, sigs[i]);
	for (int i = 0; i < NSIGS; i++)
		if (sigaction(sigs[i], &sa, &old[i]) < 0)
			return -1;
	return 0;
}

static int add(char list[][GUARD_LEN], volatile int *n, const char *path)
{
	if (*n >= GUARD_MAX || strlen(path) >= GUARD_LEN)
		return -1;
	strcpy(list[*n], path);
	*n = *n + 1;
	return 0;
}

int guard_unlink(const char *path) { return add(unlinks, &n_unlinks, path); }
int guard_rmdir(const char *path) { return add(rmdirs, &n_rmdirs, path); }

/* Put the old handlers back (the state is restored by then). */
void guard_disarm(void)
{
	armed = 0;
	for (int i = 0; i < NSIGS; i++)
		sigaction(sigs[i], &old[i], NULL);
}
