#!/usr/bin/env bash
# Build and run the libFuzzer targets in Fuzz/ (docs/fuzzing.md).
#
#   scripts/fuzz.sh [--short | --long | --runs N | --time S | --build-only] [TARGET...]
#
#   (default)   --short
#   --short     CI: each target for FUZZ_SHORT_SECONDS (default 4) seconds
#   --long      each target for 10^7 executions (docs/fuzzing.md's long run)
#   --runs N    each target for N executions
#   --time S    each target for S seconds
#   --build-only  build, run nothing
#   TARGET      a file name in Fuzz/ without extension (default: all of them)
#
# A target is Fuzz/<Target>.swift (Swift, built with -sanitize=fuzzer against
# ContainerSystem, ContainerWire and CShim compiled from source) or
# Fuzz/<target>.c (C, clang -fsanitize=fuzzer,address, the CShim file it
# fuzzes #included). Each
# starts from its seed corpus Fuzz/corpus/<target>/ (read only: what the run
# finds goes to the scratch corpus). Build output, corpora, crash artifacts
# and logs go under FUZZ_SCRATCH (default .build-fuzz, gitignored). Exits
# non-zero when any target crashes, leaks, times out or fails a check.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
command -v swiftc >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"

mode=short runs= seconds=${FUZZ_SHORT_SECONDS:-4} build_only=0
targets=()
while [ $# -gt 0 ]; do
	case "$1" in
	--short) mode=short ;;
	--long) mode=runs runs=10000000 ;;
	--runs) mode=runs runs=${2:?--runs N}; shift ;;
	--time) mode=time seconds=${2:?--time S}; shift ;;
	--build-only) build_only=1 ;;
	-h|--help) sed -n '2,21p' "$0"; exit 0 ;;
	-*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
	*) targets+=("$1") ;;
	esac
	shift
done

scratch=$(realpath -m "${FUZZ_SCRATCH:-$root/.build-fuzz}")
mkdir -p "$scratch"/{obj,mod,cshim,bin,corpus,artifacts,logs,tmp}

# Every target, from the files in Fuzz/. A Swift target may need a source file
# that is not on every branch yet (RequestRules.swift): it is skipped, said so.
all=()
for f in Fuzz/*.swift Fuzz/*.c; do
	[ -e "$f" ] || continue
	all+=("$(basename "${f%.*}")")
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# Per target: the longest input worth trying (messages: 64 KiB and a margin
# past the daemon's bound; files: a generous config; request-key.conf: 4 KiB,
# request-key's own line buffer, since a longer file only repeats lines and
# made the run 3 times slower).
max_len() {
	case "$1" in
	RequestKeyConf) echo 4096 ;;
	UpcallConfig) echo 16384 ;;
	*) echo 70000 ;;
	esac
}

# A Swift target that needs more than ContainerSystem and ContainerWire lists
# its extra sources in a "// fuzz-sources: path..." line; one that fuzzes a
# file not on every branch yet names it in "// fuzz-requires: path" and is
# skipped (said so) where it is missing.
extra_sources() {
	sed -n 's|^// fuzz-sources: ||p' "$1"
}

cshim_h=$root/Sources/CShim/include/cshim.h
cflags=(-O1 -g -D_GNU_SOURCE -fno-omit-frame-pointer -I"$root/Sources/CShim/include" -I"$root/Sources/CShim")
# Swift targets: libFuzzer's coverage only, unless FUZZ_SWIFT_ASAN=1. Swift
# checks bounds and overflow itself (a trap is a crash to libFuzzer), and
# AddressSanitizer made them 3-4 times slower and 15 times bigger. The C
# targets (which #include the C file they fuzz) always have it; the CShim
# objects the Swift targets link are built like the Swift code.
swift_sanitize=fuzzer
[ "${FUZZ_SWIFT_ASAN:-0}" = 1 ] && swift_sanitize=fuzzer,address
swiftflags=(-O -g -swift-version 5 -parse-as-library -use-ld=lld -sanitize=$swift_sanitize -I "$scratch/cshim" -I "$scratch/mod")

# Rebuilt when any input is newer than the output.
stale() { # out inputs...
	local out=$1; shift
	[ -e "$out" ] || return 0
	[ -n "$(find "$@" -newer "$out" 2>/dev/null | head -1)" ]
}

build_cshim() {
	printf 'module CShim {\n  header "%s"\n  export *\n}\n' "$cshim_h" >"$scratch/cshim/module.modulemap.tmp"
	cmp -s "$scratch/cshim/module.modulemap.tmp" "$scratch/cshim/module.modulemap" 2>/dev/null ||
		mv "$scratch/cshim/module.modulemap.tmp" "$scratch/cshim/module.modulemap"
	rm -f "$scratch/cshim/module.modulemap.tmp"
	local objs=()
	for c in Sources/CShim/*.c; do
		local o=$scratch/obj/cshim-$(basename "${c%.c}").o
		if stale "$o" "$c" Sources/CShim/include Sources/CShim/*.h; then
			clang "${cflags[@]}" -fsanitize=${swift_sanitize/fuzzer/fuzzer-no-link} -c "$c" -o "$o"
		fi
		objs+=("$o")
	done
	cshim_objs=("${objs[@]}")
}

# ContainerSystem and ContainerWire, each one module object, instrumented.
build_swift_lib() { # name deps...
	local name=$1 o=$scratch/obj/$1.o
	if stale "$o" "Sources/$name" Sources/CShim/include "$scratch/cshim/module.modulemap" \
		$(for d in "${@:2}"; do echo "$scratch/obj/$d.o"; done); then
		(cd "$scratch/tmp" && swiftc "${swiftflags[@]}" -module-name "$name" -wmo -emit-module \
			-emit-module-path "$scratch/mod/$name.swiftmodule" -c -o "$o" "$root/Sources/$name"/*.swift)
	fi
}

build_target() { # target -> sets bin
	local t=$1 src
	bin=$scratch/bin/$t
	if [ -e "Fuzz/$t.c" ]; then
		src=Fuzz/$t.c
		# The C file it fuzzes is #included (static functions), not linked.
		if stale "$bin" "$src" Sources/CShim; then
			clang "${cflags[@]}" -fsanitize=fuzzer,address -fuse-ld=lld -o "$bin" "$src" -lpthread
		fi
		return 0
	fi
	src=Fuzz/$t.swift
	local extra=() missing=()
	for s in $(sed -n 's|^// fuzz-requires: ||p' "$src"); do
		[ -e "$s" ] || missing+=("$s")
	done
	# Linked under another name: a target may be named after the file it fuzzes.
	mkdir -p "$scratch/src/$t"
	for s in $(extra_sources "$src"); do
		if [ -e "$s" ]; then
			ln -sfn "$root/$s" "$scratch/src/$t/Fuzzed$(basename "$s")"
			extra+=("$scratch/src/$t/Fuzzed$(basename "$s")")
		else
			missing+=("$s")
		fi
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "fuzz.sh: $t skipped: ${missing[*]} is not on this branch"
		bin=
		return 0
	fi
	if stale "$bin" "$src" Fuzz/Support "${extra[@]}" "$scratch/obj/ContainerSystem.o" "$scratch/obj/ContainerWire.o" "${cshim_objs[@]}"; then
		(cd "$scratch/tmp" && swiftc "${swiftflags[@]}" -module-name "Fuzz$t" -wmo -o "$bin" "$root/$src" "$root"/Fuzz/Support/*.swift \
			"${extra[@]}" "$scratch/obj/ContainerSystem.o" "$scratch/obj/ContainerWire.o" "${cshim_objs[@]}" -lpthread)
	fi
}

# Flags are not in the timestamps: a build with other flags starts afresh.
stamp="swift ${swiftflags[*]} c ${cflags[*]}"
if [ "$(cat "$scratch/flags" 2>/dev/null)" != "$stamp" ]; then
	rm -rf "$scratch/obj" "$scratch/mod" "$scratch/bin"
	mkdir -p "$scratch/obj" "$scratch/mod" "$scratch/bin"
	echo "$stamp" >"$scratch/flags"
fi

echo "fuzz.sh: building ${targets[*]} into $scratch"
start=$SECONDS
build_cshim
build_swift_lib ContainerSystem
build_swift_lib ContainerWire ContainerSystem
declare -A bins
for t in "${targets[@]}"; do
	if [ ! -e "Fuzz/$t.swift" ] && [ ! -e "Fuzz/$t.c" ]; then
		echo "fuzz.sh: no target $t (Fuzz/$t.swift or Fuzz/$t.c); there are: ${all[*]}" >&2
		exit 2
	fi
	build_target "$t"
	bins[$t]=$bin
done
echo "fuzz.sh: built in $((SECONDS - start)) s"
[ "$build_only" = 0 ] || exit 0

# libFuzzer's options for every run: no input may take 10 s (a hang is a
# bug), nor grow the process past 2 GiB; a leak (C targets) is a failure.
failed=()
for t in "${targets[@]}"; do
	bin=${bins[$t]}
	[ -n "$bin" ] || continue
	seeds=Fuzz/corpus/$t
	mkdir -p "$scratch/corpus/$t" "$scratch/artifacts/$t"
	opts=(-max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
		-artifact_prefix="$scratch/artifacts/$t/")
	case "$mode" in
	short|time) opts+=(-max_total_time="$seconds") ;;
	runs) opts+=(-runs="$runs") ;;
	esac
	log=$scratch/logs/$t.log
	dirs=("$scratch/corpus/$t")
	[ -d "$seeds" ] && dirs+=("$seeds")
	echo "fuzz.sh: $t: ${opts[*]} (log $log)"
	set +e
	nice -n "${FUZZ_NICE:-10}" env ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" SWIFT_BACKTRACE=enable=no "$bin" "${opts[@]}" "${dirs[@]}" >"$log" 2>&1
	rc=$?
	set -e
	final=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
	secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
	cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p' <<<"$final")
	if [ $rc -ne 0 ]; then
		echo "fuzz.sh: $t FAILED (exit $rc); the end of its log:" >&2
		tail -40 "$log" >&2
		ls "$scratch/artifacts/$t/" 2>/dev/null | sed "s|^|  artifact: $scratch/artifacts/$t/|" >&2
		echo "  reproduce: SWIFT_BACKTRACE=enable=no $bin <artifact>" >&2
		failed+=("$t")
	else
		echo "fuzz.sh: $t ok: ${execs:-?} runs in ${secs:-?} s, ${rate:-?} exec/s, ${cov:-?}, peak RSS ${rss:-?} MB"
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: failed: ${failed[*]}" >&2
	exit 1
fi
