#!/bin/sh
# Build a bzImage of Debian's linux-source-6.1 with the container patch series.
#
#   kernel-patch/build.sh            # -> kernel-patch/.build-kernel/out/bzImage
#
# Steps: extract /usr/src/linux-source-6.1.tar.xz (package linux-source-6.1),
# apply the patches named in kernel-patch/series, configure with
# `make tinyconfig` plus kernel-patch/config.fragment, build bzImage and
# modules, install the modules under out/modules.  The source tree is only
# re-extracted when the tarball, the series or a patch changed, so a second
# run is an incremental build.
#
# Environment: BUILD_DIR (default kernel-patch/.build-kernel),
# LINUX_SOURCE_TARBALL, JOBS (default: nproc + 1), EXTRA_CONFIG (more config
# fragments, space-separated paths; kernel-patch/debug.fragment adds SMP,
# lockdep, sleep-in-atomic checks and kmemleak).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/.build-kernel}
tarball=${LINUX_SOURCE_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
jobs=${JOBS:-$(( $(nproc) + 1 ))}
extra_config=${EXTRA_CONFIG:-}	# more fragments, e.g. kernel-patch/debug.fragment
src=$build/linux
obj=$build/obj
out=$build/out

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

missing=
for tool in gcc make flex bison bc perl xz cpio depmod; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -f /usr/include/libelf.h ] || missing="$missing libelf-dev"
[ -f /usr/include/openssl/ssl.h ] || missing="$missing libssl-dev"
[ -f "$tarball" ] || missing="$missing linux-source-6.1"
if [ -n "$missing" ]; then
	die "missing:$missing
  apt-get install -y linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev cpio xz-utils kmod"
fi

# The series is made against this package version; a newer point release
# usually still applies, so only warn.
base_version=6.1.192-2
have_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)
[ "$have_version" = "$base_version" ] ||
	say "warning: linux-source-6.1 is $have_version, the series is made against $base_version"

# ---- source tree: tarball + series ---------------------------------------
stamp=$( (ls -l --time-style=+%s "$tarball"; cat "$here/series";
	  for p in $(grep -v '^#' "$here/series"); do cat "$here/patches/$p"; done) |
	 sha256sum | cut -c1-16)
if [ ! -f "$src/.container-patch-stamp" ] ||
   [ "$(cat "$src/.container-patch-stamp")" != "$stamp" ]; then
	say "extracting $tarball"
	rm -rf "$src" "$obj"
	mkdir -p "$build/extract"
	tar -C "$build/extract" -xf "$tarball"
	mv "$build/extract/linux-source-6.1" "$src"
	rmdir "$build/extract"
	for p in $(grep -v '^#' "$here/series"); do
		say "applying $p"
		patch -d "$src" -p1 --quiet --forward < "$here/patches/$p" ||
			die "$p does not apply"
	done
	echo "$stamp" > "$src/.container-patch-stamp"
fi

# ---- configuration: tinyconfig + fragment ---------------------------------
mkdir -p "$obj" "$out"
make -s -C "$src" O="$obj" ARCH=x86_64 tinyconfig >/dev/null
# shellcheck disable=SC2086
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" \
	"$here/config.fragment" $extra_config >/dev/null
make -s -C "$src" O="$obj" ARCH=x86_64 olddefconfig >/dev/null
bad=
for fragment in "$here/config.fragment" $extra_config; do
	while read -r line; do
		case "$line" in
		CONFIG_*) grep -qx "$line" "$obj/.config" || bad="$bad $line" ;;
		esac
	done < "$fragment"
done
[ -z "$bad" ] || die "config fragment lines lost by olddefconfig:$bad"

# ---- build -----------------------------------------------------------------
say "building with $jobs jobs"
start=$(date +%s)
make -s -C "$src" O="$obj" ARCH=x86_64 -j"$jobs" bzImage modules
rm -rf "$out/modules"
make -s -C "$src" O="$obj" ARCH=x86_64 INSTALL_MOD_PATH="$out/modules" \
	modules_install >/dev/null
cp "$obj/arch/x86/boot/bzImage" "$out/bzImage"
make -s -C "$src" O="$obj" ARCH=x86_64 kernelrelease > "$out/kernelrelease"
say "built $(cat "$out/kernelrelease") in $(( $(date +%s) - start ))s: $out/bzImage"
