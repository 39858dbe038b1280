#!/usr/bin/env bash
# Issue 21's check that the sweep survives a busy machine: two 8-trial sweeps on hello-world, each beside two
# busy-loop processes (plus whatever else the machine runs). Prints, per sweep, the exit code, the reports
# written and the trial states from trials.csv; a FAIL state or a missing report is a failure.
#   bash bench/sweep_under_load.sh [DATA_ROOT] [OUT_ROOT]
set -u
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=${2:-out/bench/sweep_under_load}
for i in 1 2; do
  python3 -c "while True: pass" & b1=$!
  python3 -c "while True: pass" & b2=$!
  rm -rf "$OUT/sweep$i"
  start=$(date +%s)
  .venv/bin/python -m sweep --data-directory "$DATA/hello-world" --holdout-directory "$DATA/hello-world/holdout" \
    --out-directory "$OUT/sweep$i" --trials 8 --seed "$i" > "$OUT/sweep$i.log" 2>&1
  rc=$?
  load=$(cut -d' ' -f1 /proc/loadavg)
  kill "$b1" "$b2"
  states=$(tail -n +2 "$OUT/sweep$i/trials.csv" 2>/dev/null | cut -d, -f2 | sort | uniq -c | tr -s ' ' | paste -sd, -)
  echo "sweep $i: exit $rc in $(( $(date +%s) - start )) s, load $load; reports: $(cd "$OUT/sweep$i" && ls trials.csv pareto.png frontier.md 2>/dev/null | paste -sd' ' -); trials:$states"
done
