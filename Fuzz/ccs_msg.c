/* Fuzz target ccs_msg: the C reader of ctrobjd's messages that the key
 * helper the kernel runs (helpers/ctrobj-upcall-key.c) uses on ctrobjd's
 * reply, in Sources/CShim/wire.c (included here): ccs_msg_op_is,
 * ccs_msg_get and ccs_msg_join_plan.
 * Input: byte 0 = the number of fds that came (mod 20), byte 1 = the size of
 * the value buffer (1..256, or 4096 when 0), the rest = the message, in a
 * heap block of exactly its size (no NUL after it).
 *   - no read or write outside the message and the buffers (AddressSanitizer);
 *   - ccs_msg_get: 1 with a NUL-terminated value shorter than the buffer,
 *     0, or -1; never more;
 *   - a plan (0) uses only fds that came, at most CCS_MAX_NS namespaces and
 *     CCS_MAX_CGROUPS cgroups, and no exec part. */
#include "../Sources/CShim/wire.c"

#include <stdio.h>

#define FUZZ_CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz check failed: " __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

static int came(int fd, const int *fds, int nfds)
{
	for (int i = 0; i < nfds; i++)
		if (fds[i] == fd)
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int nfds = data[0] % 20;
	size_t vsize = data[1] ? data[1] : 4096;
	size_t len = size - 2;
	char *msg = malloc(len ? len : 1);
	memcpy(msg, data + 2, len);
	char *v = malloc(vsize);

	(void)ccs_msg_op_is(msg, len, "ok");
	(void)ccs_msg_op_is(msg, len, "");
	static const char *keys[] = { "userns", "ns", "pidns", "cgroups", "root", "errno", "message", "", "=" };
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		int r = ccs_msg_get(msg, len, keys[k], v, vsize);
		FUZZ_CHECK(r >= -1 && r <= 1, "ccs_msg_get %s: %d", keys[k], r);
		if (r == 1)
			FUZZ_CHECK(strnlen(v, vsize) < vsize, "value of %s not terminated", keys[k]);
	}

	int fds[20];
	for (int i = 0; i < 20; i++)
		fds[i] = 100 + i;
	struct ccs_join_plan p;
	int pidns_fd = -2;
	if (ccs_msg_join_plan(msg, len, fds, nfds, &p, &pidns_fd) == 0) {
		FUZZ_CHECK(p.userns_fd == -1 || came(p.userns_fd, fds, nfds), "userns fd %d", p.userns_fd);
		FUZZ_CHECK(p.ns_count >= 0 && p.ns_count <= CCS_MAX_NS, "ns_count %d", p.ns_count);
		for (int i = 0; i < p.ns_count; i++)
			FUZZ_CHECK(came(p.ns_fds[i], fds, nfds) && p.ns_types[i] != 0, "ns %d: fd %d type %d", i, p.ns_fds[i], p.ns_types[i]);
		FUZZ_CHECK(p.cgroup_count >= 0 && p.cgroup_count <= CCS_MAX_CGROUPS, "cgroup_count %d", p.cgroup_count);
		for (int i = 0; i < p.cgroup_count; i++)
			FUZZ_CHECK(came(p.cgroup_procs_fds[i], fds, nfds), "cgroup %d: fd %d", i, p.cgroup_procs_fds[i]);
		FUZZ_CHECK(pidns_fd == -1 || came(pidns_fd, fds, nfds), "pidns fd %d", pidns_fd);
		FUZZ_CHECK(p.pidns_mode == 0 && p.path == NULL && p.keep_fd == -1 && p.gate_fd == -1, "exec part set");
	}
	free(v);
	free(msg);
	return 0;
}
