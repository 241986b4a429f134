# Sourced (POSIX sh) by kernel-patch/test.sh, kernel-patch/ci.sh and
# scripts/cgroup2-guest.sh: what booting a test guest takes, written once.
#
#   guest_apt_install PKG...      install the Debian packages that are missing
#   guest_stage DIR BUSYBOX       a fresh initramfs tree holding busybox-static
#   guest_pack DIR OUT            DIR as a newc cpio, gzip -1
#   guest_boot KERNEL INITRD LOG TIMEOUT SMP MEM CMDLINE...
#                                 qemu-system-x86_64 under TCG (no KVM needed),
#                                 serial console to LOG (CRs removed), killed
#                                 after TIMEOUT seconds; returns qemu's status
#                                 ($GUEST_QEMU_ARGS: more qemu options)
#   guest_kernel_complained LOG   0 (and the lines on stderr) if the kernel
#                                 logged a BUG/WARNING/Oops/panic
#
# The guest's /init prints its results on the console and ends with
# `reboot -f` (-no-reboot turns that into qemu's exit).

guest_apt_install() {
	_ga_missing=
	for _ga_p in "$@"; do
		dpkg-query -W -f='${Status}' "$_ga_p" 2>/dev/null | grep -q 'ok installed' ||
			_ga_missing="$_ga_missing $_ga_p"
	done
	[ -z "$_ga_missing" ] && return 0
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $_ga_missing >/dev/null
}

guest_stage() {
	rm -rf "$1"
	mkdir -p "$1/bin" "$1/sbin" "$1/usr/bin" "$1/usr/sbin" "$1/proc" "$1/sys" \
		"$1/dev" "$1/tmp" "$1/etc" "$1/root" "$1/run"
	cp "$2" "$1/bin/busybox"
}

guest_pack() {
	(cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) > "$2"
}

guest_boot() {
	_gb_kernel=$1 _gb_initrd=$2 _gb_log=$3 _gb_timeout=$4 _gb_smp=$5 _gb_mem=$6
	shift 6
	set +e
	timeout -k 5 "$_gb_timeout" qemu-system-x86_64 \
		-nodefaults -display none -no-reboot -m "$_gb_mem" -smp "$_gb_smp" ${GUEST_QEMU_ARGS:-} \
		-serial stdio -kernel "$_gb_kernel" -initrd "$_gb_initrd" \
		-append "console=ttyS0 panic=-1 $*" \
		</dev/null 2>&1 | tr -d '\r' > "$_gb_log"
	_gb_rc=$?
	set -e
	return $_gb_rc
}

guest_kernel_complained() {
	grep -nE 'BUG:|WARNING:|Oops|Kernel panic|general protection|Call Trace:|possible circular locking|inconsistent lock state' "$1" >&2
}
