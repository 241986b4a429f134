/*
 * container_socket() makes a socket in the container's network namespace:
 * an RTM_GETLINK dump through it lists only "lo", and the socket's netns
 * (SIOCGSKNS) is not the caller's.
 */
#include "conformance.h"
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <container.h>

/* Dump links on a NETLINK_ROUTE socket; fills names, returns the count. */
static int dump_links(int sk, char names[][IF_NAMESIZE], int max)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifm;
	} req;
	static char buf[32768];
	int count = 0;

	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifm));
	req.nh.nlmsg_type = RTM_GETLINK;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.ifm.ifi_family = AF_UNSPEC;
	if (send(sk, &req, req.nh.nlmsg_len, 0) < 0)
		conf_fail("send RTM_GETLINK: %s", strerror(errno));

	for (;;) {
		ssize_t len = recv(sk, buf, sizeof(buf), 0);
		struct nlmsghdr *nh;

		if (len < 0 && errno == EINTR)
			continue;
		if (len <= 0)
			conf_fail("recv RTM_GETLINK: %s", strerror(errno));
		for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)len);
		     nh = NLMSG_NEXT(nh, len)) {
			struct ifinfomsg *ifm;
			struct rtattr *rta;
			int rlen;

			if (nh->nlmsg_type == NLMSG_DONE)
				return count;
			if (nh->nlmsg_type == NLMSG_ERROR)
				conf_fail("RTM_GETLINK: netlink error");
			if (nh->nlmsg_type != RTM_NEWLINK)
				continue;
			ifm = NLMSG_DATA(nh);
			rlen = (int)IFLA_PAYLOAD(nh);
			for (rta = IFLA_RTA(ifm); RTA_OK(rta, rlen);
			     rta = RTA_NEXT(rta, rlen)) {
				if (rta->rta_type != IFLA_IFNAME)
					continue;
				if (count < max)
					snprintf(names[count], IF_NAMESIZE, "%s",
						 (char *)RTA_DATA(rta));
				count++;
			}
		}
	}
}

int main(void)
{
	char name[32], names[16][IF_NAMESIZE];
	struct stat self_ns, sock_ns;
	int fd, sk, nsfd, n, i;

	conf_init("netns_lo");
	conf_require_root();

	conf_name(name, sizeof(name), "netns");
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_NET_NS);

	sk = container_socket(fd, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC,
			      NETLINK_ROUTE);
	CHECK(sk >= 0, "container_socket(AF_NETLINK): %s", strerror(errno));

	n = dump_links(sk, names, 16);
	for (i = 0; i < n && i < 16; i++)
		CHECK(strcmp(names[i], "lo") == 0,
		      "container sees interface \"%s\" (%d interfaces)",
		      names[i], n);
	CHECK(n == 1, "container sees %d interfaces, expected only lo", n);

	/* The socket's namespace is a new one, not the caller's. */
	nsfd = ioctl(sk, SIOCGSKNS);
	if (nsfd >= 0) {
		CHECK(fstat(nsfd, &sock_ns) == 0, "fstat netns: %s",
		      strerror(errno));
		CHECK(stat("/proc/self/ns/net", &self_ns) == 0,
		      "stat /proc/self/ns/net: %s", strerror(errno));
		CHECK(sock_ns.st_ino != self_ns.st_ino,
		      "container_socket's netns is the caller's");
		close(nsfd);
	}

	close(sk);
	close(fd);
	conf_pass();
}
