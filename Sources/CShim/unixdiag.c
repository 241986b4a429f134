/* Whether the peer of a connected AF_UNIX socket still exists, asked of the
 * kernel through NETLINK_SOCK_DIAG (net/unix/diag.c, CONFIG_UNIX_DIAG).
 *
 * ctrobjd needs it after a container's init exited: its end of each
 * container fd is then shut down both ways (holders see POLLHUP), which makes
 * poll() report HUP on it for good, so poll() can no longer tell when the
 * last holder closes.  The kernel still can: the diag record of our socket
 * names its peer's inode, and that is 0 once the peer was released (the
 * released socket is orphaned). */
#include "cshim.h"
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

int ccs_unix_peer_gone(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	uint64_t cookie = ccs_socket_cookie(fd);
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -1;
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} req;
	memset(&req, 0, sizeof(req));
	req.h.nlmsg_len = sizeof(req);
	req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.h.nlmsg_flags = NLM_F_REQUEST;
	req.h.nlmsg_seq = 1;
	req.r.sdiag_family = AF_UNIX;
	req.r.udiag_states = ~0u;
	req.r.udiag_ino = (uint32_t)st.st_ino;
	req.r.udiag_show = UDIAG_SHOW_PEER;
	memcpy(req.r.udiag_cookie, &cookie, sizeof(cookie));
	struct sockaddr_nl to = { .nl_family = AF_NETLINK };
	if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
		int e = errno;
		close(nl);
		errno = e;
		return -1;
	}
	union {
		char buf[4096];
		struct nlmsghdr align;
	} u;
	ssize_t n;
	do
		n = recv(nl, u.buf, sizeof(u.buf), 0);
	while (n < 0 && errno == EINTR);
	int e = errno;
	close(nl);
	if (n < 0) {
		errno = e;
		return -1;
	}
	struct nlmsghdr *h = &u.align;
	if (!NLMSG_OK(h, (size_t)n)) {
		errno = EPROTO;
		return -1;
	}
	if (h->nlmsg_type == NLMSG_ERROR) {
		struct nlmsgerr *err = NLMSG_DATA(h);
		errno = err->error ? -err->error : EPROTO;
		return -1;
	}
	if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg))) {
		errno = EPROTO;
		return -1;
	}
	struct unix_diag_msg *m = NLMSG_DATA(h);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));
	for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= sizeof(uint32_t)) {
			uint32_t peer;
			memcpy(&peer, RTA_DATA(a), sizeof(peer));
			return peer == 0;
		}
	}
	return 1; /* no peer at all */
}
