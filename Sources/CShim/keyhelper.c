/* The key route: what /sbin/request-key runs for every key request
 * (/etc/request-key.d/ctrobj.conf, written by `ctrobj install`), in one
 * implementation, ccs_key_helper(), which both programs that request-key
 * may run call as their whole work:
 *
 *   <state>/upcall-key key <state> %k %t %u %g %T %P %S %d   (helpers/ctrobj-upcall-key.c,
 *                                                            static musl: the fast start)
 *   <state>/upcall key <state> ...                           (ctrobj-upcall, when the C
 *                                                            helper was not built)
 *
 * The kernel's request-key waits for it while the requester sleeps in
 * request_key(2) (docs/upcalls.md "Key requests").
 *
 * 1. The requester: the pid the authority key (.request_key_auth, in our
 *    session keyring) records, read from /proc/keys, opened as a pidfd. No
 *    such pid: the host configuration (as 2).
 * 2. A host requester (every namespace ours, ccs_is_host_process): the
 *    host's own request-key configuration minus ours (`request-key -l` in
 *    <state>/request-key-host).
 * 3. Anyone else: ctrobjd (<state>/upcall.sock) gets the pidfd and answers
 *    with the way into the requester's container (Broker's KeyRoute.swift):
 *
 *    | ctrobjd's answer                                  | we                                   |
 *    |---------------------------------------------------|--------------------------------------|
 *    | ok: JoinPlan fields, key_timeout, container + fds | run its request-key inside it        |
 *    | fallthrough (in no container of ctrobjd's)        | the host configuration, as in 2      |
 *    | error, or no answer                               | negate the key (and log why)         |
 *
 *    The container's own /sbin/request-key then runs inside it as its root
 *    (one fork: we join its pid namespace first, so the child is born in
 *    it), holding the authority (our session keyring, inherited), and is
 *    killed and the key negated when it outlives key_timeout.
 *
 * Run under our own configuration again (CTROBJ_UPCALL_DEPTH set: a
 * container that sees it), or anything it cannot do: the key is negated,
 * never a hang. */
#include "cshim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 24

static char *const ENV_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

struct request {
	const char *state;
	const char *key, *type, *uid, *gid, *thread_kr, *process_kr, *session_kr;
	char desc[4096];
};

/* The kernel gives request-key's programs no stderr: /dev/kmsg it is. */
static void logk(const char *fmt, ...)
{
	char line[1024] = "ctrobj-upcall: ";
	size_t n = strlen(line);
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	n = w < 0 ? n : n + (size_t)w < sizeof(line) - 2 ? n + (size_t)w : sizeof(line) - 2;
	line[n++] = '\n';
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)ccs_write_all(fd, line, n);
		close(fd);
	}
}

/* A negative key for 30 s: the requester gets an error at once, never a hang. */
static int negate(struct request *r, const char *why)
{
	logk("key %s (%s:%s) negated: %s", r->key, r->type, r->desc, why);
	(void)ccs_keyctl(CCS_KEYCTL_NEGATE, strtoul(r->key, NULL, 10), 30,
			 (unsigned long)(unsigned int)strtol(r->session_kr, NULL, 10), 0);
	return 1;
}

/* The host's own configuration, without ours. Returns only on failure
 * (the key negated). */
static int host_request_key(struct request *r)
{
	char dir[PATH_MAX], why[PATH_MAX + 64];
	if (snprintf(dir, sizeof(dir), "%s/request-key-host", r->state) >= (int)sizeof(dir) || chdir(dir) < 0) {
		snprintf(why, sizeof(why), "no %s", dir);
		return negate(r, why);
	}
	char *argv[] = { "/sbin/request-key", "-l", "create", (char *)r->key, (char *)r->uid, (char *)r->gid,
			 (char *)r->thread_kr, (char *)r->process_kr, (char *)r->session_kr, NULL };
	char *envp[] = { ENV_PATH, NULL };
	execve(argv[0], argv, envp);
	snprintf(why, sizeof(why), "exec /sbin/request-key: %s", strerror(errno));
	return negate(r, why);
}

/* The requester's pid from the authority key for `key`: /proc/keys lists it
 * to us (our session keyring holds it) as type ".request_" with the
 * description "key:<target, hex> pid:<requester> ci:<len>". */
static pid_t requester_pid(const char *key)
{
	char marker[64];
	snprintf(marker, sizeof(marker), "key:%lx pid:", strtoul(key, NULL, 10));
	size_t mlen = strlen(marker);
	int fd = open("/proc/keys", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t cap = 1 << 14, len = 0;
	char *text = malloc(cap);
	while (text) {
		if (len + 4096 > cap) {
			if (cap >= (1 << 22))
				break;
			char *more = realloc(text, cap * 2);
			if (!more)
				break;
			text = more;
			cap *= 2;
		}
		ssize_t n = read(fd, text + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (!text)
		return -1;
	text[len] = 0;
	pid_t pid = -1;
	for (char *line = text; line && *line; ) {
		char *eol = strchr(line, '\n');
		if (eol)
			*eol = 0;
		/* Only the authority key's own line: its type column (the 8th,
		 * printed as 9 characters) is ".request_" and its description,
		 * the rest, starts with the marker. A key a requester made can
		 * have any description, never that type. */
		char *c = line;
		for (int k = 0; k < 7 && *c; k++) {
			while (*c == ' ')
				c++;
			while (*c && *c != ' ')
				c++;
		}
		while (*c == ' ')
			c++;
		if (strncmp(c, ".request_ ", 10) == 0 && strncmp(c + 10, marker, mlen) == 0) {
			char *m = c + 10, *end;
			long v = strtol(m + mlen, &end, 10);
			if (end != m + mlen && v > 0 && v < INT_MAX)
				pid = (pid_t)v;
			break;
		}
		line = eol ? eol + 1 : NULL;
	}
	free(text);
	return pid;
}

/* The one host check (ContainerSystem's Namespaces.areCallers calls it
 * too): 1 when every namespace of pid among `kinds` (CLONE_NEW* bits) that
 * can be read is ours, inode and device, and at least one can. */
int ccs_is_host_process(pid_t pid, int kinds)
{
	static const struct { const char *name; int flag; } all[] = {
		{ "user", CLONE_NEWUSER }, { "mnt", CLONE_NEWNS }, { "uts", CLONE_NEWUTS }, { "ipc", CLONE_NEWIPC },
		{ "net", CLONE_NEWNET }, { "cgroup", CLONE_NEWCGROUP }, { "pid", CLONE_NEWPID },
	};
	int seen = 0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (!(kinds & all[i].flag))
			continue;
		char theirs_path[64], ours_path[64];
		struct stat theirs, ours;
		snprintf(theirs_path, sizeof(theirs_path), "/proc/%d/ns/%s", (int)pid, all[i].name);
		snprintf(ours_path, sizeof(ours_path), "/proc/self/ns/%s", all[i].name);
		if (stat(theirs_path, &theirs) < 0)
			continue;
		if (stat(ours_path, &ours) < 0 || ours.st_ino != theirs.st_ino || ours.st_dev != theirs.st_dev)
			return 0;
		seen++;
	}
	return seen > 0;
}

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static int run_in_container(struct request *r, const char *msg, size_t len, const int *fds, int nfds)
{
	char container[256] = "?", timeout[32] = "10";
	(void)ccs_msg_get(msg, len, "container", container, sizeof(container));
	(void)ccs_msg_get(msg, len, "key_timeout", timeout, sizeof(timeout));
	struct ccs_join_plan plan;
	int pidns_fd;
	if (ccs_msg_join_plan(msg, len, fds, nfds, &plan, &pidns_fd) < 0)
		return negate(r, "ctrobjd's answer is malformed");
	/* We only wait from here on: join the pid namespace for our children,
	 * so the one child we fork is born in it. */
	if (pidns_fd >= 0 && ccs_setns(pidns_fd, CLONE_NEWPID) < 0)
		return negate(r, "could not join the container's pid namespace");
	char *argv[] = { "/sbin/request-key", "create", (char *)r->key, (char *)r->uid, (char *)r->gid,
			 (char *)r->thread_kr, (char *)r->process_kr, (char *)r->session_kr, NULL };
	char *envp[] = { ENV_PATH, "CTROBJ_UPCALL_DEPTH=1", NULL };
	plan.path = argv[0];
	plan.argv = argv;
	plan.envp = envp;
	plan.die_with_parent = 1;
	plan.new_pgrp = 1;
	int stage = 0;
	pid_t child = ccs_join_fork(&plan, &stage);
	int cfd = child > 0 ? ccs_pidfd_open(child, 0) : -1;
	if (cfd < 0) {
		char why[256];
		snprintf(why, sizeof(why), "container \"%s\": request-key did not start (step %d): %s", container, stage,
			 strerror(errno));
		return negate(r, why);
	}
	long seconds = strtol(timeout, NULL, 10);
	uint64_t deadline = now_ms() + (uint64_t)(seconds > 0 ? seconds : 0) * 1000;
	for (uint64_t t = now_ms(); t < deadline; t = now_ms()) {
		struct pollfd p = { .fd = cfd, .events = POLLIN };
		uint64_t left = deadline - t;
		if (poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) > 0) {
			int status;
			if (ccs_pidfd_wait(cfd, 0, &status) == 1)
				return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 1;
		}
	}
	/* Its process group first (what the handler started), while the
	 * unreaped child keeps the group's id from being reused. */
	(void)kill(-child, SIGKILL);
	(void)ccs_pidfd_send_signal(cfd, SIGKILL);
	int status;
	(void)ccs_pidfd_wait(cfd, 0, &status);
	char why[320];
	snprintf(why, sizeof(why), "container \"%s\": request-key took longer than %ld s and was killed, with its process group",
		 container, seconds);
	return negate(r, why);
}

int ccs_key_helper(int argc, char **argv)
{
	if (argc < 11 || strcmp(argv[1], "key") != 0)
		return 2;
	struct request r = { .state = argv[2] };
	r.key = argv[3];
	r.type = argv[4];
	r.uid = argv[5];
	r.gid = argv[6];
	r.thread_kr = argv[7];
	r.process_kr = argv[8];
	r.session_kr = argv[9];
	size_t dl = 0;
	for (int i = 10; i < argc; i++) {   /* %d comes last: it may hold spaces */
		int w = snprintf(r.desc + dl, sizeof(r.desc) - dl, "%s%s", i > 10 ? " " : "", argv[i]);
		if (w < 0 || (size_t)w >= sizeof(r.desc) - dl)
			return negate(&r, "the description is longer than a key's (4095 bytes)");
		dl += (size_t)w;
	}
	/* A container that sees our configuration must not route again. */
	if (getenv("CTROBJ_UPCALL_DEPTH"))
		return negate(&r, "request-key loop");

	pid_t pid = requester_pid(r.key);
	if (pid <= 0) {
		logk("key %s: no requester pid in the authority key; host configuration", r.key);
		return host_request_key(&r);
	}
	/* The requester may be a thread. A task we cannot open is not known to
	 * be the host's: never the host's configuration for it. */
	int pidfd = ccs_pidfd_open_task(pid);
	if (pidfd < 0) {
		char why[128];
		snprintf(why, sizeof(why), "the requester %d cannot be opened: %s", (int)pid, strerror(errno));
		return negate(&r, why);
	}
	int host = ccs_is_host_process(pid, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
						 CLONE_NEWCGROUP | CLONE_NEWPID);
	/* Still the same process: the pidfd pins it, the namespaces were read after. */
	if (ccs_pidfd_pid(pidfd) != pid)
		return negate(&r, "the requester went away");
	if (host)
		return host_request_key(&r);

	/* A description escapes to at most three bytes a byte. */
	static char msg[3 * sizeof(r.desc) + 1024];
	memcpy(msg, "key\n", 5);
	size_t len = 4;
	char pidtext[16];
	snprintf(pidtext, sizeof(pidtext), "%d", (int)pid);
	if (ccs_msg_add(msg, sizeof(msg), &len, "key_desc", r.desc) < 0 ||
	    ccs_msg_add(msg, sizeof(msg), &len, "key_type", r.type) < 0 ||
	    ccs_msg_add(msg, sizeof(msg), &len, "pid", pidtext) < 0)
		return negate(&r, "the request does not fit a message");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/upcall.sock", r.state) >= (int)sizeof(addr.sun_path))
		return negate(&r, "the state directory's path is too long for a socket");
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    ccs_send_with_fds(s, msg, len, &pidfd, 1) < 0) {
		char why[128];
		snprintf(why, sizeof(why), "ctrobjd did not answer: %s", strerror(errno));
		return negate(&r, why);
	}
	close(pidfd);

	char answer[8192];
	int fds[MAX_FDS], nfds = 0;
	ssize_t n = ccs_wait_readable(s, 10000) == 0 ? ccs_recv_with_fds(s, answer, sizeof(answer) - 1, fds, MAX_FDS, &nfds) : -1;
	close(s);
	if (n > 0 && ccs_msg_op_is(answer, (size_t)n, "ok"))
		return run_in_container(&r, answer, (size_t)n, fds, nfds);
	if (n > 0 && ccs_msg_op_is(answer, (size_t)n, "fallthrough")) {
		logk("key %s: requester %d is in no container of ctrobjd's; host configuration", r.key, (int)pid);
		return host_request_key(&r);
	}
	char why[600] = "ctrobjd did not answer";
	if (n > 0) {
		char message[512] = "";
		if (ccs_msg_get(answer, (size_t)n, "message", message, sizeof(message)) != 1)
			snprintf(message, sizeof(message), "an answer without a message");
		snprintf(why, sizeof(why), "ctrobjd refused: %s", message);
	}
	return negate(&r, why);
}
