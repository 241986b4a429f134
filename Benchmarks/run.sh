#!/bin/sh
# Build the release harness and ctrobjd in a scratch path of their own
# (.build-bench, so a concurrent `swift build` in .build is never disturbed),
# run every scenario, and put the results into docs/benchmarks.md between its
# generated-results markers. Needs root, cc, crun and busybox-static
# (apt-get install -y crun busybox-static). About 2-3 minutes.
#
#   Benchmarks/run.sh                       # the full run
#   Benchmarks/run.sh --rounds 10 --enter-rounds 10 --containers 100   # quick
#   Benchmarks/run.sh --daemon-b /path/to/ctrobjd --daemon-b-label "with fix X"
#   Benchmarks/run.sh --upcalls             # the full run, then the upcall group
#   Benchmarks/run.sh --upcalls-only        # just the upcall group (about a minute)
#   Benchmarks/run.sh --scale 10000         # just the node-scale group (a few minutes)
#   Benchmarks/run.sh --oci [N]             # just the OCI group: ctrobj-oci run against
#                                           # runc run of one bundle, interleaved (Benchmarks/oci.sh),
#                                           # then podman run --rm with each (Benchmarks/podman.sh, 30 each)
#   Benchmarks/run.sh --podman [N]          # just the podman part, N runs each (default 30)
#
# The upcall group changes core_pattern, core_pipe_limit and
# /etc/request-key.d while it runs and restores them byte for byte (also on
# SIGINT/SIGTERM); it needs keyutils and a static libc (libc6-dev), and builds the
# per-upcall C helpers with musl-gcc where musl-tools is installed (scripts/setup.sh does).
#
# Extra arguments go to ctrobj-bench (see `ctrobj-bench --help`).
set -eu
cd "$(dirname "$0")/.."
scratch=.build-bench
if [ "${1:-}" = "--oci" ] || [ "${1:-}" = "--podman" ]; then
    group=$1
    shift
    swift build -c release --scratch-path "$scratch" --product ctrobjd
    swift build -c release --scratch-path "$scratch" --product ctrobj-oci
    if [ "$group" = "--podman" ]; then
        exec bash Benchmarks/podman.sh "$scratch/release/ctrobjd" "$scratch/release/ctrobj-oci" "$@"
    fi
    bash Benchmarks/oci.sh "$scratch/release/ctrobjd" "$scratch/release/ctrobj-oci" "$@"
    echo
    exec bash Benchmarks/podman.sh "$scratch/release/ctrobjd" "$scratch/release/ctrobj-oci"
fi
swift build -c release --scratch-path "$scratch" --product ctrobjd
swift build -c release --scratch-path "$scratch" --product ctrobj-upcall
swift build -c release --scratch-path "$scratch" --product ctrobj
swift build -c release --scratch-path "$scratch" --product containerobject
bash scripts/build-c-helpers.sh "$scratch/release"
swift build -c release --scratch-path "$scratch" --product ctrobj-bench
exec "$scratch/release/ctrobj-bench" \
    --daemon "$scratch/release/ctrobjd" \
    --upcall-helper "$scratch/release/ctrobj-upcall" \
    --reference Benchmarks/reference \
    --output docs/benchmarks.md \
    "$@"
