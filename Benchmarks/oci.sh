#!/bin/bash
# The OCI group: `ctrobj-oci run` against `runc run` of the same bundle
# (busybox-static rootfs, runc spec's config.json, process /bin/true),
# interleaved in one run: ctrobj-oci, runc, ctrobj-oci, runc ... N times each,
# wall-clock per run from this shell. A private ctrobjd (its own state dir and
# cgroup parent) serves ctrobj-oci; runc gets its own --root in a temp dir.
# Prints median, p90 and mean of each and the ratio runc/ctrobj-oci.
#
#   Benchmarks/oci.sh DAEMON CTROBJ_OCI [N]      (Benchmarks/run.sh --oci [N] builds both)
set -euo pipefail
daemon=$1 oci=$2 n=${3:-200}
runc=/usr/sbin/runc
crun=/usr/bin/crun
[ "$(id -u)" = 0 ] || { echo "oci.sh: needs root" >&2; exit 1; }
[ -x "$runc" ] && [ -x /bin/busybox ] || { echo "oci.sh: needs runc and busybox-static" >&2; exit 1; }

work=$(mktemp -d /tmp/ctrobj-oci-bench.XXXXXX)
state=$work/daemon
dpid=
cgparent="ctrobj-oci-bench-$$"
cleanup() {
	set +e
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
	# What the private daemon leaves by design (it survives kill -9): its
	# namespace pins and its cgroups (prewarmed spares have no processes).
	grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	for d in /sys/fs/cgroup/*/"$cgparent" /sys/fs/cgroup/unified/"$cgparent"; do
		[ -d "$d" ] || continue
		for c in "$d"/*/; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
		# (a spare container's cgroup the daemon made while it stopped)
		rmdir "$d" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/sys" "$work/bundle/rootfs/dev"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
ln -s busybox "$work/bundle/rootfs/bin/true"
(cd "$work/bundle" && "$runc" spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' "$work/bundle/config.json"
grep -q '"/bin/true"' "$work/bundle/config.json" || { echo "oci.sh: could not set the process in config.json" >&2; exit 1; }

"$daemon" --state-dir "$state" --cgroup-parent "$cgparent" --log-level warning >"$work/daemon.log" 2>&1 &
dpid=$!
export CTROBJ_SOCKET=$state/ctrobjd.sock
for _ in $(seq 100); do [ -S "$CTROBJ_SOCKET" ] && break; sleep 0.05; done

now() { date +%s%N; }
one() { # label command...
	local t0 t1
	t0=$(now)
	"${@:2}" >/dev/null 2>&1 || { echo "oci.sh: $1 failed: ${*:2}" >&2; exit 1; }
	t1=$(now)
	echo $(((t1 - t0) / 1000)) >>"$work/$1.us"
}
# Warm both (page cache, the daemon's prewarmed holders).
for i in 1 2 3; do
	one warm "$oci" --root "$work/oci-root" run --bundle "$work/bundle" "w$i"
	one warm "$runc" --root "$work/runc-root" run --bundle "$work/bundle" "w$i"
done
# crun refuses this machine's hybrid cgroups (its v2 has only hugetlb): it
# runs in a mount namespace of its own with a tmpfs over the v2 mount, where
# it sees plain v1 (the wrapper alone is measured too, to subtract).
crun_wrapped() { # id
	/usr/bin/unshare -m /bin/sh -c "mount -t tmpfs none /sys/fs/cgroup/unified && exec $crun --root $work/crun-root run --bundle $work/bundle $1"
}
wrapper_only() {
	/usr/bin/unshare -m /bin/sh -c "mount -t tmpfs none /sys/fs/cgroup/unified && exec /bin/true"
}
have_crun=0
[ -x "$crun" ] && crun_wrapped probe >/dev/null 2>&1 && have_crun=1
for i in $(seq "$n"); do
	one oci "$oci" --root "$work/oci-root" run --bundle "$work/bundle" "b$i"
	one runc "$runc" --root "$work/runc-root" run --bundle "$work/bundle" "b$i"
	if [ "$have_crun" = 1 ]; then
		one crun crun_wrapped "b$i"
		one wrapper wrapper_only
	fi
done
stats() { # file -> "median p90 mean" in ms
	sort -n "$1" | awk '{a[NR]=$1; s+=$1} END {printf "%.2f %.2f %.2f\n", a[int((NR+1)/2)]/1000, a[int(NR*0.9)]/1000, s/NR/1000}'
}
read -r om op oa < <(stats "$work/oci.us")
read -r rm rp ra < <(stats "$work/runc.us")
echo "OCI run of /bin/true, $n runs each, interleaved ($(uname -r), $(nproc) cores)"
printf "%-12s %10s %10s %10s\n" runtime "median ms" "p90 ms" "mean ms"
printf "%-12s %10s %10s %10s\n" ctrobj-oci "$om" "$op" "$oa"
printf "%-12s %10s %10s %10s\n" runc "$rm" "$rp" "$ra"
if [ "$have_crun" = 1 ]; then
	read -r cm cp ca < <(stats "$work/crun.us")
	read -r wm wp wa < <(stats "$work/wrapper.us")
	printf "%-12s %10s %10s %10s\n" "crun (wrapped)" "$cm" "$cp" "$ca"
	printf "%-12s %10s %10s %10s\n" "the wrapper" "$wm" "$wp" "$wa"
fi
awk -v o="$om" -v r="$rm" 'BEGIN {printf "runc / ctrobj-oci (medians): %.2fx\n", r / o}'
if [ "$have_crun" = 1 ]; then
	awk -v o="$om" -v c="$cm" -v w="$wm" 'BEGIN {printf "crun / ctrobj-oci (medians): %.2fx as run, %.2fx with the wrapper subtracted\n", c / o, (c - w) / o}'
fi
