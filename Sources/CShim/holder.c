/* The namespace holder: container_create's short-lived child.
 *
 * Protocol on the control socket (SOCK_SEQPACKET, one struct ccs_report a message):
 *   holder -> parent  'U'          user namespace unshared; waiting for id maps
 *   parent -> holder  'M'          maps written; go on
 *   holder -> parent  'R'          all namespaces made; the files in /proc/PID/ns may be opened
 *   parent -> holder  'X' or EOF   exit now
 *   holder -> parent  'E' stage errno   a step failed; the holder exits
 */
#include "cshim.h"
#include "child.h"

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static int make_empty_root(void)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -1;
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
		return -1;
	if (chdir("/tmp") < 0)
		return -1;
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return -1;
	if (umount2(".", MNT_DETACH) < 0)
		return -1;
	return chdir("/");
}

static void holder_main(const struct ccs_holder_plan *p, int ctl)
{
	struct ccs_report r;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (p->become_user) {
		if (ccs_raw_become(p->uid, p->gid, 1) < 0) {
			ccs_child_report(ctl, 'E', CCS_STAGE_SETID, errno);
			_exit(1);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a credential change clears it */
	}
	if (p->new_user) {
		if (unshare(CLONE_NEWUSER) < 0) {
			ccs_child_report(ctl, 'E', CCS_STAGE_USERNS, errno);
			_exit(1);
		}
		ccs_child_report(ctl, 'U', 0, 0);
		if (ccs_child_read(ctl, &r) != 1 || r.tag != 'M')
			_exit(1);
		if (ccs_raw_become(0, 0, 0) < 0) {
			ccs_child_report(ctl, 'E', CCS_STAGE_SETID, errno);
			_exit(1);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	}
	if (p->unshare_flags && unshare(p->unshare_flags) < 0) {
		ccs_child_report(ctl, 'E', CCS_STAGE_SETNS, errno);
		_exit(1);
	}
	/* A copied mount namespace must not send its mounts back to the host
	 * when the host's mounts are shared (systemd makes / shared). */
	if ((p->unshare_flags & CLONE_NEWNS) && !p->empty_root &&
	    mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
		ccs_child_report(ctl, 'E', CCS_STAGE_ROOT, errno);
		_exit(1);
	}
	if (p->empty_root && make_empty_root() < 0) {
		ccs_child_report(ctl, 'E', CCS_STAGE_ROOT, errno);
		_exit(1);
	}
	ccs_child_report(ctl, 'R', 0, 0);
	/* Wait for 'X' or for the parent to go away. */
	(void)ccs_child_read(ctl, &r);
	_exit(0);
}

pid_t ccs_holder_start(const struct ccs_holder_plan *plan, int *ctl)
{
	int sv[2];
	pid_t pid = ccs_fork_with_reports(sv);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* It becomes the creator, who may look at it: it holds nothing of ctrobjd's. */
		ccs_close_fds_except(&sv[1], 1);
		holder_main(plan, sv[1]);
		_exit(0);
	}
	close(sv[1]);
	*ctl = sv[0];
	return pid;
}

int ccs_holder_expect(int ctl, char want, int timeout_ms, int *stage)
{
	struct ccs_report r;
	*stage = 0;
	if (ccs_wait_readable(ctl, timeout_ms) < 0)
		return -1;
	int got = ccs_child_read(ctl, &r);
	if (got == 1 && r.tag == want)
		return 0;
	if (got == 1 && r.tag == 'E') {
		*stage = r.stage;
		errno = r.value;
		return -1;
	}
	*stage = CCS_STAGE_SYNC;
	errno = got == 0 ? ECHILD : EPROTO;
	return -1;
}

int ccs_holder_tell(int ctl, char what)
{
	ccs_child_report(ctl, what, 0, 0);
	return 0;
}
