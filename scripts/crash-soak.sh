#!/usr/bin/env bash
# Crash soak: the SIGKILL crash test (test/crash/sigkill.test.ts) with many
# more rounds than CI runs, on one data directory.
#
#   scripts/crash-soak.sh [ROUNDS]     ROUNDS defaults to 1000
#   CRASH_SEED=123 scripts/crash-soak.sh 200     replays a seed a failure printed
#
# Each round's check is short, but every start replays all sealed files, so
# a round gets slower as the data grows: 1,000 rounds take about two hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-1000}"
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [ROUNDS]   (a whole number of rounds, default 1000)" >&2
  exit 2
fi
export CRASH_ROUNDS="$rounds"
exec npx tap --disable-coverage --reporter=tap test/crash/sigkill.test.ts
