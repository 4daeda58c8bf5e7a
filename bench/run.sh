#!/usr/bin/env bash
# Runs every measurement of bench/README.md on this machine and regenerates the plots.
# Results are appended to bench/results/*.jsonl (one JSON line per run); criterion's to
# bench/results/criterion.json. Each run first waits (up to 5 min) for the machine to be quiet.
#
#   bench/run.sh            everything (about 25 minutes on 2 cores)
#   bench/run.sh load       only the load runs (also: join, idle, criterion, plot)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
R=bench/results
LG=target/release/tandem-loadgen
BIN=target/release/tandem
Q=(--wait-quiet 300)
label="$(git rev-parse --short HEAD)"
mkdir -p "$R"
cargo build --release --bins

run_load() {
  # The target shape (50 documents × 4 editors × 20 keystrokes/s = 12,000 deliveries/s) on both
  # stores, inside a rate sweep for the throughput/latency plot.
  for store in postgres sqlite; do
    for rate in 5 10 20 30 40; do
      "$LG" load --server-bin "$BIN" --store "$store" --docs 50 --editors 4 --rate "$rate" --duration 20 \
        "${Q[@]}" --label "$label" --out "$R/load-$store.jsonl"
    done
  done
}

run_join() {
  for store in postgres sqlite; do
    "$LG" join --server-bin "$BIN" --store "$store" --history 1000,5000,10000,50000,100000 \
      "${Q[@]}" --label "$label" --out "$R/join-$store.jsonl"
  done
}

run_idle() {
  "$LG" idle --server-bin "$BIN" --idle 5000 "${Q[@]}" --label "$label" --out "$R/idle.jsonl"
  "$LG" idle --server-bin "$BIN" --idle 10000 --steps 2 "${Q[@]}" --label "$label" --out "$R/idle.jsonl"
}

run_criterion() {
  cargo bench --bench engine
  cargo bench --bench store
  python3 bench/criterion_summary.py target/criterion "$R/criterion.json" > "$R/criterion.md"
}

case "$what" in
  load) run_load ;;
  join) run_join ;;
  idle) run_idle ;;
  criterion) run_criterion ;;
  plot) ;;
  all) run_load; run_join; run_idle; run_criterion ;;
  *) echo "usage: $0 [all|load|join|idle|criterion|plot]" >&2; exit 2 ;;
esac
python3 bench/plot.py "$R" bench
