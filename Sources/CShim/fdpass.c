/* SCM_RIGHTS send and receive. Received fds are always CLOEXEC, and fds
 * beyond what the caller expects are closed, never leaked. */
#include "cshim.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#define CCS_MAX_PASSED 32

ssize_t ccs_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg;
	union {
		char buf[CMSG_SPACE(sizeof(int) * CCS_MAX_PASSED)];
		struct cmsghdr align;
	} u;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (nfds > CCS_MAX_PASSED) {
		errno = EINVAL;
		return -1;
	}
	if (nfds > 0) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	ssize_t n;
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n;
}

ssize_t ccs_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg;
	union {
		char buf[CMSG_SPACE(sizeof(int) * CCS_MAX_PASSED)];
		struct cmsghdr align;
	} u;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	*nfds = 0;
	ssize_t n;
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	int truncated = (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int got[CCS_MAX_PASSED];
		if (count > CCS_MAX_PASSED)
			count = CCS_MAX_PASSED;
		memcpy(got, CMSG_DATA(c), sizeof(int) * (size_t)count);
		for (int i = 0; i < count; i++) {
			if (*nfds < maxfds)
				fds[(*nfds)++] = got[i];
			else
				close(got[i]);
		}
	}
	if (truncated) {
		for (int i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		errno = EMSGSIZE;
		return -1;
	}
	return n;
}

/* poll(2) one fd, EINTR retried: >0 with *revents, 0 on timeout, -1 error. */
static int poll_one(int fd, short events, int timeout_ms, short *revents)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;
	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	*revents = p.revents;
	return r;
}

int ccs_wait_readable(int fd, int timeout_ms)
{
	short revents;
	int r = poll_one(fd, POLLIN, timeout_ms, &revents);
	if (r < 0)
		return -1;
	if (r == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	return 0;
}

ssize_t ccs_peek_size(int sock)
{
	char c;
	ssize_t n;
	do {
		n = recv(sock, &c, 1, MSG_PEEK | MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	return n;
}

int ccs_peer_hung_up(int sock)
{
	short revents;
	return poll_one(sock, POLLRDHUP, 0, &revents) > 0 && (revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

ssize_t ccs_discard_datagram(int sock)
{
	char c;
	ssize_t n;
	do {
		n = recv(sock, &c, 0, MSG_DONTWAIT | MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	return n;
}
