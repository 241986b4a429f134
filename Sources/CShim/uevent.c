/* Uevent injection (Linux 4.18+, "netns: send uevent messages").
 *
 * The kernel's NETLINK_KOBJECT_UEVENT socket of every network namespace
 * accepts messages sent to it (nl_pid 0) by a task with CAP_SYS_ADMIN over
 * the namespace's owning user namespace (lib/kobject_uevent.c,
 * uevent_net_rcv_skb).  netlink_rcv_skb hands on only NLM_F_REQUEST messages
 * of type >= NLMSG_MIN_TYPE; uevent_net_broadcast then strips the nlmsghdr,
 * appends "SEQNUM=<next global seqnum>\0", refuses a result over
 * UEVENT_BUFFER_SIZE (2048) with EINVAL, and broadcasts it on group 1 of that
 * namespace with portid 0: listeners see it exactly as a kernel uevent.  The
 * netlink credentials are the sender's (SCM_CREDENTIALS), not rewritten to
 * the namespace's root as for the kernel's own tagged uevents. */
#include "cshim.h"

#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/net_tstamp.h>
#include <linux/netlink.h>
#include <linux/sockios.h>

int ccs_uevent_inject(int sock, const void *buf, size_t len, uid_t uid, gid_t gid)
{
	static __thread uint32_t seq;
	struct nlmsghdr h = {
		.nlmsg_len = NLMSG_LENGTH(len),
		.nlmsg_type = NLMSG_MIN_TYPE, /* LXD's UEVENT_SEND; any type >= 16 */
		.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK,
		.nlmsg_seq = ++seq,
	};
	struct iovec iov[2] = { { &h, NLMSG_HDRLEN }, { (void *)buf, len } };
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK }; /* nl_pid 0 */
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr m = {
		.msg_name = &kernel, .msg_namelen = sizeof(kernel),
		.msg_iov = iov, .msg_iovlen = 2,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	/* The credentials receivers see: the namespace's root, as for the
	 * kernel's own uevents there (root may send any; the pid must be ours). */
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_CREDENTIALS;
	c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
	struct ucred cred = { getpid(), uid, gid };
	memcpy(CMSG_DATA(c), &cred, sizeof(cred));

	ssize_t n;
	while ((n = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return -1;

	/* The kernel handles a message to it synchronously: the ack is queued
	 * before sendmsg returns.  Wait briefly anyway. */
	for (;;) {
		struct pollfd p = { sock, POLLIN, 0 };
		int r = poll(&p, 1, 1000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			errno = r == 0 ? ETIMEDOUT : errno;
			return -1;
		}
		char ack[512];
		while ((n = recv(sock, ack, sizeof(ack), MSG_DONTWAIT | MSG_TRUNC)) < 0 && errno == EINTR)
			;
		if (n < 0)
			return -1;
		struct nlmsghdr *a = (struct nlmsghdr *)ack;
		if ((size_t)n < NLMSG_HDRLEN + sizeof(struct nlmsgerr) || a->nlmsg_type != NLMSG_ERROR)
			continue; /* not an ack: nothing else is sent to this socket */
		struct nlmsgerr *e = NLMSG_DATA(a);
		if (e->msg.nlmsg_seq != h.nlmsg_seq)
			continue; /* a late ack of an earlier message */
		if (e->error == 0)
			return 0;
		errno = -e->error;
		return -1;
	}
}

/* SIOCGHWTSTAMP looks the name up under the rtnl lock (net/core/dev_ioctl.c,
 * the "unknown or private" branch: rtnl_lock, dev_ifsioc, __dev_get_by_name),
 * and dev_change_net_namespace holds that lock from the "remove" uevent in the
 * old namespace until the device is listed in the new one: a probe made after
 * reading that uevent sees the move finished.  Read-only; ENODEV means no
 * such device, anything else (0, EOPNOTSUPP for a veth) means there is one. */
int ccs_netdev_present(int sock, const char *name)
{
	struct hwtstamp_config cfg;
	struct ifreq req;
	memset(&cfg, 0, sizeof(cfg));
	memset(&req, 0, sizeof(req));
	strncpy(req.ifr_name, name, IFNAMSIZ - 1);
	req.ifr_data = (void *)&cfg;
	if (ioctl(sock, SIOCGHWTSTAMP, &req) == 0)
		return 1;
	if (errno == ENODEV)
		return 0;
	if (errno == EOPNOTSUPP || errno == EINVAL || errno == EPERM)
		return 1;
	return -1;
}

int ccs_netlink_bind_groups(int sock, unsigned int groups)
{
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK, .nl_groups = groups };
	return bind(sock, (struct sockaddr *)&addr, sizeof(addr));
}
