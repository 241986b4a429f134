/* Fuzz target core_signal_in: the reader of the signal in a core's first
 * NT_PRSTATUS note, core_signal_in() in Sources/CShim/coresock.c, which the
 * core server runs on the first 64 KiB of every core a crashing process
 * streams to it (core_pattern socket mode) or that was spooled (a file).
 * That file is included here, so the static reader is called as it is.
 *   - no read outside the bytes it was given (AddressSanitizer; the input
 *     sits in a heap block of exactly its size);
 *   - a result is 0 or a signal 1..64;
 *   - "need more" (-1) asks for more than it has and no more than the 64 KiB
 *     ccs_core_signal_peek can hold: anything else would make the peek loop
 *     spin or wait for bytes it can never see;
 *   - the pread path (a spooled core in a file) gives the same answer on the
 *     same bytes: ccs_core_signal_peek on a memfd. */
#include "../Sources/CShim/coresock.c"

#include <sys/mman.h>

#define FUZZ_CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz check failed: " __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		size = 65536; /* the peek buffer: the reader never sees more */
	unsigned char *b = malloc(size ? size : 1);
	memcpy(b, data, size);
	size_t want = 0;
	int sig = core_signal_in(b, size, &want);
	FUZZ_CHECK(sig >= -1 && sig <= 64, "result %d", sig);
	if (sig < 0)
		FUZZ_CHECK(want > size && want <= 65536, "asks for %zu bytes with %zu in hand", want, size);
	free(b);

	static int memfd = -1;
	if (memfd < 0)
		memfd = memfd_create("core", MFD_CLOEXEC);
	FUZZ_CHECK(memfd >= 0, "memfd_create: %s", strerror(errno));
	FUZZ_CHECK(ftruncate(memfd, 0) == 0 && pwrite(memfd, data, size, 0) == (ssize_t)size, "memfd write");
	int from_file = ccs_core_signal_peek(memfd, 0);
	FUZZ_CHECK(from_file == (sig < 0 ? 0 : sig), "file gives %d, buffer %d", from_file, sig);
	return 0;
}
