#!/usr/bin/env bash
# Build the two small C helpers the kernel (or request-key) runs once per
# upcall, into DIR beside ctrobj-upcall (where `ctrobj install` looks for them):
#   ctrobj-upcall-pipe   core_pattern pipe mode (helpers/ctrobj-upcall-pipe.c)
#   ctrobj-upcall-key    /etc/request-key.d/ctrobj.conf (helpers/ctrobj-upcall-key.c)
# Static, against musl where musl-gcc is installed (setup.sh installs it): an
# exec of a static musl program costs about 0.2 ms here, against 0.5 ms for
# static glibc (its start-up CPU probing traps to the hypervisor) and 0.8 ms
# when SwiftPM links it (it adds the Swift runtime). Falls back to `cc -static`.
# Without these the installer uses ctrobj-upcall for everything (slower, same
# behaviour).
#   usage: scripts/build-c-helpers.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/build-c-helpers.sh DIR}
mkdir -p "$out"
flags=(-O2 -static -D_GNU_SOURCE -Wall -Werror -ffunction-sections -fdata-sections -Wl,--gc-sections
	-ISources/CShim/include)
if command -v musl-gcc >/dev/null; then
	cc=musl-gcc
	# musl ships no kernel headers: the system's linux/ and asm/ ones, after musl's own.
	flags+=(-idirafter /usr/include -idirafter "/usr/include/$(gcc -print-multiarch)")
else
	cc=${CC:-cc}
fi
shim=(Sources/CShim/*.c)
for name in ctrobj-upcall-pipe ctrobj-upcall-key; do
	src=helpers/$name.c
	# Rebuilt when any source is newer than the binary.
	if [ -x "$out/$name" ] && [ -z "$(find "$src" "${shim[@]}" Sources/CShim/include Sources/CShim/child.h \
		-newer "$out/$name" 2>/dev/null | head -1)" ]; then
		continue
	fi
	"$cc" "${flags[@]}" -o "$out/$name.tmp" "$src" "${shim[@]}" -lpthread
	mv -f "$out/$name.tmp" "$out/$name"
done
