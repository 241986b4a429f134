#!/usr/bin/env bash
# Pure cgroup v2 under delegation, proven in a qemu guest (issue 12).
#
#   scripts/cgroup2-guest.sh          # after swift build + scripts/build-c-helpers.sh
#
# This machine is hybrid (v1 controllers, cgroup2 with only hugetlb), so the
# layout users run, a pure cgroup2 tree whose manager delegates a subtree to
# the service, is checked in a guest: Debian's own stock kernel (the
# linux-image package, extracted here, never installed on the host) boots
# under qemu-system-x86_64 (TCG) with an initramfs of busybox-static, the
# project's binaries and the shared libraries they need, and keyutils. The
# guest mounts only cgroup2 at /sys/fs/cgroup, delegates
# /system.slice/ctrobjd.service the way systemd does for Delegate=yes
# (controllers enabled down to it, the service's process started inside it),
# starts ctrobjd there, and runs one case after another, each printing
# `PASS <case>` or `FAIL <case>: <why>` on the serial console:
#
#   cgroup2-only     only cgroup2 is mounted; no v1 hierarchy exists
#   delegation       ctrobjd moved itself to <service>/daemon, its service
#                    cgroup holds no process, containers go under
#                    <service>/containers with memory pids cpu enabled;
#                    `ctrobj info` says "delegated"
#   <program>        every C conformance program (Tests/conformance) against
#                    ctrobjd through libcontainerobject.so (proc_containers
#                    and the upcall_* programs SKIP under the emulation, as
#                    in `swift test`; nothing else may skip)
#   tour             `ctrobj demo`: limits, fork bomb, freeze/thaw,
#                    kill-on-close, install, a core and a key inside a
#                    container, uninstall; every check passes
#   limits-readback  memory.max, pids.max and cpu.max read back from the
#                    container's cgroup in the guest's tree
#   stats            `ctrobj limits` reports memory.current, pids.current,
#                    cpu.stat usage and memory.stat anon
#   oom-kill         a memory hog inside the container is OOM-killed at its
#                    limit (SIGKILL, memory.events oom_kill >= 1)
#   fork-bomb        200 forks inside stop at pids.max (pids.current <= max,
#                    pids.events max > 0)
#   nothing-outside  no cgroup was made outside the delegated subtree, and
#                    ctrobj rm removed the container's cgroup
#   requested-path   `ctrobj run --cgroup /pods/p1/ctr` (create's cgroup
#                    field): init there, limits there, the controllers
#                    enabled in /pods and /pods/p1
#   requested-busy-parent  a requested path below a cgroup holding a
#                    process is refused, nothing made or moved
#   requested-removed  rm removes the leaf and /pods/p1 (made), not /pods
#   configured-parent  a second ctrobjd started in the root cgroup keeps to
#                    the configured parent (/ctrobj), enables the controllers
#                    there, and its container's memory.max and pids.max read back
#
# and, on the host before the boot, `systemd-analyze verify` of
# dist/systemd/ctrobjd.service (Delegate=yes).
#
# Every step inside has a timeout of its own (the tour 240 s, others 60 s),
# so one hang shows as that case's FAIL. Exit 0 only if every case passed. A FAIL, a missing case, a kernel
# BUG/WARNING/Oops/panic, or a guest that does not finish within
# QEMU_TIMEOUT seconds (default 420) fails the run.
#
# Downloads and the extracted kernel are cached in .build-guest/ (ignored by
# git). Environment: GUEST_BUILD_DIR, GUEST_KERNEL_PKG (a linux-image
# package; default: what linux-image-cloud-amd64 depends on, the smallest
# stock flavour that has cgroup2, user/pid/net namespaces and keys built
# in), BIN_DIR (default: `swift build --show-bin-path`), QEMU_TIMEOUT,
# QEMU_SMP (2), QEMU_MEM (MiB, 1024), CC.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/scripts/qemu-guest.sh"
build=${GUEST_BUILD_DIR:-$repo/.build-guest}
qemu_timeout=${QEMU_TIMEOUT:-420}
smp=${QEMU_SMP:-2}
mem=${QEMU_MEM:-1024}
cc=${CC:-cc}
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
bin=${BIN_DIR:-$(cd "$repo" && swift build --show-bin-path)}
swiftlib=/opt/swift/usr/lib/swift/linux

say() { printf 'cgroup2-guest.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

t_start=$(date +%s)
guest_apt_install qemu-system-x86 cpio busybox-static keyutils binutils
for f in ctrobjd ctrobj ctrobj-upcall ctrobj-upcall-pipe ctrobj-upcall-key libcontainerobject.so; do
	[ -e "$bin/$f" ] || die "no $bin/$f: run swift build and scripts/build-c-helpers.sh first"
done

# ---- the systemd unit (PID 1 here is not systemd; the analyzer works anyway)
command -v systemd-analyze >/dev/null || guest_apt_install systemd
unitdir=$build/unit
rm -rf "$unitdir" && mkdir -p "$unitdir"
sed "s|^ExecStart=/usr/local/bin/ctrobjd|ExecStart=$bin/ctrobjd|" "$repo/dist/systemd/ctrobjd.service" > "$unitdir/ctrobjd.service"
if out=$(systemd-analyze verify "$unitdir/ctrobjd.service" 2>&1) && [ -z "$out" ] &&
	grep -qx 'Delegate=yes' "$unitdir/ctrobjd.service"; then
	unit_ok=1
else
	unit_ok=0
	say "dist/systemd/ctrobjd.service: systemd-analyze verify: ${out:-no Delegate=yes}"
fi

# ---- the kernel: Debian's own, extracted, never installed --------------------
pkg=${GUEST_KERNEL_PKG:-}
find_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'; }
if [ -z "$pkg" ]; then
	pkg=$(find_pkg)
	[ -n "$pkg" ] || { apt-get update -qq; pkg=$(find_pkg); }
	[ -n "$pkg" ] || die "cannot tell which linux-image package linux-image-cloud-amd64 stands for"
fi
kdir=$build/kernel/$pkg
if ! ls "$kdir"/boot/vmlinuz-* >/dev/null 2>&1; then
	mkdir -p "$build/dl"
	say "fetching $pkg (apt-get download; cached in $build)"
	(cd "$build/dl" && { apt-get download "$pkg" 2>/dev/null || { apt-get update -qq && apt-get download "$pkg"; }; })
	rm -rf "$kdir.tmp"
	mkdir -p "$kdir.tmp"
	dpkg-deb -x "$build/dl/${pkg}"_*.deb "$kdir.tmp"
	mv "$kdir.tmp" "$kdir"
	rm -f "$build/dl/${pkg}"_*.deb
fi
kernel=$(ls "$kdir"/boot/vmlinuz-* | head -n 1)
config=$(ls "$kdir"/boot/config-* | head -n 1)
for opt in CGROUPS MEMCG CGROUP_PIDS CGROUP_SCHED USER_NS PID_NS NET_NS KEYS SERIAL_8250_CONSOLE BLK_DEV_INITRD RD_GZIP; do
	grep -qx "CONFIG_$opt=y" "$config" || die "$pkg lacks CONFIG_$opt=y (built in)"
done

# ---- initramfs -----------------------------------------------------------------
stage=$build/initramfs
guest_stage "$stage" /bin/busybox
mkdir -p "$stage/opt/ctrobj/bin" "$stage/conformance" "$stage/var/lib" "$stage/etc/request-key.d"

# Copy a file to the same path in the guest, with every library ldd names.
with_libs() {
	local f dest lib
	for f in "$@"; do
		dest=$stage${f#"$stage"}
		ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
			[ -e "$stage$lib" ] && continue
			mkdir -p "$stage$(dirname "$lib")"
			cp -L "$lib" "$stage$lib"
		done
	done
}
for f in ctrobjd ctrobj ctrobj-upcall ctrobj-upcall-pipe ctrobj-upcall-key libcontainerobject.so; do
	cp "$bin/$f" "$stage/opt/ctrobj/bin/$f"
	# Debug builds carry DWARF the guest never reads: a smaller initramfs boots faster.
	strip --strip-debug "$stage/opt/ctrobj/bin/$f"
done
# The Swift runtime's libraries are found through the binaries' RUNPATH.
export LD_LIBRARY_PATH=$swiftlib
with_libs "$stage/opt/ctrobj/bin/ctrobjd" "$stage/opt/ctrobj/bin/ctrobj" "$stage/opt/ctrobj/bin/libcontainerobject.so"
find "$stage$swiftlib" -name '*.so' -exec strip --strip-debug {} + 2>/dev/null || true
# keyutils: the container's request-key and keyctl, and the host's.
cp -L "$(command -v keyctl)" "$stage/bin/keyctl"
cp -L /sbin/request-key "$stage/sbin/request-key"
cp /etc/request-key.conf "$stage/etc/request-key.conf"
with_libs "$stage/bin/keyctl" "$stage/sbin/request-key"
unset LD_LIBRARY_PATH

programs=
for src in "$repo"/Tests/conformance/*.c; do
	name=$(basename "$src" .c)
	"$cc" -std=gnu11 -O2 -Wall -Werror -D_GNU_SOURCE \
		-I "$repo/Sources/ContainerABI/include" -I "$repo/Tests/conformance" \
		-o "$stage/conformance/$name" "$src" \
		-L "$bin" -lcontainerobject -Wl,-rpath,/opt/ctrobj/bin || die "cannot build $src"
	programs="$programs $name"
done

cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
# pivot_root(2) cannot leave the initramfs (rootfs has no parent mount), and
# containers with an empty root pivot: move everything to a tmpfs first, as
# a real system's initramfs hands over to its root filesystem.
if [ ! -e /.on-tmpfs ]; then
	/bin/busybox mkdir /newroot
	/bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot
	for e in /*; do [ "$e" = /newroot ] || /bin/busybox cp -a "$e" /newroot/; done
	/bin/busybox touch /newroot/.on-tmpfs
	exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# Only cgroup2, where a systemd host mounts it.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --make-rshared /
hostname cgroup2-guest
export PATH=/opt/ctrobj/bin:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
cg=/sys/fs/cgroup
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
check() { name=$1; shift; if "$@"; then pass "$name"; echo "DETAIL| $name: $why"; else fail "$name" "$why"; fi; }
echo "GUEST-BEGIN $(uname -r) $(nproc) cpu(s)"

# ---- cgroup2-only
why="mounts: $(grep cgroup /proc/mounts | tr '\n' ';')"
check cgroup2-only sh -c '[ "$(grep -c " cgroup2 " /proc/mounts)" = 1 ] && ! grep -q " cgroup " /proc/mounts && [ -z "$(grep -v "^0::" /proc/self/cgroup)" ]'

# ---- delegation, as systemd does for Delegate=yes: the controllers enabled
# down to the service's cgroup, its process started inside it.
echo "+memory +pids +cpu" > $cg/cgroup.subtree_control
mkdir $cg/system.slice
echo "+memory +pids +cpu" > $cg/system.slice/cgroup.subtree_control
mkdir $cg/system.slice/ctrobjd.service
svc=$cg/system.slice/ctrobjd.service
before=$(cd $cg && find . -type d | sort)
sh -c "echo \$\$ > $svc/cgroup.procs; exec ctrobjd" > /tmp/ctrobjd.log 2>&1 &
daemon=$!
i=0
while [ ! -S /run/ctrobj/ctrobjd.sock ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
sed 's/^/CTROBJD| /' /tmp/ctrobjd.log
ctrobj info | sed 's/^/INFO| /'
why="ctrobjd is in $(cat /proc/$daemon/cgroup); service cgroup.procs: $(cat $svc/cgroup.procs | tr '\n' ' '); containers enable: $(cat $svc/containers/cgroup.subtree_control 2>&1)"
check delegation sh -c "[ \"\$(cat /proc/$daemon/cgroup)\" = 0::/system.slice/ctrobjd.service/daemon ] &&
	[ -z \"\$(cat $svc/cgroup.procs)\" ] &&
	for c in memory pids cpu; do grep -qw \$c $svc/containers/cgroup.subtree_control || exit 1; done &&
	ctrobj info | grep -q '^placement: *delegated'"

# ---- the C conformance programs against ctrobjd
for t in /conformance/*; do
	CONFORMANCE_IMPL=emulation timeout 60 "$t" </dev/null
	echo "GUEST-RC ${t##*/} $?"
done

# ---- the tour
timeout 240 ctrobj demo > /tmp/tour.out 2>&1
rc=$?
sed 's/^/TOUR| /' /tmp/tour.out
why="ctrobj demo exited $rc: $(grep -c FAIL /tmp/tour.out) check(s) failed"
check tour sh -c "[ $rc = 0 ] && grep -q 'every check passed' /tmp/tour.out"

# ---- limits, read back from the guest's tree
timeout 60 ctrobj run lim --memory 64m --pids 16 --cpu 500 --detach -- /bin/busybox sleep 600 > /tmp/run.out 2>&1
rel=$(ctrobj inspect lim 2>/dev/null | sed -n 's/^cgroup: *//p')
dir=$cg/$rel
why="run: $(cat /tmp/run.out); cgroup /$rel: memory.max $(cat $dir/memory.max 2>&1) pids.max $(cat $dir/pids.max 2>&1) cpu.max $(cat $dir/cpu.max 2>&1)"
check limits-readback sh -c "case /$rel in /system.slice/ctrobjd.service/containers/c*) ;; *) exit 1 ;; esac &&
	[ \"\$(cat $dir/memory.max)\" = 67108864 ] && [ \"\$(cat $dir/pids.max)\" = 16 ] && [ \"\$(cat $dir/cpu.max)\" = '50000 100000' ]"
ctrobj limits lim > /tmp/stats.out 2>&1
why="$(cat /tmp/stats.out)"
check stats sh -c "grep -Eq '^memory [1-9][0-9]* bytes, pids [1-9][0-9]*, cpu [1-9][0-9]* ns, anonymous memory [1-9][0-9]* bytes' /tmp/stats.out"

# ---- a memory hog inside: OOM-killed at 64 MiB
timeout 60 ctrobj exec lim -- /bin/busybox dd if=/dev/zero of=/dev/null bs=256M count=1 > /tmp/hog.out 2>&1
rc=$?
kills=$(sed -n 's/^oom_kill //p' $dir/memory.events)
why="exit $rc ($(cat /tmp/hog.out | tr '\n' ' ')), memory.events oom_kill ${kills:-?}, memory.peak $(cat $dir/memory.peak 2>/dev/null || echo n/a)"
check oom-kill sh -c "[ $rc = 137 ] && [ \"${kills:-0}\" -ge 1 ]"

# ---- a fork bomb inside: stopped at pids.max
timeout 60 ctrobj exec lim -- /bin/busybox sh -c 'i=0; while [ $i -lt 200 ]; do /bin/busybox sleep 60 & i=$((i+1)); done 2>/dev/null; exit 0' > /dev/null 2>&1
cur=$(cat $dir/pids.current)
hits=$(sed -n 's/^max //p' $dir/pids.events)
why="pids.current $cur, pids.max $(cat $dir/pids.max), pids.events max ${hits:-?}"
check fork-bomb sh -c "[ $cur -le 16 ] && [ $cur -ge 10 ] && [ \"${hits:-0}\" -gt 0 ]"

# ---- nothing outside the delegated subtree; rm removes the cgroup
ctrobj rm lim > /tmp/rm.out 2>&1
i=0
while [ -d "$dir" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
after=$(cd $cg && find . -type d | grep -v '^./system.slice/ctrobjd.service/' | sort)
why="cgroup $rel still there: $([ -d $dir ] && echo yes || echo no); new outside: $(echo "$after" | grep -vxF "$before" | tr '\n' ' ')"
check nothing-outside sh -c "[ ! -d $dir ] && [ \"$after\" = \"$before\" ]"

# ---- a requested cgroup path (create's cgroup field; OCI linux.cgroupsPath):
# /pods exists (not ctrobjd's), /pods/p1 and the leaf are made, the limit
# controllers enabled down the path; rm removes the leaf and p1, not /pods.
mkdir $cg/pods
timeout 60 ctrobj run req --cgroup /pods/p1/ctr --memory 48m --pids 12 --detach -- /bin/busybox sleep 600 > /tmp/req.out 2>&1
rdir=$cg/pods/p1/ctr
why="run: $(cat /tmp/req.out); procs $(cat $rdir/cgroup.procs 2>&1 | tr '\n' ' '); memory.max $(cat $rdir/memory.max 2>&1) pids.max $(cat $rdir/pids.max 2>&1); subtree_control: pods $(cat $cg/pods/cgroup.subtree_control 2>&1), p1 $(cat $cg/pods/p1/cgroup.subtree_control 2>&1)"
check requested-path sh -c "[ -n \"\$(cat $rdir/cgroup.procs)\" ] && [ \"\$(cat $rdir/memory.max)\" = 50331648 ] && [ \"\$(cat $rdir/pids.max)\" = 12 ] &&
	grep -q pids $cg/pods/cgroup.subtree_control && grep -q memory $cg/pods/p1/cgroup.subtree_control"
# A parent holding a process: refused before anything is made, nothing moved.
mkdir $cg/busy
/bin/busybox sleep 600 &
bpid=$!
echo $bpid > $cg/busy/cgroup.procs
timeout 60 ctrobj run reqb --cgroup /busy/x --detach -- /bin/busybox sleep 600 > /tmp/reqb.out 2>&1
brc=$?
why="exit $brc: $(cat /tmp/reqb.out); busy/x there: $([ -d $cg/busy/x ] && echo yes || echo no); busy holds: $(cat $cg/busy/cgroup.procs | tr '\n' ' ')"
check requested-busy-parent sh -c "[ $brc != 0 ] && grep -q 'holds processes' /tmp/reqb.out && [ ! -d $cg/busy/x ] && grep -qx $bpid $cg/busy/cgroup.procs"
kill $bpid
ctrobj rm req > /tmp/rm-req.out 2>&1
i=0
while [ -d $cg/pods/p1 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
why="$(cat /tmp/rm-req.out); p1 there: $([ -d $cg/pods/p1 ] && echo yes || echo no); pods there: $([ -d $cg/pods ] && echo yes || echo no)"
check requested-removed sh -c "[ ! -d $cg/pods/p1 ] && [ -d $cg/pods ]"
rmdir $cg/pods $cg/busy 2>/dev/null

kill $daemon
wait $daemon

# ---- configured parent on pure v2: a second ctrobjd in the root cgroup
ctrobjd --state-dir /run/ctrobj-b > /tmp/ctrobjd-b.log 2>&1 &
second=$!
i=0
while [ ! -S /run/ctrobj-b/ctrobjd.sock ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
sed 's/^/CTROBJD-B| /' /tmp/ctrobjd-b.log
export CTROBJ_STATE_DIR=/run/ctrobj-b
timeout 60 ctrobj run confd --memory 32m --pids 8 --detach -- /bin/busybox sleep 600 > /tmp/run-b.out 2>&1
rel=$(ctrobj inspect confd 2>/dev/null | sed -n 's/^cgroup: *//p')
dir=$cg/$rel
why="$(cat /tmp/run-b.out); $(ctrobj info | grep -E '^(placement|parent|reason)' | tr -s ' ' | tr '\n' ';') cgroup /$rel: memory.max $(cat $dir/memory.max 2>&1) pids.max $(cat $dir/pids.max 2>&1); ctrobj enables: $(cat $cg/ctrobj/cgroup.subtree_control 2>&1)"
check configured-parent sh -c "ctrobj info | grep -q '^placement: *configured' && case /$rel in /ctrobj/c*) ;; *) exit 1 ;; esac &&
	[ \"\$(cat $dir/memory.max)\" = 33554432 ] && [ \"\$(cat $dir/pids.max)\" = 8 ] &&
	[ \"\$(cat /proc/$second/cgroup)\" = 0::/ ]"
ctrobj rm confd > /dev/null 2>&1
unset CTROBJ_STATE_DIR
kill $second
wait $second
echo "GUEST-END"
reboot -f
INIT
chmod +x "$stage/init"
guest_pack "$stage" "$build/initramfs.cpio.gz"
say "initramfs $(( $(stat -c %s "$build/initramfs.cpio.gz") / 1048576 )) MiB, prepared in $(( $(date +%s) - t_start ))s"

# ---- boot ----------------------------------------------------------------------
log=$build/guest.log
say "booting $(basename "$kernel") ($pkg) under qemu (TCG, -smp $smp, ${mem} MiB), timeout ${qemu_timeout}s"
t_boot=$(date +%s)
qemu_rc=0
GUEST_QEMU_ARGS="-cpu max" guest_boot "$kernel" "$build/initramfs.cpio.gz" "$log" "$qemu_timeout" "$smp" "$mem" \
	loglevel=4 rdinit=/init cgroup_no_v1=all mitigations=off || qemu_rc=$?
say "guest ran $(( $(date +%s) - t_boot ))s; serial log: $log"

# ---- results -------------------------------------------------------------------
failed=0
cases="cgroup2-only delegation $programs tour limits-readback stats oom-kill fork-bomb nothing-outside requested-path requested-busy-parent requested-removed configured-parent"
grep -E '^(PASS|FAIL|SKIP) ' "$log" || true
for name in $cases; do
	if grep -qE "^SKIP $name(:|\$)" "$log"; then
		# As under `swift test`: the kernel-only program and the upcall
		# programs (the tour covers a core and a key inside a container).
		case $name in upcall_* | proc_containers) ;; *) say "$name skipped"; failed=1 ;; esac
	elif ! grep -qx "PASS $name" "$log"; then
		grep -qE "^FAIL $name(:|\$)" "$log" || say "$name: no result"
		failed=1
	fi
done
if [ "$unit_ok" = 1 ]; then
	echo "PASS unit-file (systemd-analyze verify, on the host)"
else
	echo "FAIL unit-file"
	failed=1
fi
for name in $programs; do
	grep -qE "^GUEST-RC $name (0|77)\$" "$log" || { say "$name: $(grep "^GUEST-RC $name " "$log" || echo 'no exit status')"; failed=1; }
done
if ! grep -q '^GUEST-END' "$log"; then
	say "the guest did not finish (qemu exit $qemu_rc); tail of the log:"
	tail -n 30 "$log" >&2
	failed=1
fi
if [ "$failed" != 0 ]; then
	say "the tour and ctrobjd said:"
	grep -E '^(TOUR|CTROBJD|INFO|DETAIL)\| ' "$log" | tail -n 100 >&2 || true
fi
if guest_kernel_complained "$log"; then
	say "the kernel complained (lines above)"
	failed=1
fi
n=$(( $(echo $cases | wc -w) + 1 ))
passed=$(( $(grep -cE '^PASS ' "$log" || true) + unit_ok ))
skipped=$(grep -cE '^SKIP ' "$log" || true)
say "$passed of $n cases passed, $skipped skipped (kernel-only and upcall programs under the emulation), in $(( $(date +%s) - t_start ))s all told"
exit "$failed"
