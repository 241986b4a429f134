/* The kernel's core_pattern socket mode ("@/path", 6.16; "@@/path" with the
 * request protocol, 6.17+), seen from the server side, and the daemon spawn
 * the core server needs. */
#include "cshim.h"
#include "pidfd_info.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* include/uapi/linux/coredump.h (not in Debian 12's headers). */
struct ccs_coredump_req {
	uint32_t size;
	uint32_t size_ack;
	uint64_t mask;
};

struct ccs_coredump_ack {
	uint32_t size;
	uint32_t spare;
	uint64_t mask;
};

#define CCS_COREDUMP_KERNEL 1ULL
#define CCS_COREDUMP_WAIT 8ULL
#define CCS_COREDUMP_REQ_SIZE_MAX 4096u


static int read_all(int fd, void *buf, size_t len, int flags)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, (char *)buf + got, len - got, flags);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EPROTO;
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

int ccs_coredump_first_bytes_are_elf(int fd)
{
	unsigned char b[4];
	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), MSG_PEEK | MSG_WAITALL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		return n == 4 && b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F';
	}
}

int ccs_coredump_handshake(int fd)
{
	struct ccs_coredump_req req;
	if (read_all(fd, &req, sizeof(req), MSG_WAITALL) < 0)
		return -1;
	if (req.size < sizeof(req) || req.size > CCS_COREDUMP_REQ_SIZE_MAX ||
	    req.size_ack < sizeof(struct ccs_coredump_ack)) {
		errno = EPROTO;
		return -1;
	}
	/* A newer kernel's larger request: skip the fields we do not know. */
	for (uint32_t left = req.size - sizeof(req); left > 0;) {
		char skip[256];
		uint32_t chunk = left < sizeof(skip) ? left : sizeof(skip);
		if (read_all(fd, skip, chunk, MSG_WAITALL) < 0)
			return -1;
		left -= chunk;
	}
	if ((req.mask & (CCS_COREDUMP_KERNEL | CCS_COREDUMP_WAIT)) != (CCS_COREDUMP_KERNEL | CCS_COREDUMP_WAIT)) {
		errno = EOPNOTSUPP;
		return -1;
	}
	/* The kernel writes the core; it waits for our close before the task
	 * may be reaped, so the task (and its /proc) stays while we work. */
	struct ccs_coredump_ack ack = {
		.size = sizeof(ack),
		.mask = CCS_COREDUMP_KERNEL | CCS_COREDUMP_WAIT,
	};
	if (send(fd, &ack, sizeof(ack), MSG_NOSIGNAL) != (ssize_t)sizeof(ack))
		return -1;
	uint32_t mark;
	if (read_all(fd, &mark, sizeof(mark), MSG_WAITALL) < 0)
		return -1;
	if (mark != 0) { /* COREDUMP_MARK_REQACK */
		errno = EPROTO;
		return -(int)mark - 1;
	}
	return 0;
}

int ccs_pidfd_coredump_info(int pidfd, struct ccs_core_info *out)
{
	struct ccs_pidfd_info info;
	memset(&info, 0, sizeof(info));
	info.mask = CCS_PIDFD_INFO_PID | CCS_PIDFD_INFO_CREDS | CCS_PIDFD_INFO_COREDUMP | CCS_PIDFD_INFO_COREDUMP_SIGNAL;
	if (ioctl(pidfd, CCS_PIDFD_GET_INFO, &info) < 0)
		return -1;
	memset(out, 0, sizeof(*out));
	out->pid = (pid_t)info.tgid;
	out->uid = info.ruid;
	out->gid = info.rgid;
	out->coredump_mask = (info.mask & CCS_PIDFD_INFO_COREDUMP) ? info.coredump_mask : 0;
	out->signal = (info.mask & CCS_PIDFD_INFO_COREDUMP_SIGNAL) ? (int)info.coredump_signal : 0;
	return 0;
}

/* The signal from the core itself: the first note of an ELF core is the
 * dumping thread's NT_PRSTATUS, whose descriptor starts with si_signo.
 * A socket is looked at with MSG_PEEK and a file with pread, so the stream
 * is left whole; a pipe cannot be (0). 0 if not found. */
static int core_signal_in(const unsigned char *b, size_t n, size_t *want)
{
	if (n < 64)
		return *want = 64, -1;
	if (memcmp(b, "\177ELF", 4) != 0 || b[4] != 2 /* ELFCLASS64 */)
		return 0;
	uint64_t phoff;
	uint16_t phentsize, phnum;
	memcpy(&phoff, b + 32, 8);
	memcpy(&phentsize, b + 54, 2);
	memcpy(&phnum, b + 56, 2);
	if (phentsize < 56 || phnum == 0 || phnum == 0xffff || phoff > 65536)
		return 0;
	size_t phend = phoff + (size_t)phentsize * phnum;
	if (phend > 65536)
		return 0;
	if (n < phend)
		return *want = phend, -1;
	for (uint16_t i = 0; i < phnum; i++) {
		const unsigned char *ph = b + phoff + (size_t)i * phentsize;
		uint32_t type;
		uint64_t off;
		memcpy(&type, ph, 4);
		memcpy(&off, ph + 8, 8);
		if (type != 4 /* PT_NOTE */)
			continue;
		/* namesz, descsz, type, "CORE\0" padded to 8, then elf_prstatus. */
		if (off > 65536 - 24)
			return 0;
		if (n < off + 24)
			return *want = off + 24, -1;
		uint32_t namesz, ntype;
		int32_t signo;
		memcpy(&namesz, b + off, 4);
		memcpy(&ntype, b + off + 8, 4);
		if (namesz != 5 || ntype != 1 /* NT_PRSTATUS */)
			return 0;
		memcpy(&signo, b + off + 20, 4);
		return signo > 0 && signo < 65 ? signo : 0;
	}
	return 0;
}

/* Copy buffers come from the heap, not thread-local storage: a large TLS
 * block would be zeroed for every thread the server and ctrobjd start. A
 * size under malloc's mmap threshold is reused from the arena. */
#define CCS_COPY_BUF ((size_t)120 * 1024)

static int core_signal_peek_into(int fd, int timeout_ms, unsigned char *b);

int ccs_core_signal_peek(int fd, int timeout_ms)
{
	unsigned char *b = malloc(65536);
	if (!b)
		return 0;
	int sig = core_signal_peek_into(fd, timeout_ms, b);
	free(b);
	return sig;
}

static int core_signal_peek_into(int fd, int timeout_ms, unsigned char *b)
{
	const size_t bsize = 65536;
	size_t want = 64;
	int spins = 0;
	for (;;) {
		ssize_t n = recv(fd, b, bsize, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && errno == ENOTSOCK) {
			n = pread(fd, b, bsize, 0);
			if (n < 0)
				return 0;
			size_t w = 0;
			int sig = core_signal_in(b, (size_t)n, &w);
			return sig < 0 ? 0 : sig;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return 0;
		if (n > 0) {
			int sig = core_signal_in(b, (size_t)n, &want);
			if (sig >= 0)
				return sig;
		}
		/* The kernel is still writing the first pages: wait for more than
		 * we have (poll only says "some"), briefly by yielding. */
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, timeout_ms) <= 0)
			return 0;
		if (n > 0 && (size_t)n < want) {
			if ((p.revents & POLLHUP) && recv(fd, b, bsize, MSG_PEEK | MSG_DONTWAIT) == n)
				return 0;
			if (++spins > 2000)
				return 0;
			if (spins < 50)
				sched_yield();
			else
				usleep(50);
		}
	}
}

pid_t ccs_spawn_detached(const char *path, char *const argv[], int ready_fd)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid_t child = fork();
	if (child < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (child == 0) {
		/* Intermediate: a new session, then the daemon as an orphan. */
		setsid();
		pid_t d = fork();
		if (d != 0) {
			if (d > 0)
				(void)!write(pfd[1], &d, sizeof(d));
			_exit(d > 0 ? 0 : 1);
		}
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		if (ready_fd >= 0 && ready_fd != 3) {
			dup2(ready_fd, 3);
		} else if (ready_fd == 3) {
			fcntl(3, F_SETFD, 0);
		}
		/* A daemon keeps nothing of its starter's: no inherited fd (a pipe,
		 * a namespace) stays open for as long as it runs. */
		syscall(SYS_close_range, ready_fd >= 0 ? 4 : 3, ~0U, 0);
		char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
		execve(path, argv, envp);
		_exit(127);
	}
	close(pfd[1]);
	pid_t daemon = -1;
	ssize_t n;
	do {
		n = read(pfd[0], &daemon, sizeof(daemon));
	} while (n < 0 && errno == EINTR);
	close(pfd[0]);
	int st;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	return n == sizeof(daemon) ? daemon : -1;
}

int ccs_grow_pipe(int fd, int size)
{
	return fcntl(fd, F_SETPIPE_SZ, size);
}

int ccs_set_nondumpable(void)
{
	return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* Read/write fallback from src to dst (dst < 0: discard), up to *left bytes
 * kept, the rest drained. */
static int copy_rw_buf(int src, int dst, uint64_t *left, uint64_t *written, char *buf);

static int copy_rw(int src, int dst, uint64_t *left, uint64_t *written)
{
	char *buf = malloc(CCS_COPY_BUF);
	if (!buf)
		return -1;
	int rc = copy_rw_buf(src, dst, left, written, buf);
	int saved = errno;
	free(buf);
	errno = saved;
	return rc;
}

static int copy_rw_buf(int src, int dst, uint64_t *left, uint64_t *written, char *buf)
{
	for (;;) {
		ssize_t n = read(src, buf, CCS_COPY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		size_t keep = dst < 0 ? 0 : ((uint64_t)n < *left ? (size_t)n : (size_t)*left);
		for (size_t off = 0; off < keep;) {
			ssize_t w = write(dst, buf + off, keep - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return -1;
			off += (size_t)w;
		}
		*left -= keep;
		*written += keep;
	}
}

/* Move everything in pipe `pr` to dst (splice, else read/write). */
static int drain_pipe(int pr, int dst, size_t n, uint64_t *left, uint64_t *written)
{
	while (n > 0) {
		ssize_t m = splice(pr, NULL, dst, NULL, n, SPLICE_F_MOVE);
		if (m < 0 && errno == EINTR)
			continue;
		if (m <= 0) {
			/* dst cannot take a splice: copy what is left in the pipe by hand. */
			char buf[4096];
			while (n > 0) {
				ssize_t r = read(pr, buf, n < sizeof(buf) ? n : sizeof(buf));
				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0)
					return -1;
				for (ssize_t off = 0; off < r;) {
					ssize_t w = write(dst, buf + off, (size_t)(r - off));
					if (w < 0 && errno == EINTR)
						continue;
					if (w < 0)
						return -1;
					off += w;
				}
				n -= (size_t)r;
				*left -= (uint64_t)r;
				*written += (uint64_t)r;
			}
			return 1; /* fall back to read/write from now on */
		}
		n -= (size_t)m;
		*left -= (uint64_t)m;
		*written += (uint64_t)m;
	}
	return 0;
}

int ccs_copy_stream(int src, int dst, uint64_t limit, uint64_t *written)
{
	*written = 0;
	uint64_t left = limit;
	struct stat st;
	/* From a pipe (pipe mode), read/write: splicing out of the kernel's
	 * core pipe holds its lock while the file is written, and the dumping
	 * task could not refill it meanwhile. */
	if (dst < 0 || fstat(src, &st) < 0 || S_ISFIFO(st.st_mode))
		return copy_rw(src, dst, &left, written);
	/* A socket (or a file): through a pipe of our own, so the kernel moves
	 * the pages instead of copying them through us twice. */
	int pr = -1, pw = -1, fallback = 0;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return copy_rw(src, dst, &left, written);
	pr = p[0];
	pw = p[1];
	(void)fcntl(pw, F_SETPIPE_SZ, 1 << 18);
	int rc = 0;
	while (left > 0 && !fallback) {
		size_t want = left < (1u << 20) ? (size_t)left : (1u << 20);
		ssize_t n = splice(src, NULL, pw, NULL, want, SPLICE_F_MOVE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
			fallback = 1;
			break;
		}
		if (n < 0) {
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		int d = drain_pipe(pr, dst, (size_t)n, &left, written);
		if (d < 0) {
			rc = -1;
			break;
		}
		if (d == 1)
			fallback = 1;
	}
	int saved = errno;
	close(pr);
	close(pw);
	if (rc < 0) {
		errno = saved;
		return -1;
	}
	/* The rest: by hand after a fallback, or drained past the limit. */
	if (fallback || left == 0)
		return copy_rw(src, left == 0 ? -1 : dst, &left, written);
	return 0;
}
