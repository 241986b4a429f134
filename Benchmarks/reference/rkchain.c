/* Upcall benchmark: the floor of running a second request-key behind the
 * host's, with no broker at all.  The host's request-key runs
 *     rkchain DIR KEY UID GID THREAD_KR PROCESS_KR SESSION_KR
 * which only changes to DIR and execs `/sbin/request-key -l create ...`, so
 * the second request-key reads DIR/request-key.conf: the same two execs the
 * broker path has (a small static program, then a second request-key), none
 * of its work (no attribution, no ctrobjd, no join, no fork, no wait).
 * Built static, against musl where musl-gcc is installed, as the broker's
 * helpers are (scripts/build-c-helpers.sh). */
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 8 || chdir(argv[1]) < 0)
		return 1;
	char *args[] = { "/sbin/request-key", "-l", "create", argv[2], argv[3], argv[4],
			 argv[5], argv[6], argv[7], 0 };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", 0 };
	execve(args[0], args, envp);
	return 1;
}
