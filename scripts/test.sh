#!/usr/bin/env bash
# Every test: set up and build; the kernel patch under qemu with the C
# conformance programs (kernel-patch/ci.sh); a short run of every fuzz target
# (scripts/fuzz.sh --short); pure cgroup v2 in a qemu guest
# (scripts/cgroup2-guest.sh); then the Swift suites, which also
# build and run the same conformance programs against the emulation. The Swift
# run comes last so that its summary line closes the output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --build-tests
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"

if [ -x kernel-patch/ci.sh ]; then
	bash kernel-patch/ci.sh
fi

# The fuzz targets (Fuzz/, docs/fuzzing.md), a few seconds each from their
# seed corpus: a crash, leak or failed check fails the run.
bash scripts/fuzz.sh --short

# Pure cgroup v2 under delegation, in a qemu guest booting Debian's stock
# kernel (this machine is hybrid): conformance programs, the tour, limits,
# OOM kill, fork bomb. About a minute here; its kernel is cached in .build-guest.
bash scripts/cgroup2-guest.sh

# Global kernel state the suites must leave untouched, checked at the end.
before=$(cat /proc/sys/kernel/core_pattern /proc/sys/kernel/core_pipe_limit /proc/sys/fs/suid_dumpable 2>/dev/null; ls /etc/request-key.d 2>/dev/null || true)

# One test at a time: suites share the machine's cgroup tree and kernel state.
swift test --skip-build --no-parallel

after=$(cat /proc/sys/kernel/core_pattern /proc/sys/kernel/core_pipe_limit /proc/sys/fs/suid_dumpable 2>/dev/null; ls /etc/request-key.d 2>/dev/null || true)
if [ "$before" != "$after" ]; then
	echo "test.sh: the tests left global kernel state changed" >&2
	exit 1
fi
