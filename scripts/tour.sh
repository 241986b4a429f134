#!/usr/bin/env bash
# The main job: set up, build, and run the tour (ctrobj demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .build/debug/ctrobj demo
