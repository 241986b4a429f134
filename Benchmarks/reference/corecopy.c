/* Upcall benchmark: the plain pipe helper of the core-dump reference.
 *
 *   core_pattern = |<work>/corecopy DIR %p
 *
 * Copies the core from stdin to DIR/core.PID (64 KiB read/write, as the
 * broker's delivery does) and exits.  Built static.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char buf[1 << 16];
	char path[4096];
	if (argc < 3)
		return 2;
	snprintf(path, sizeof(path), "%s/core.%s", argv[1], argv[2]);
	int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return 1;
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return 1;
			off += w;
		}
	}
	return close(out) < 0;
}
