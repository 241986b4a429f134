/* The pin namespace: where ctrobjd keeps its containers' namespaces alive.
 *
 * A namespace without a process lives as long as a bind mount of its nsfs
 * file does. Made in the host's mount namespace, those mounts (about five
 * per container) grow the host's mount table, which every mount-namespace
 * creation on the host copies. So they are made in a mount namespace of
 * ctrobjd's own instead, the "pin namespace":
 *
 *   - private (no propagation either way), and its only mount is a bind of
 *     <state>/containers, pivoted to be its root: it holds no copy of any
 *     host mount (a host umount is never kept busy by it) and no pin of its
 *     own is ever copied into a namespace made later;
 *   - pinned once, by a bind mount of its nsfs file on the host at
 *     <state>/containers/mntns: the one entry ctrobjd adds to the host's table, which
 *     keeps it (and so every pin) alive across kill -9 of ctrobjd;
 *   - entered by one dedicated pthread (this file), never by ctrobjd's other
 *     threads: a thread may join a mount namespace once it has its own
 *     fs_struct (unshare(CLONE_FS)), which setns(CLONE_NEWNS) requires.
 *
 * The pthread runs only C. Callers (the loop thread, the spare worker) hand
 * it one job at a time under a mutex and wait for the answer. Paths are
 * relative to the pin namespace's root, i.e. to <state>/containers.
 *
 * Everything else (opening or stat'ing a pin) needs no job: the O_PATH
 * descriptor of the pin namespace's root that ccs_pinner_start returns
 * walks that namespace's mounts for any thread (openat/fstatat).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "cshim.h"

#define PIN_NSFS_MAGIC 0x6e736673L
#define PIN_NS_GET_MNTNS_ID _IOR(0xb7, 0x5, uint64_t)

/* The kernel refuses to mount a mount namespace's file inside a mount
 * namespace that is not older than it (mnt_ns_loop: the mounting task's
 * namespace id must be lower), lest a namespace pin itself. Since 6.18
 * namespace ids come from per-CPU batches of 4096 (gen_cookie_next), so a
 * namespace made later on another CPU can have a LOWER id than the pin
 * namespace, and pinning it fails with ELOOP. Right after making the pin
 * namespace, every CPU is therefore made to hand out one id above it:
 * mount namespaces are made and dropped on each CPU in turn until one gets
 * a higher id (at most one batch per CPU; a CPU that comes online later
 * starts a fresh batch, above). Done once, when the pin namespace is made. */
static int mntns_id_of_self(uint64_t *id)
{
	int fd = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = ioctl(fd, PIN_NS_GET_MNTNS_ID, id);
	close(fd);
	return rc;
}

static int pinner_age(int pin_ns_fd)
{
	uint64_t pin_id = 0, id = 0;
	if (ioctl(pin_ns_fd, PIN_NS_GET_MNTNS_ID, &pin_id) < 0)
		return 0; /* before 6.12: ids were one global sequence */
	cpu_set_t all, one;
	if (sched_getaffinity(0, sizeof(all), &all) < 0)
		return -1;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &all))
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one) < 0)
			continue;
		for (int i = 0; i < 2 * 4096 + 2; i++) {
			if (unshare(CLONE_NEWNS) < 0 || mntns_id_of_self(&id) < 0)
				break;
			if (id > pin_id)
				break;
		}
	}
	sched_setaffinity(0, sizeof(all), &all);
	return setns(pin_ns_fd, CLONE_NEWNS);
}

enum { JOB_NONE, JOB_BIND, JOB_UMOUNT, JOB_QUIT };

struct ccs_pinner {
	pthread_t thread;
	pthread_mutex_t callers; /* one job at a time */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int job;
	int done;
	int fd;
	const char *path;
	int result;
	int err;
	/* set up by the thread */
	const char *pin_path;
	const char *root_dir;
	int view;       /* O_PATH "/" of the pin namespace */
	pid_t tid;      /* the pinner thread (its /proc/self/task/TID/mountinfo) */
	int new_ns_fd;  /* nsfs fd of a namespace just made (to be pinned), else -1 */
};

/* Join the pinned namespace, or make a fresh one rooted at root_dir. */
static int pinner_enter(struct ccs_pinner *p)
{
	if (unshare(CLONE_FS) < 0)
		return -1;
	struct stat want;
	if (stat(p->root_dir, &want) < 0)
		return -1;
	int pinned = open(p->pin_path, O_RDONLY | O_CLOEXEC);
	struct statfs sf;
	if (pinned >= 0 && fstatfs(pinned, &sf) == 0 && sf.f_type == PIN_NSFS_MAGIC) {
		int rc = setns(pinned, CLONE_NEWNS);
		int e = errno;
		close(pinned);
		if (rc < 0) {
			errno = e;
			return -1;
		}
		struct stat got;
		if (stat("/", &got) < 0)
			return -1;
		if (got.st_dev != want.st_dev || got.st_ino != want.st_ino) {
			/* the pinned namespace is rooted at a directory that is no
			 * longer root_dir (removed and made anew): useless */
			errno = ESTALE;
			return -1;
		}
	} else {
		if (pinned >= 0)
			close(pinned);
		if (unshare(CLONE_NEWNS) < 0)
			return -1;
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			return -1;
		p->new_ns_fd = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
		if (p->new_ns_fd < 0)
			return -1;
		if (pinner_age(p->new_ns_fd) < 0)
			return -1;
		if (mount(p->root_dir, p->root_dir, NULL, MS_BIND, NULL) < 0)
			return -1;
		if (chdir(p->root_dir) < 0)
			return -1;
		/* new root and old root on one directory, then drop the old
		 * (every copied host mount goes with it) */
		if (syscall(SYS_pivot_root, ".", ".") < 0)
			return -1;
		if (umount2(".", MNT_DETACH) < 0)
			return -1;
	}
	if (chdir("/") < 0)
		return -1;
	p->view = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	return p->view < 0 ? -1 : 0;
}

static void *pinner_main(void *arg)
{
	struct ccs_pinner *p = arg;
	p->tid = (pid_t)syscall(SYS_gettid);
	int rc = pinner_enter(p);
	int e = errno;
	pthread_mutex_lock(&p->lock);
	p->result = rc;
	p->err = e;
	p->done = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (rc < 0)
		return NULL;
	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->job == JOB_NONE)
			pthread_cond_wait(&p->cond, &p->lock);
		int job = p->job;
		pthread_mutex_unlock(&p->lock);
		if (job == JOB_QUIT)
			return NULL;
		rc = -1;
		e = 0;
		if (job == JOB_BIND) {
			int tree = ccs_open_tree(p->fd, "", CCS_OPEN_TREE_CLONE | CCS_AT_EMPTY_PATH);
			if (tree >= 0) {
				rc = ccs_move_mount_to(tree, AT_FDCWD, p->path);
				e = errno;
				close(tree);
			} else {
				e = errno;
			}
		} else if (job == JOB_UMOUNT) {
			rc = umount2(p->path, MNT_DETACH | UMOUNT_NOFOLLOW);
			e = errno;
		}
		pthread_mutex_lock(&p->lock);
		p->result = rc;
		p->err = e;
		p->job = JOB_NONE;
		p->done = 1;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
}

struct ccs_pinner *ccs_pinner_start(const char *pin_path, const char *root_dir, int *view_fd, int *new_ns_fd)
{
	struct ccs_pinner *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->pin_path = strdup(pin_path);
	p->root_dir = strdup(root_dir);
	p->view = -1;
	p->new_ns_fd = -1;
	pthread_mutex_init(&p->callers, NULL);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	int rc = pthread_create(&p->thread, NULL, pinner_main, p);
	if (rc != 0) {
		errno = rc;
		free((void *)p->pin_path);
		free((void *)p->root_dir);
		free(p);
		return NULL;
	}
	pthread_mutex_lock(&p->lock);
	while (!p->done)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (p->result < 0) {
		int e = p->err;
		pthread_join(p->thread, NULL);
		if (p->view >= 0)
			close(p->view);
		if (p->new_ns_fd >= 0)
			close(p->new_ns_fd);
		free((void *)p->pin_path);
		free((void *)p->root_dir);
		free(p);
		errno = e;
		return NULL;
	}
	*view_fd = p->view;
	*new_ns_fd = p->new_ns_fd;
	return p;
}

static int pinner_call(struct ccs_pinner *p, int job, int fd, const char *path)
{
	pthread_mutex_lock(&p->callers);
	pthread_mutex_lock(&p->lock);
	p->fd = fd;
	p->path = path;
	p->done = 0;
	p->job = job;
	pthread_cond_broadcast(&p->cond);
	while (!p->done)
		pthread_cond_wait(&p->cond, &p->lock);
	int rc = p->result, e = p->err;
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_unlock(&p->callers);
	errno = e;
	return rc;
}

pid_t ccs_pinner_tid(struct ccs_pinner *p)
{
	return p->tid;
}

int ccs_pinner_bind(struct ccs_pinner *p, int nsfd, const char *relpath)
{
	return pinner_call(p, JOB_BIND, nsfd, relpath);
}

int ccs_pinner_umount(struct ccs_pinner *p, const char *relpath)
{
	return pinner_call(p, JOB_UMOUNT, -1, relpath);
}

void ccs_pinner_stop(struct ccs_pinner *p)
{
	pthread_mutex_lock(&p->callers);
	pthread_mutex_lock(&p->lock);
	p->job = JOB_QUIT;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_mutex_unlock(&p->callers);
	free((void *)p->pin_path);
	free((void *)p->root_dir);
	free(p);
}

long ccs_statfs_type_at(int dirfd, const char *path)
{
	int fd = openat(dirfd, path, O_PATH | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	struct statfs sf;
	int rc = fstatfs(fd, &sf);
	int e = errno;
	close(fd);
	if (rc < 0) {
		errno = e;
		return -1;
	}
	return (long)sf.f_type;
}
