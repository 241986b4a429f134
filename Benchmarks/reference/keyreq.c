/* Upcall benchmark: one key request, the same program on both sides.
 *
 *   keyreq TYPE DESCRIPTION CALLOUT EXPECT
 *
 * Joins a fresh anonymous session keyring, calls request_key(2) into it,
 * reads the payload and exits 0 if it is EXPECT (2: the request failed,
 * 3: another payload).  On success it prints how long the request_key(2)
 * call itself took, in nanoseconds (CLOCK_MONOTONIC around the call), as
 * one decimal line on stdout: the round trip through the kernel, its
 * upcall and the handler, without starting or entering anything.
 * Raw syscalls, built static.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_READ 11
#define KEY_SPEC_SESSION_KEYRING -3

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 1;
	if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0) {
		fprintf(stderr, "keyreq: join session keyring: %s\n", strerror(errno));
		return 2;
	}
	long long t0 = now_ns();
	long key = syscall(SYS_request_key, argv[1], argv[2], argv[3], KEY_SPEC_SESSION_KEYRING);
	long long t1 = now_ns();
	if (key < 0) {
		fprintf(stderr, "keyreq: request_key %s %s: %s\n", argv[1], argv[2], strerror(errno));
		return 2;
	}
	char buf[256];
	long n = syscall(SYS_keyctl, KEYCTL_READ, key, buf, sizeof(buf) - 1);
	if (n < 0 || n >= (long)sizeof(buf)) {
		fprintf(stderr, "keyreq: read key: %s\n", strerror(errno));
		return 2;
	}
	buf[n] = 0;
	if (strcmp(buf, argv[4]) != 0) {
		fprintf(stderr, "keyreq: payload \"%s\", expected \"%s\"\n", buf, argv[4]);
		return 3;
	}
	printf("%lld\n", t1 - t0);
	return 0;
}
