/* ContainerWire's Message encoding (Message.swift), for the C helpers the
 * kernel runs: an op line, then "key=value\n" lines, values with "%" as
 * "%25" and "\n" as "%0A". */
#include "cshim.h"

#include <sched.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

int ccs_msg_add(char *buf, size_t size, size_t *len, const char *key, const char *value)
{
	size_t n = *len;
	size_t klen = strlen(key);
	if (n + klen + 2 >= size)
		return -1;
	memcpy(buf + n, key, klen);
	n += klen;
	buf[n++] = '=';
	for (const char *p = value; *p; p++) {
		const char *esc = *p == '%' ? "%25" : *p == '\n' ? "%0A" : NULL;
		size_t k = esc ? 3 : 1;
		if (n + k + 1 >= size)
			return -1;
		if (esc)
			memcpy(buf + n, esc, 3);
		else
			buf[n] = *p;
		n += k;
	}
	buf[n++] = '\n';
	*len = n;
	return 0;
}

int ccs_msg_op_is(const char *msg, size_t len, const char *op)
{
	size_t k = strlen(op);
	return len > k && memcmp(msg, op, k) == 0 && msg[k] == '\n';
}

int ccs_msg_get(const char *msg, size_t len, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);
	const char *end = msg + len;
	const char *line = memchr(msg, '\n', len);
	while (line && line + 1 < end) {
		line++;
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			eol = end;
		if ((size_t)(eol - line) > klen && memcmp(line, key, klen) == 0 && line[klen] == '=') {
			size_t n = 0;
			for (const char *p = line + klen + 1; p < eol; p++) {
				char c = *p;
				if (c == '%' && eol - p >= 3 && p[1] == '2' && p[2] == '5') {
					p += 2;
				} else if (c == '%' && eol - p >= 3 && p[1] == '0' && p[2] == 'A') {
					c = '\n';
					p += 2;
				}
				if (n + 1 >= size)
					return -1;
				out[n++] = c;
			}
			out[n] = 0;
			return 1;
		}
		line = eol < end ? eol : NULL;
	}
	return 0;
}

static int ns_flag(const char *name, size_t n)
{
	static const struct { const char *name; int flag; } kinds[] = {
		{ "user", CLONE_NEWUSER }, { "mnt", CLONE_NEWNS }, { "uts", CLONE_NEWUTS }, { "ipc", CLONE_NEWIPC },
		{ "net", CLONE_NEWNET }, { "cgroup", CLONE_NEWCGROUP }, { "pid", CLONE_NEWPID }, { "time", CLONE_NEWTIME },
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strlen(kinds[i].name) == n && memcmp(kinds[i].name, name, n) == 0)
			return kinds[i].flag;
	return 0;
}

/* An fd index of the answer, or -1 when it is not one. */
static int fd_index(const char *s, char **end, int nfds)
{
	long v = strtol(s, end, 10);
	return *end != s && v >= 0 && v < nfds ? (int)v : -1;
}

int ccs_msg_join_plan(const char *msg, size_t len, const int *fds, int nfds, struct ccs_join_plan *p, int *pidns_fd)
{
	char v[512], *end;
	memset(p, 0, sizeof(*p));
	p->userns_fd = -1;
	p->pidns_fd = -1;
	p->keep_fd = -1;
	p->gate_fd = -1;
	p->stdio[0] = p->stdio[1] = p->stdio[2] = -1;
	p->chdir_root = 1;
	*pidns_fd = -1;
	if (ccs_msg_get(msg, len, "userns", v, sizeof(v)) == 1 && strcmp(v, "-1") != 0) {
		int i = fd_index(v, &end, nfds);
		if (i < 0)
			return -1;
		p->userns_fd = fds[i];
	}
	if (ccs_msg_get(msg, len, "ns", v, sizeof(v)) < 0)
		return -1;
	for (char *item = v; *item; ) {       /* kind:index,kind:index */
		char *colon = strchr(item, ':');
		if (!colon || p->ns_count >= CCS_MAX_NS)
			return -1;
		int flag = ns_flag(item, (size_t)(colon - item));
		int i = fd_index(colon + 1, &end, nfds);
		if (!flag || i < 0 || (*end && *end != ','))
			return -1;
		p->ns_fds[p->ns_count] = fds[i];
		p->ns_types[p->ns_count++] = flag;
		item = *end ? end + 1 : end;
	}
	if (ccs_msg_get(msg, len, "pidns", v, sizeof(v)) == 1 && strcmp(v, "none") != 0) {
		int i = fd_index(v, &end, nfds);
		if (i < 0 || *end)
			return -1;   /* "new" is for a container's init, never for a key */
		*pidns_fd = fds[i];
	}
	if (ccs_msg_get(msg, len, "cgroups", v, sizeof(v)) < 0)
		return -1;
	for (char *item = v; *item; ) {
		int i = fd_index(item, &end, nfds);
		if (i < 0 || p->cgroup_count >= CCS_MAX_CGROUPS || (*end && *end != ','))
			return -1;
		p->cgroup_procs_fds[p->cgroup_count++] = fds[i];
		item = *end ? end + 1 : end;
	}
	if (ccs_msg_get(msg, len, "cgroupdir", v, sizeof(v)) == 1 && v[0]) {
		int i = fd_index(v, &end, nfds);
		if (i < 0 || *end)
			return -1;
		p->into_cgroup = 1;
		p->cgroup_dir_fd = fds[i];
	}
	p->become_root = ccs_msg_get(msg, len, "root", v, sizeof(v)) == 1 && strcmp(v, "1") == 0;
	if (ccs_msg_get(msg, len, "capbnd", v, sizeof(v)) == 1 && v[0]) {
		char *end = NULL;
		errno = 0;
		unsigned long long b = strtoull(v, &end, 16);
		if (errno || !end || *end || v[0] == '-' || v[0] == '+' || v[0] == ' ')
			return -1;
		p->limit_privileges = 1;
		p->cap_bounding = (uint64_t)b;
		p->no_new_privs = ccs_msg_get(msg, len, "nnp", v, sizeof(v)) == 1 && strcmp(v, "1") == 0;
	}
	return 0;
}

