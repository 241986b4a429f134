/* Parent-side syscalls of ctrobj-oci that have no home in CShim: the pty
 * for --console-socket and sending its master, the start gate (exec fifo),
 * a process's start time (to tell a reused pid from the init we made). */
#include "ocichild.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

int oci_openpty(int *master, int *slave)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return -1;
	if (grantpt(m) < 0 || unlockpt(m) < 0) {
		int e = errno;
		close(m);
		errno = e;
		return -1;
	}
	int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		int e = errno;
		close(m);
		errno = e;
		return -1;
	}
	*master = m;
	*slave = s;
	return 0;
}

int oci_send_console(const char *socket_path, int fd, const char *name)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (strlen(socket_path) >= sizeof(a.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(a.sun_path, socket_path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	ssize_t n = ccs_send_with_fds(s, name, strlen(name), &fd, 1);
	int e = errno;
	close(s);
	errno = e;
	return n < 0 ? -1 : 0;
}

int oci_make_fifo(const char *path)
{
	if (mkfifo(path, 0600) < 0)
		return -1;
	return open(path, O_RDWR | O_CLOEXEC);
}

int oci_fifo_release(const char *path)
{
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char b = '0';
	ssize_t n = write(fd, &b, 1);
	int e = errno;
	close(fd);
	errno = e;
	return n == 1 ? 0 : -1;
}

unsigned long long oci_proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* after ") " come fields 3..: state is 3, starttime is 22 */
	int field = 2;
	for (char *q = p + 1; *q; q++) {
		if (*q == ' ') {
			field++;
			if (field == 22)
				return strtoull(q + 1, NULL, 10);
		}
	}
	return 0;
}
