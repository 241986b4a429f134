/* Upcall benchmark: the process that dumps core.  Built static (it runs in
 * an empty container root too):
 *
 *   cc -O2 -static -o crasher crasher.c
 *   crasher MIB          malloc and touch MIB MiB, then raise(SIGSEGV)
 *   crasher MIB exit     the same, then exit(0) instead (for the breakdown)
 *
 * coredump_filter is set to the kernel default (0x33: anonymous private and
 * shared, ELF headers, private huge pages) so the core holds the buffer.
 * RLIMIT_CORE does not limit a pipe (only 1 refuses it); it is raised to the
 * hard limit anyway.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 1;
	int fd = open("/proc/self/coredump_filter", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "0x33", 4);
		close(fd);
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_max != 1) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_CORE, &rl);
	}
	size_t n = (size_t)mib << 20;
	volatile char *p = malloc(n ? n : 1);
	if (!p)
		return 3;
	long page = sysconf(_SC_PAGESIZE);
	for (size_t i = 0; i < n; i += (size_t)page)
		p[i] = (char)(i / (size_t)page + 1);
	if (argc > 2 && strcmp(argv[2], "exit") == 0)
		return 0;
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
	return 4;
}
