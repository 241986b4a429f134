#!/usr/bin/env bash
# Install what ContainerObjects needs on a fresh Debian 12 root machine, then
# build it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "setup.sh: run as root (it installs Debian packages)" >&2
	exit 1
fi

pkgs=(gcc g++ libc6-dev musl-tools pkg-config util-linux iproute2 busybox-static keyutils libkeyutils-dev libudev-dev crun hyperfine
	# real OCI clients for the OCI hook and runtime suites (Tests/ContainerObjectTests/PodmanSupport.swift):
	# podman with conmon, runc (crun refuses this machine's hybrid cgroups), netavark (podman's network
	# backend; the tests run with --network none), containerd with ctr and the runc v2 shim
	podman conmon runc netavark containerd)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup.sh: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
swift build "$@"
# The per-upcall C helpers, beside ctrobj-upcall (not SwiftPM targets).
bash scripts/build-c-helpers.sh "$(swift build "$@" --show-bin-path)"
