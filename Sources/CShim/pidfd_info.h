/* struct pidfd_info and PIDFD_GET_INFO (6.13+; the exit code 6.15, the
 * coredump fields 6.16, the signal 6.19): Debian 12's headers have none of
 * it, so the layout is spelled out here, once. The kernel takes any size it
 * knows (the size is part of the ioctl number). */
#ifndef CCS_PIDFD_INFO_H
#define CCS_PIDFD_INFO_H

#include <stdint.h>
#include <sys/ioctl.h>

struct ccs_pidfd_info {
	uint64_t mask;
	uint64_t cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
	uint32_t coredump_mask;
	uint32_t coredump_signal;
	uint64_t supported_mask;
};

#define CCS_PIDFD_GET_INFO _IOWR(0xFF, 11, struct ccs_pidfd_info)
#define CCS_PIDFD_INFO_PID (1ULL << 0)
#define CCS_PIDFD_INFO_CREDS (1ULL << 1)
#define CCS_PIDFD_INFO_EXIT (1ULL << 3)
#define CCS_PIDFD_INFO_COREDUMP (1ULL << 4)
#define CCS_PIDFD_INFO_COREDUMP_SIGNAL (1ULL << 6)

#endif
