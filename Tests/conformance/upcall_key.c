/*
 * A key request from inside a container reaches the request-key helper
 * with the container named (CONTAINER_NAME/CONTAINER_ID in its environment).
 *
 * This program is its own helper: invoked as /sbin/request-key it
 * instantiates the key with "name=<CONTAINER_NAME> id=<CONTAINER_ID>", which
 * the requester inside the container reads back.
 *
 * Kernel: the test links /sbin/request-key to itself when there is none
 * (the qemu guest) and removes the link afterwards.  Emulation
 * (CONFORMANCE_UPCALLS=1): the container's request-key handler must be this
 * program.
 */
#include "conformance.h"
#include <libgen.h>
#include <linux/keyctl.h>
#include <sys/syscall.h>
#include <container.h>

#define REQUEST_KEY_PATH "/sbin/request-key"

static int made_link;

static int helper(int argc, char **argv)
{
	const char *name = getenv("CONTAINER_NAME");
	const char *id = getenv("CONTAINER_ID");
	char payload[128];
	long key;

	/* request-key create <key> <uid> <gid> <thread> <process> <session> */
	if (argc < 3 || strcmp(argv[1], "create") != 0)
		return 2;
	key = strtol(argv[2], NULL, 10);
	if (syscall(SYS_keyctl, KEYCTL_ASSUME_AUTHORITY, key) < 0)
		return 3;
	snprintf(payload, sizeof(payload), "name=%s id=%s", name ? name : "",
		 id ? id : "");
	if (syscall(SYS_keyctl, KEYCTL_INSTANTIATE, key, payload,
		    strlen(payload), 0) < 0)
		return 4;
	return 0;
}

static void remove_link(void)
{
	if (made_link)
		unlink(REQUEST_KEY_PATH);
}

int main(int argc, char **argv)
{
	char name[32], exe[256], target[256], desc[64], buf[256], want[64];
	int fd, status = 0, res[2];
	ssize_t n;
	pid_t pid;

	if (strcmp(basename(argv[0]), "request-key") == 0)
		return helper(argc, argv);

	conf_init("upcall_key");
	conf_require_upcalls();
	conf_require_root();

	if (conf_impl_is("kernel")) {
		conf_self_exe(exe, sizeof(exe));
		n = readlink(REQUEST_KEY_PATH, target, sizeof(target) - 1);
		if (n < 0 && errno == ENOENT) {
			mkdir("/sbin", 0755);
			CHECK(symlink(exe, REQUEST_KEY_PATH) == 0,
			      "symlink %s: %s", REQUEST_KEY_PATH, strerror(errno));
			made_link = 1;
			atexit(remove_link);
		} else {
			if (n < 0 || (target[n] = '\0', strcmp(target, exe) != 0))
				conf_skip("%s exists and is not this program",
					  REQUEST_KEY_PATH);
		}
	}

	CHECK(pipe2(res, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	conf_name(name, sizeof(name), "key");
	snprintf(desc, sizeof(desc), "conformance:%d", (int)getpid());
	fd = conf_create(name, CONTAINER_KILL_ON_CLOSE | CONTAINER_NEW_UTS_NS);

	pid = fork_into_container(fd);
	if (pid == 0) {
		char got[200];
		long key, len;

		conf_child_init();
		close(fd);
		close(res[0]);
		key = syscall(SYS_request_key, "user", desc, "conformance", 0);
		if (key < 0) {
			len = snprintf(got, sizeof(got), "request_key: %s",
				       strerror(errno));
		} else {
			len = syscall(SYS_keyctl, KEYCTL_READ, key, got,
				      sizeof(got) - 1);
			if (len < 0)
				len = snprintf(got, sizeof(got), "keyctl_read: %s",
					       strerror(errno));
		}
		if (len > (long)sizeof(got) - 1)
			len = sizeof(got) - 1;
		if (write(res[1], got, (size_t)len) < 0)
			_exit(1);
		_exit(0);
	}
	CHECK(pid > 0, "fork_into_container: %s", strerror(errno));
	close(res[1]);
	n = conf_read_timeout(res[0], buf, sizeof(buf) - 1, 15000);
	buf[n > 0 ? n : 0] = '\0';
	CHECK(conf_wait(pid, &status, 10000) == 0, "init did not exit");
	CHECK(n > 0, "no answer from inside the container (%s)",
	      conf_status_str(status));

	snprintf(want, sizeof(want), "name=%s ", name);
	CHECK(strstr(buf, want), "key payload \"%s\" does not name \"%s\"", buf,
	      name);
	if (conf_impl_is("kernel"))
		CHECK(strstr(buf, " id=") && buf[strlen(buf) - 1] != '=',
		      "no CONTAINER_ID in \"%s\"", buf);
	close(res[0]);
	close(fd);
	conf_pass();
}
