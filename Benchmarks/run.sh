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
#
# Extra arguments go to ctrobj-bench (see `ctrobj-bench --help`).
set -eu
cd "$(dirname "$0")/.."
scratch=.build-bench
swift build -c release --scratch-path "$scratch" --product ctrobjd
swift build -c release --scratch-path "$scratch" --product ctrobj-bench
exec "$scratch/release/ctrobj-bench" \
    --daemon "$scratch/release/ctrobjd" \
    --reference Benchmarks/reference \
    --output docs/benchmarks.md \
    "$@"
