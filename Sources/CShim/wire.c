/* ContainerWire's Message encoding (Message.swift), for the C helpers the
 * kernel runs: an op line, then "key=value\n" lines, values with "%" as
 * "%25" and "\n" as "%0A". */
#include "cshim.h"

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
