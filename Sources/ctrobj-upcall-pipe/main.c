/* ctrobj-upcall-pipe: the helper the kernel runs per core in core_pattern
 * pipe mode.
 *
 *   core_pattern = |<state>/upcall-pipe corefd <state> %F %P %u %g %s %t %d %e
 *
 * It hands the core pipe (its stdin), the %F pidfd and its arguments to the
 * core server (<state>/core-relay.sock), which does the work in a process
 * that is already running, and exits once the server says "ok"; the server
 * keeps the pipe, so the kernel waits for it as it would for us. Anything
 * else (no server, no answer) and it becomes the full helper,
 * <state>/upcall, with the same arguments and fds. Small and in C because the
 * kernel execs it for every core. */

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
	/* The kernel blocks on a full core pipe (64 KiB): let it write on. */
	(void)fcntl(0, F_SETPIPE_SZ, 1 << 20);

	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/core-relay.sock", state) >= (int)sizeof(addr.sun_path))
		become_full_helper(state, argv);
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		become_full_helper(state, argv);

	/* The arguments after argv[0], NUL-separated. */
	char buf[8192];
	size_t len = 0;
	for (int i = 1; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (len + n + 1 > sizeof(buf))
			become_full_helper(state, argv);
		memcpy(buf + len, argv[i], n);
		len += n;
		if (i + 1 < argc)
			buf[len++] = 0;
	}
	int fds[2] = { 0, -1 };
	int nfds = 1;
	if (strcmp(argv[1], "corefd") == 0) {
		int n = atoi(argv[3]);
		if (n > 2 && fcntl(n, F_GETFD) >= 0)
			fds[nfds++] = n;
	}
	char control[CMSG_SPACE(sizeof(fds))];
	memset(control, 0, sizeof(control));
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = CMSG_SPACE(sizeof(int) * nfds) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	if (sendmsg(s, &msg, MSG_NOSIGNAL) < 0)
		become_full_helper(state, argv);

	/* "ok": the server has it. Anything else: do it all ourselves (the
	 * pipe is untouched until the server's thread starts reading it). */
	struct pollfd p = { .fd = s, .events = POLLIN };
	char answer[8];
	if (poll(&p, 1, 10000) == 1 && recv(s, answer, sizeof(answer), 0) == 2 && memcmp(answer, "ok", 2) == 0)
		return 0;
	close(s);
	become_full_helper(state, argv);
	return 1;
}
