/* ctrobj-upcall-pipe: the helper the kernel runs per core in core_pattern
 * pipe mode.
 *
 *   core_pattern = |<state>/upcall-pipe corefd <state> %F %P %u %g %s %t %d %e
 *   core_pattern = |<state>/upcall-pipe core <state> %P %u %g %s %t %d %e
 *
 * It hands the core pipe (its stdin), the %F pidfd and what the kernel told it
 * to ctrobjd (<state>/upcall.sock, a "core" message, docs/upcalls.md), which
 * reads the rest of what it needs from /proc, and exits once ctrobjd has taken
 * the core ("ok"): ctrobjd holds the pipe, so the kernel waits for it as it
 * would for us. Anything else (ctrobjd down, a host process's core, an error)
 * and it becomes the full helper, <state>/upcall, with the same arguments and
 * fds: that one spools, or does what the previous core_pattern did. Small and
 * in C because the kernel execs it for every core. */
#include "cshim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef F_SETPIPE_SZ
#define F_SETPIPE_SZ 1031
#endif

static void become_full_helper(const char *state, char **argv)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/upcall", state) >= (int)sizeof(path))
		_exit(1);
	argv[0] = path;
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	execve(path, argv, envp);
	_exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	const char *state = argv[2];
	int withfd = strcmp(argv[1], "corefd") == 0;
	int at = withfd ? 4 : 3; /* %P ... */
	if ((strcmp(argv[1], "core") != 0 && !withfd) || argc < at + 7)
		become_full_helper(state, argv);

	/* The kernel blocks on a full core pipe (64 KiB): let it write on while
	 * ctrobjd finds out where the core goes. */
	(void)fcntl(0, F_SETPIPE_SZ, 1 << 20);

	/* The core message: the kernel's facts; comm is every word after %d. */
	char comm[256] = "";
	size_t cl = 0;
	for (int i = at + 6; i < argc; i++) {
		int w = snprintf(comm + cl, sizeof(comm) - cl, "%s%s", i > at + 6 ? " " : "", argv[i]);
		if (w < 0 || (size_t)w >= sizeof(comm) - cl)
			become_full_helper(state, argv);
		cl += (size_t)w;
	}
	char msg[1024] = "core\n";
	size_t len = strlen(msg);
	if (ccs_msg_add(msg, sizeof(msg), &len, "comm", comm) < 0 || ccs_msg_add(msg, sizeof(msg), &len, "dump_mode", argv[at + 5]) < 0 ||
	    ccs_msg_add(msg, sizeof(msg), &len, "gid", argv[at + 2]) < 0 || ccs_msg_add(msg, sizeof(msg), &len, "pid", argv[at]) < 0 ||
	    ccs_msg_add(msg, sizeof(msg), &len, "signal", argv[at + 3]) < 0 || ccs_msg_add(msg, sizeof(msg), &len, "time", argv[at + 4]) < 0 ||
	    ccs_msg_add(msg, sizeof(msg), &len, "uid", argv[at + 1]) < 0)
		become_full_helper(state, argv);

	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/upcall.sock", state) >= (int)sizeof(addr.sun_path))
		become_full_helper(state, argv);
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		become_full_helper(state, argv);

	int fds[2] = { 0, -1 };
	int nfds = 1;
	if (withfd) {
		int n = atoi(argv[3]);
		if (n > 2 && fcntl(n, F_GETFD) >= 0)
			fds[nfds++] = n;
	}
	if (ccs_send_with_fds(s, msg, len, fds, nfds) < 0)
		become_full_helper(state, argv);

	/* "ok": ctrobjd has taken it. Anything else ("fallthrough", an error, no
	 * answer): the full helper decides; nothing has been read from the pipe
	 * yet (ctrobjd reads only cores it has taken). */
	struct pollfd p = { .fd = s, .events = POLLIN };
	char answer[64];
	ssize_t n = poll(&p, 1, 600000) == 1 ? recv(s, answer, sizeof(answer), 0) : -1;
	if (n >= 3 && memcmp(answer, "ok\n", 3) == 0)
		return 0;
	close(s);
	become_full_helper(state, argv);
	return 1;
}
