#!/bin/bash
# The podman part of the OCI group: `podman run --rm IMAGE /bin/true` with
# ctrobj-oci as the runtime against the same with runc, interleaved in one
# run (ctrobj-oci, runc, ctrobj-oci, runc ... N times each), wall-clock per
# run from this shell. Prints median, p90 and mean of each, the ratio
# ctrobj-oci/runc, and the load average before and after.
#
#   Benchmarks/podman.sh DAEMON CTROBJ_OCI [N]     (Benchmarks/run.sh --oci builds both)
#
# Nothing of the host's podman is read or changed: a private containers.conf
# and storage (vfs) under a temp dir, the image imported from a busybox-static
# tarball (nothing pulled), podman run inside a private mount namespace with a
# tmpfs over /var/lib/containers, /run/containers and /run/runc (podman 4.3
# writes there whatever its configuration says), every container under a
# cgroup parent of this run's own. ctrobjd runs in the host's mount namespace
# (it clones the rootfs ctrobj-oci opens, which the kernel allows only in the
# namespace the rootfs is in), so both runtimes are called through the same
# kind of wrapper: nsenter into the host's mount namespace, then the runtime
# with a --root of this run's own (podman passes none).
set -euo pipefail
daemon=$(realpath "$1") oci=$(realpath "$2") n=${3:-30}
runc=/usr/sbin/runc
[ "$(id -u)" = 0 ] || { echo "podman.sh: needs root" >&2; exit 1; }
for b in /usr/bin/podman /usr/bin/conmon "$runc" /bin/busybox /usr/bin/nsenter /usr/bin/unshare; do
	[ -x "$b" ] || { echo "podman.sh: needs $b (scripts/setup.sh installs podman, runc, busybox-static)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/ctrobj-podman-bench.XXXXXX)
state=$work/daemon
dpid=
cgparent="ctrobj-podman-bench-$$"
dcgparent="ctrobj-podman-benchd-$$"
made=()
cleanup() {
	set +e
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
	grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	for p in "$cgparent" "$dcgparent"; do
		for d in /sys/fs/cgroup/*/"$p" /sys/fs/cgroup/unified/"$p"; do
			[ -d "$d" ] || continue
			find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
		done
	done
	for ((i = ${#made[@]} - 1; i >= 0; i--)); do rmdir "${made[$i]}" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

hidden=(/var/lib/containers /run/containers /run/runc)
for d in "${hidden[@]}"; do [ -d "$d" ] || { mkdir -p "$d"; made+=("$d"); }; done
mkdir -p "$work"/{graph,run,tmp,net,rootfs/bin,rootfs/etc,rootfs/tmp,rootfs/proc,rootfs/sys,rootfs/dev}
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
echo 'root:x:0:' >"$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
lock_type = "file"
tmp_dir = "$work/tmp"
image_copy_tmp_dir = "$work/tmp"
static_dir = "$work/graph/libpod"
volume_path = "$work/graph/volumes"
[network]
network_backend = "netavark"
network_config_dir = "$work/net"
EOF
cat >"$work/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$work/graph"
runroot = "$work/run"
EOF
hostns=/proc/$$/ns/mnt
cat >"$work/rt-oci" <<EOF
#!/bin/sh
exec /usr/bin/nsenter --mount=$hostns -- $oci --root $work/oci-state "\$@"
EOF
cat >"$work/rt-runc" <<EOF
#!/bin/sh
exec /usr/bin/nsenter --mount=$hostns -- $runc --root $work/runc-state "\$@"
EOF
if [ -n "${PODMAN_BENCH_TRACE:-}" ]; then
	# Where the time goes: each runtime call's verb and wall time, per runtime.
	for r in oci runc; do
		bin=$oci; [ $r = runc ] && bin=$runc
		cat >"$work/rt-$r" <<EOF
#!/bin/bash
t0=\$(date +%s%N)
dbg=; [ $r = oci ] && dbg="--debug"
# (stderr, the container's too, goes to a file: /bin/true writes none)
/usr/bin/nsenter --mount=$hostns -- $bin --root $work/$r-state \$dbg "\$@" 2>>$work/debug-$r
rc=\$?
verb=; for a in "\$@"; do case \$a in create|start|delete|state|kill) verb=\$a; break;; esac; done
echo "\$verb \$(( (\$(date +%s%N) - t0) / 1000 ))" >>$work/trace-$r
exit \$rc
EOF
	done
fi
chmod 755 "$work/rt-oci" "$work/rt-runc"

"$daemon" --state-dir "$state" --cgroup-parent "$dcgparent" --log-level warning >"$work/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 100); do [ -S "$state/ctrobjd.sock" ] && break; sleep 0.05; done

# Everything podman does happens in this private mount namespace.
cat >"$work/inner.sh" <<'EOF'
set -euo pipefail
work=$1 n=$2 cgparent=$3 sock=$4
shift 4
for d in "$@"; do mount -t tmpfs -o mode=0755,size=64m ctrobj-bench "$d"; done
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_STORAGE_CONF=$work/storage.conf HOME=$work TMPDIR=$work/tmp
image=localhost/ctrobj-bench:latest
pm() { podman --cgroup-manager cgroupfs "$@"; }
pm import "$work/rootfs.tar" "$image" >/dev/null 2>&1
opts=(--rm --cgroup-parent "/$cgparent" --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$image" /bin/true)
now() { date +%s%N; }
one() { # label runtime-wrapper [global flags...]
	local t0 t1
	t0=$(now)
	pm --runtime "$work/$2" "${@:3}" run "${opts[@]}" >/dev/null 2>"$work/last.err" || { echo "podman.sh: $1 failed: $(cat "$work/last.err")" >&2; exit 1; }
	t1=$(now)
	echo $(((t1 - t0) / 1000)) >>"$work/$1.us"
}
for i in 1 2 3; do
	one warm rt-oci --runtime-flag "ctrobj-socket=$sock"
	one warm rt-runc
done
cat /proc/loadavg >"$work/load.before"
for i in $(seq "$n"); do
	one oci rt-oci --runtime-flag "ctrobj-socket=$sock"
	one runc rt-runc
done
cat /proc/loadavg >"$work/load.after"
pm rm --all --force >/dev/null 2>&1 || true
pm rmi --all --force >/dev/null 2>&1 || true
EOF
/usr/bin/unshare --mount --propagation private /bin/bash "$work/inner.sh" "$work" "$n" "$cgparent" "$state/ctrobjd.sock" "${hidden[@]}"

stats() { # file -> "median p90 mean" in ms
	sort -n "$1" | awk '{a[NR]=$1; s+=$1} END {printf "%.1f %.1f %.1f\n", a[int((NR+1)/2)]/1000, a[int(NR*0.9)]/1000, s/NR/1000}'
}
read -r om op oa < <(stats "$work/oci.us")
read -r rm rp ra < <(stats "$work/runc.us")
echo "podman run --rm IMAGE /bin/true, $n runs each, interleaved ($(uname -r), $(nproc) cores, $(podman --version))"
echo "load average before: $(cut -d' ' -f1-3 "$work/load.before"), after: $(cut -d' ' -f1-3 "$work/load.after")"
printf "%-22s %10s %10s %10s\n" runtime "median ms" "p90 ms" "mean ms"
printf "%-22s %10s %10s %10s\n" "podman + ctrobj-oci" "$om" "$op" "$oa"
printf "%-22s %10s %10s %10s\n" "podman + runc" "$rm" "$rp" "$ra"
awk -v o="$om" -v r="$rm" 'BEGIN {printf "ctrobj-oci / runc (medians): %.2f (below 1: podman is faster with ctrobj-oci)\n", o / r}'
if [ -n "${PODMAN_BENCH_TRACE:-}" ]; then
	for r in oci runc; do
		echo "runtime calls under podman, $r (mean ms per call, including the wrapper's nsenter):"
		awk '{n[$1]++; s[$1]+=$2} END {for (v in n) printf "  %-8s %4d calls %8.1f ms\n", v, n[v], s[v]/n[v]/1000}' "$work/trace-$r" | sort
	done
	echo "ctrobj-oci create --debug under podman (mean ms since the start of the command, per step):"
	grep '^ctrobj-oci: +' "$work/debug-oci" | awk '{n[$4]++; s[$4]+=substr($2, 2); if (!($4 in o)) o[$4]=++k} END {for (v in n) printf "%d %-14s %8.2f ms\n", o[v], v, s[v]/n[v]/1000}' | sort -n | cut -d' ' -f2- | sed 's/^/  /' 
fi
