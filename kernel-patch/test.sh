#!/bin/sh
# Run the conformance programs (Tests/conformance) on the patched kernel.
#
#   kernel-patch/test.sh        # after kernel-patch/build.sh
#
# Builds every Tests/conformance/*.c statically against
# Sources/ContainerABI/include/container.h and the syscall shim in
# kernel-patch/shim, packs them with busybox-static and the kernel's modules
# into an initramfs, boots qemu-system-x86_64 (TCG; no KVM needed), and reads
# one result line per program from the serial console.
#
# Exits 0 only if every program printed PASS.  A FAIL, a SKIP (nothing may
# skip on the patched kernel; ALLOW_SKIP=1 relaxes that), a missing result,
# a kernel BUG/WARNING/Oops/panic, or a guest that does not finish within
# QEMU_TIMEOUT seconds (default 300) fails the run.
#
# A container left in /proc/containers afterwards, or a kmemleak report
# (kernels built with debug.fragment), fails it too.
#
# Environment: BUILD_DIR, KERNEL_IMAGE, MODULES_DIR, QEMU_TIMEOUT,
# ALLOW_SKIP, CC, BUSYBOX, REPEAT (runs of each program, default 1),
# QEMU_SMP (guest CPUs, default 1).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${BUILD_DIR:-$here/.build-kernel}
kernel=${KERNEL_IMAGE:-$build/out/bzImage}
modules=${MODULES_DIR:-$build/out/modules}
qemu_timeout=${QEMU_TIMEOUT:-300}
repeat=${REPEAT:-1}	# run every program this many times
smp=${QEMU_SMP:-1}
cc=${CC:-gcc}
stage=$build/initramfs
log=$build/test.log

. "$repo/scripts/qemu-guest.sh"

say() { printf 'test.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

[ -f "$kernel" ] || die "no kernel at $kernel: run kernel-patch/build.sh first"
busybox=${BUSYBOX:-/bin/busybox}	# busybox-static installs it there
[ -x "$busybox" ] || die "busybox-static is not installed"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86 is not installed"

# ---- one ABI: the patch's uapi header and the emulation's header agree -------
uapi=$(sed -n 's/^+#define \(CONTAINER_[A-Z_]*\)[[:space:]]*\(0x[0-9a-fA-F]*\|[0-9][0-9]*\).*/\1 \2/p' \
	"$here"/patches/*container-Implement-containers*.patch | sort)
abi=$(sed -n 's/^#define \(CONTAINER_[A-Z_]*\)[[:space:]]*\(0x[0-9a-fA-F]*\|[0-9][0-9]*\)u\{0,1\}.*/\1 \2/p' \
	"$repo/Sources/ContainerABI/include/container.h" | sort)
if [ -z "$uapi" ] || [ "$uapi" != "$abi" ]; then
	say "include/uapi/linux/container.h and container.h disagree:"
	printf '%s\n' "$uapi" > "$build/abi.uapi"
	printf '%s\n' "$abi" > "$build/abi.emulation"
	diff "$build/abi.uapi" "$build/abi.emulation" >&2 || true
	exit 1
fi

# ---- initramfs ---------------------------------------------------------------
guest_stage "$stage" "$busybox"
mkdir -p "$stage/conformance"
ln -s /bin/busybox "$stage/sbin/modprobe"
if [ -d "$modules/lib/modules" ]; then
	mkdir -p "$stage/lib"
	cp -a "$modules/lib/modules" "$stage/lib/"
fi

tests=
for src in "$repo"/Tests/conformance/*.c; do
	name=$(basename "$src" .c)
	"$cc" -static -O2 -Wall -Wextra -Werror \
		-I "$repo/Sources/ContainerABI/include" -I "$repo/Tests/conformance" \
		-o "$stage/conformance/$name" "$src" "$here/shim/container_shim.c" ||
		die "cannot build $src"
	tests="$tests $name"
done

cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
hostname conformance-guest
# Like a systemd host: mounts are shared, so a mount made in a container's
# copy of the mount namespace would propagate back unless the copy is cut off.
mount --make-rshared /
export PATH=/bin:/sbin:/usr/bin:/usr/sbin CONFORMANCE_IMPL=kernel
repeat=1
for arg in $(cat /proc/cmdline); do
	case "$arg" in conformance.repeat=*) repeat=${arg#*=} ;; esac
done
leaks=/sys/kernel/debug/kmemleak
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
[ -w $leaks ] && echo clear > $leaks
echo "CONFORMANCE-BEGIN $(uname -r) repeat=$repeat"
i=0
while [ $i -lt $repeat ]; do
	for t in /conformance/*; do
		timeout 60 "$t" </dev/null
		echo "CONFORMANCE-RC ${t##*/} $?"
	done
	i=$((i + 1))
done
left=$(grep -vc '^ID ' /proc/containers)
echo "CONFORMANCE-LEFT $left"
[ "$left" = 0 ] || cat /proc/containers
if [ -w $leaks ]; then
	sleep 6
	echo scan > $leaks
	echo scan > $leaks
	sed 's/^/KMEMLEAK /' $leaks
fi
echo "CONFORMANCE-END"
reboot -f
INIT
chmod +x "$stage/init"
guest_pack "$stage" "$build/initramfs.cpio.gz"

# ---- boot --------------------------------------------------------------------
say "booting $(basename "$kernel") under qemu (TCG), timeout ${qemu_timeout}s"
start=$(date +%s)
qemu_rc=0
guest_boot "$kernel" "$build/initramfs.cpio.gz" "$log" "$qemu_timeout" "$smp" 512 \
	loglevel=4 rdinit=/init conformance.repeat="$repeat" || qemu_rc=$?
say "guest ran $(( $(date +%s) - start ))s; serial log: $log"

# ---- results -----------------------------------------------------------------
failed=0
grep -E '^(PASS|FAIL|SKIP) ' "$log" | sort | uniq -c | sed 's/^ *1 //' || true
for name in $tests; do
	passes=$(grep -cx "PASS $name" "$log" || true)
	ok_rcs=$(grep -cx "CONFORMANCE-RC $name 0" "$log" || true)
	if grep -qE "^SKIP $name(:|\$)" "$log"; then
		[ "${ALLOW_SKIP:-0}" = 1 ] ||
			{ say "$name skipped on the patched kernel"; failed=1; }
	elif [ "$passes" != "$repeat" ] || [ "$ok_rcs" != "$repeat" ]; then
		grep -qE "^FAIL $name(:|\$)" "$log" ||
			say "$name: $passes of $repeat runs passed, $ok_rcs exited 0"
		failed=1
	fi
done
if ! grep -q '^CONFORMANCE-END' "$log"; then
	say "the guest did not finish (qemu exit $qemu_rc); tail of the log:"
	tail -n 30 "$log" >&2
	failed=1
fi
if ! grep -qx 'CONFORMANCE-LEFT 0' "$log"; then
	say "containers left behind in /proc/containers:"
	sed -n '/^CONFORMANCE-LEFT/,/^CONFORMANCE-END/p' "$log" >&2
	failed=1
fi
if grep -q '^KMEMLEAK ' "$log"; then
	say "kmemleak reports unreferenced objects:"
	grep '^KMEMLEAK ' "$log" | head -n 60 >&2
	failed=1
fi
if guest_kernel_complained "$log"; then
	say "the kernel complained (lines above)"
	failed=1
fi
[ "$failed" = 0 ] && say "all $(echo $tests | wc -w) conformance programs passed ($repeat run(s) each)"
exit "$failed"
