/* Compiling a runtime-spec seccomp profile to BPF with libseccomp, in the
 * parent before fork: the child only installs the program. */
#include "ocichild.h"

#include <errno.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void *oci_sc_new(uint32_t default_action)
{
	scmp_filter_ctx ctx = seccomp_init(default_action);
	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	/* Rules for arches other than the native one are added per arch. */
	return ctx;
}

int oci_sc_add_arch(void *ctx, const char *name)
{
	uint32_t arch = seccomp_arch_resolve_name(name);
	if (arch == 0) {
		errno = EINVAL;
		return -1;
	}
	int rc = seccomp_arch_add(ctx, arch);
	if (rc < 0 && rc != -EEXIST) {
		errno = -rc;
		return -1;
	}
	return 0;
}

int oci_sc_add_rule(void *ctx, uint32_t action, const char *syscall, const struct oci_sc_arg *args, unsigned int nargs)
{
	int nr = seccomp_syscall_resolve_name(syscall);
	if (nr == __NR_SCMP_ERROR)
		return 1;
	struct scmp_arg_cmp cmp[6];
	if (nargs > 6) {
		errno = E2BIG;
		return -1;
	}
	for (unsigned i = 0; i < nargs; i++) {
		cmp[i].arg = args[i].index;
		cmp[i].op = (enum scmp_compare)args[i].op;
		cmp[i].datum_a = args[i].value;
		cmp[i].datum_b = args[i].value_two;
		if (args[i].op == SCMP_CMP_MASKED_EQ) {
			cmp[i].datum_a = args[i].value;
			cmp[i].datum_b = args[i].value_two;
		}
	}
	int rc = seccomp_rule_add_array(ctx, action, nr, nargs, cmp);
	if (rc == -EACCES || rc == -EOPNOTSUPP)
		return 1; /* same as the default action, or not on this arch */
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return 0;
}

int oci_sc_export(void *ctx, void **prog, unsigned short *len)
{
	int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = seccomp_export_bpf(ctx, fd);
	if (rc < 0) {
		close(fd);
		errno = -rc;
		return -1;
	}
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % 8 != 0 || size / 8 > 65535) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	void *buf = malloc((size_t)size);
	if (!buf) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	ssize_t got = pread(fd, buf, (size_t)size, 0);
	close(fd);
	if (got != size) {
		free(buf);
		errno = EIO;
		return -1;
	}
	*prog = buf;
	*len = (unsigned short)(size / 8);
	return 0;
}

void oci_sc_free(void *ctx)
{
	seccomp_release(ctx);
}

unsigned int oci_sc_version(void)
{
	const struct scmp_version *v = seccomp_version();
	return v ? (v->major << 16) | (v->minor << 8) | v->micro : 0;
}
