#!/usr/bin/env bash
# Write a pkg-config file for libcontainerobject next to the built library.
set -euo pipefail
cd "$(dirname "$0")/.."
conf=${1:-debug}
dir="$PWD/.build/$conf"
[ -e "$dir/libcontainerobject.so" ] || { echo "build first: swift build -c $conf" >&2; exit 1; }
cat > "$dir/containerobject.pc" <<PC
Name: containerobject
Description: containers as kernel objects (userspace emulation, talks to ctrobjd)
Version: 0.1
Cflags: -I$PWD/Sources/ContainerABI/include
Libs: -L$dir -lcontainerobject -Wl,-rpath,$dir
PC
echo "$dir/containerobject.pc"
