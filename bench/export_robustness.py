"""Does every dendritic run ship a model? The int8 export over a grid of trained runs (issue 21).

    .venv/bin/python -m bench.export_robustness            # run (resumes where it stopped), table, RESULTS.md
    .venv/bin/python -m bench.export_robustness --report   # table only

Grid: formats gd and cc x dendrite activations relu, tanh, sigmoid x max dendrites 1, 2, 3 x seeds, on
hello-world, commands12 and gsc12-real at the default (automatic) budget, and on hello-world with
`--max-params 0` (no budget: the widest dendritic nets). Each run is `train.py` end to end (training, the
negligible-dendrite drop, the int8 range floor, the child-process load probe, TFLite Micro); we record
whether it shipped, the dendrites it grew and dropped, the ranges floored, and the int8 - float accuracy gap
on the validation split (the split the model was chosen on; the holdout is not used). Seeds run in order
(every cell's seed 1 first), so a partial run still covers the whole grid.
"""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import common

SETS = (("hello-world", "auto"), ("commands12", "auto"), ("gsc12-real", "auto"), ("hello-world", "0"))
FORMATS = ("gd", "cc")
ACTIVATIONS = ("relu", "tanh", "sigmoid")
DENDRITES = (1, 2, 3)
RESULTS_JSON = common.RESULTS_DIR / "export_robustness.json"
SECTION = "## Export robustness: every dendritic run ships (issue 21)"
HEADERS = ["set", "max params", "format", "runs", "shipped", "failed", "dendrites grown (mean)",
           "dropped at export", "ranges floored", "int8 - float val (pt, mean)", "worst gap (pt)"]


def key(job: dict) -> tuple:
    return job["dataset"], job["max_params"], job["format"], job["activation"], job["k"], job["seed"]


def run_one(job: dict, data_root: Path, out_root: Path) -> dict:
    ds = data_root / job["dataset"]
    flags = ["--data-directory", str(ds), "--model-format", job["format"], "--dendrite-activation",
             job["activation"], "--max-dendrites", str(job["k"]), "--max-params", job["max_params"],
             "--seed", str(job["seed"])]
    out = out_root / "_".join(str(v) for v in key(job))
    record = common.run_train(flags, out)
    m = record.pop("metrics")
    result = dict(job, command=record["command"], wall_seconds=round(record["wall_seconds"], 1),
                  shipped=m is not None and record["returncode"] == 0)
    if m is None:
        result["error"] = record.get("error", "")
        return result
    result |= {"float_val": m["float_accuracy"], "int8_val": m["int8_accuracy"],
               "gap_pt": 100 * (m["int8_accuracy"] - m["float_accuracy"]), "params": m["params"],
               "dendrites": m["dendrites"], "dropped": sum((m.get("dendrites_dropped") or {}).values()),
               "floored": len(m.get("ranges_floored") or []), "sizing": m.get("sizing", {}).get("note")}
    return result


def table(runs: list[dict]) -> list[list[str]]:
    rows = []
    for ds, budget in SETS:
        for fmt in FORMATS:
            mine = [r for r in runs if (r["dataset"], r["max_params"], r["format"]) == (ds, budget, fmt)]
            if not mine:
                continue
            ok = [r for r in mine if r["shipped"]]
            gaps = [r["gap_pt"] for r in ok]
            rows.append([ds, budget, fmt, str(len(mine)), str(len(ok)), str(len(mine) - len(ok)),
                         f"{common.mean_sd([r['dendrites'] for r in ok])[0]:.1f}" if ok else "–",
                         str(sum(r["dropped"] for r in ok)), str(sum(r["floored"] for r in ok)),
                         f"{common.mean_sd(gaps)[0]:+.2f}" if gaps else "–",
                         f"{min(gaps, key=lambda g: -abs(g)):+.2f}" if gaps else "–"])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--data-root", type=Path, default=common.DATA_ROOT)
    p.add_argument("--out-root", type=Path, default=common.REPO / "out" / "bench" / "export_robustness")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--report", action="store_true")
    args = p.parse_args(argv)
    state = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"runs": []}
    if not args.report:
        done = {key(r) for r in state["runs"]}
        todo = [{"dataset": ds, "max_params": b, "format": f, "activation": a, "k": k, "seed": s}
                for s in args.seeds for ds, b in SETS for f in FORMATS for a in ACTIVATIONS for k in DENDRITES]
        todo = [j for j in todo if key(j) not in done]
        with ThreadPoolExecutor(args.jobs) as pool:
            for record in pool.map(lambda j: run_one(j, args.data_root, args.out_root), todo):
                state["runs"].append(record)  # saved as each finishes: an interrupted bench resumes
                common.write_json(RESULTS_JSON, state | {"machine": common.machine_info()})
                status = "ok" if record["shipped"] else f"FAILED {record.get('error', '')}"
                print(f"{key(record)}: {status} {record.get('gap_pt', 0):+.2f} pt, {record['wall_seconds']}s",
                      flush=True)
    runs = state["runs"]
    rows = table(runs)
    print(common.text_table(HEADERS, rows))
    ok = [r for r in runs if r["shipped"]]
    worst = min(ok, key=lambda r: r["gap_pt"], default=None)
    summary = (f"{len(runs)} runs, {len(runs) - len(ok)} failed exports; worst int8 - float validation gap "
               + (f"{worst['gap_pt']:+.2f} pt ({' '.join(str(v) for v in key(worst))})" if worst else "–"))
    print(summary)
    if not args.report:
        machine = state.get("machine", {})
        failed = [f"- {' '.join(str(v) for v in key(r))}: {r.get('error', '')}" for r in runs if not r["shipped"]]
        body = (f"Command: `python -m bench.export_robustness`; {machine.get('cpus')} CPUs, two runs at a time, "
                f"{machine.get('date_utc', '')[:10]}, commit {machine.get('git_head', '')}. Each cell: "
                "activations relu/tanh/sigmoid x max dendrites 1/2/3 x the seeds; `train.py` end to end.\n\n"
                + common.markdown_table(HEADERS, rows) + f"\n\n{summary}.\n" + "\n".join(failed) + "\n")
        common.update_md_section(common.RESULTS_MD, SECTION, body, "bench.export_robustness")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
