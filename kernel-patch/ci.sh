#!/bin/sh
# CI entry point for the kernel patch: install what build.sh and test.sh
# need (Debian 12, as root), build the patched kernel, boot it, run the
# conformance programs.  Prints how long each step took.
#
# Budget: 15 minutes on 2 cores without KVM.  Measured here: build 3.7 to
# 4.7 min, test under 10 s.  Not measured: apt on a fresh machine, about
# 250 MB to fetch (linux-source-6.1 alone is 140 MB), 1-3 min.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/qemu-guest.sh"
packages="linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev
cpio xz-utils kmod busybox-static qemu-system-x86"

step() {
	name=$1
	shift
	t0=$(date +%s)
	"$@"
	echo "ci.sh: $name took $(( $(date +%s) - t0 ))s" >&2
}

install_packages() {
	# shellcheck disable=SC2086
	guest_apt_install $packages
}

step "apt" install_packages
step "build.sh" "$here/build.sh"
step "test.sh" "$here/test.sh"
