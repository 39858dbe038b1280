"""Does Studio's in-job search pay? `train.py --search-trials auto` against the default run (issue 24).

    .venv/bin/python -m bench.search_quality                                  # every cell, resumable
    .venv/bin/python -m bench.search_quality --cells gsc12-real:600 --seeds 3  # a part
    .venv/bin/python -m bench.search_quality --report --update-results-md     # tables only

A cell is (dataset, compute limit in seconds). Per seed (the block's default 3, then 4, 5) it runs, as Studio
would, `train.py --data-directory D --holdout-directory D/holdout --info-file I --seed S` once with
`--search-trials auto` (the search may use 3/4 of the limit, the final training and export the rest) and
once without (the default run), where I is the dataset's train_input.json with maxTrainingTimeSeconds set
to the cell's limit. From each run: int8 holdout accuracy (a test set: reported, never selected on),
params, flash (int8 file), RAM (TFLite Micro arena) and MACs of the shipped model; from the search's log:
its trials (complete, stopped early or failed) per hour of search and its one-line verdict (picked or kept
the default). Results merge into bench/results/search_quality.json after every run, so the bench resumes
where it stopped and can run in parts (e.g. one cell per process).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bench.common import (
    DATA_ROOT,
    REPO,
    RESULTS_DIR,
    fmt_pm,
    machine_info,
    markdown_table,
    mean_sd,
    publish,
    run_train,
    text_table,
    write_json,
)

CELLS = ("gsc12-real:600", "gsc12-real:1200", "commands12:600", "hello-world:600")
RESULTS_JSON = RESULTS_DIR / "search_quality.json"
SECTION = "## In-Studio search vs the default run (issue 24)"
MODES = ("default", "search")
SEARCH_LINE = re.compile(r"^architecture search: (\d+) complete, (\d+) stopped early, \d+ skipped, (\d+) failed.* "
                         r"in (\d+)s$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", default=list(CELLS), help="dataset:limit_seconds pairs")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--seeds", type=int, default=3, help="how many seeds, from --first-seed up")
    p.add_argument("--first-seed", type=int, default=3, help="the block's default seed; another splits a cell's seeds "
                   "between processes")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--out-root", type=Path, default=REPO / "out" / "bench" / "search_quality")
    p.add_argument("--threads", type=int, default=1, help="cap for OMP/MKL/TF threads in the child")
    p.add_argument("--report", action="store_true", help="print the tables from the results file only")
    p.add_argument("--update-results-md", action="store_true", help="refresh this bench's RESULTS.md section")
    return p.parse_args(argv)


def key(dataset: str, limit: int, mode: str, seed: int) -> str:
    return f"{dataset}:{limit}:{mode}:{seed}"


def search_facts(log: str) -> dict:
    """Trials counted (complete + stopped early + failed), the search's seconds, and its verdict line."""
    facts: dict = {}
    for line in log.splitlines():
        m = SEARCH_LINE.match(line)
        if m:
            facts |= {"complete": int(m[1]), "stopped": int(m[2]), "failed": int(m[3]), "search_seconds": int(m[4])}
        if line.startswith("search: "):
            facts["verdict"] = line
    if "search_seconds" in facts:
        counted = facts["complete"] + facts["stopped"] + facts["failed"]
        facts["trials_per_hour"] = 3600 * counted / max(facts["search_seconds"], 1)
    return facts


def run_cell(dataset: str, limit: int, mode: str, seed: int, opts: argparse.Namespace) -> dict:
    d = opts.data_root / dataset
    info = json.loads((d / "train_input.json").read_text()) | {"maxTrainingTimeSeconds": limit}
    out = opts.out_root / f"{dataset}-{limit}-{mode}-{seed}"
    info_path = opts.out_root / f"{dataset}-{limit}-train_input.json"
    info_path.parent.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info))
    flags = ["--data-directory", str(d), "--holdout-directory", str(d / "holdout"), "--info-file", str(info_path),
             "--seed", str(seed)] + (["--search-trials", "auto"] if mode == "search" else [])
    record = run_train(flags, out, threads=opts.threads, timeout=limit + 600)
    log = (out / "train.log").read_text(errors="replace")
    m = record.pop("metrics")
    if m is not None:
        record["shipped"] = {"holdout_int8": m.get("holdout_int8_accuracy"), "val_int8": m["int8_accuracy"],
                             "params": m["params"], "flash_bytes": m["flash_bytes"], "arena_bytes": m["arena_bytes"],
                             "macs": m["macs"], "total_seconds": m.get("total_seconds")}
    record |= search_facts(log) | {"dataset": dataset, "limit": limit, "mode": mode, "seed": seed,
                                   "machine": machine_info()}
    return record


def _accuracy(runs: dict) -> str:
    return fmt_pm([r["shipped"]["holdout_int8"] for r in runs.values()])


def _costs(runs: dict) -> str:
    """Mean params / flash / RAM / MACs of the shipped models."""
    if not runs:
        return "–"
    keys = ("params", "flash_bytes", "arena_bytes", "macs")
    return " / ".join(f"{mean_sd([r['shipped'][k] for r in runs.values()])[0]:,.0f}" for k in keys)


def report(results: dict) -> tuple[str, str]:
    """(terminal table, markdown body) over the cells in the results file."""
    cells = sorted({(r["dataset"], r["limit"]) for r in results.values()})
    headers = ["dataset", "limit", "default int8 holdout", "search int8 holdout", "Δ paired (points)",
               "search picks: params / flash B / RAM B / MACs", "default: params / flash / RAM / MACs",
               "trials/h", "kept default"]
    rows = []
    for dataset, limit in cells:
        runs = {mode: {r["seed"]: r for r in results.values() if (r["dataset"], r["limit"], r["mode"]) ==
                       (dataset, limit, mode) and r.get("shipped")} for mode in MODES}
        paired = sorted(set(runs["default"]) & set(runs["search"]))
        deltas = [100 * (runs["search"][s]["shipped"]["holdout_int8"] - runs["default"][s]["shipped"]["holdout_int8"])
                  for s in paired]

        tph = [r["trials_per_hour"] for r in runs["search"].values() if "trials_per_hour" in r]
        kept = sum("kept the default" in r.get("verdict", "") for r in runs["search"].values())
        rows.append([dataset, f"{limit // 60} min", _accuracy(runs["default"]), _accuracy(runs["search"]),
                     fmt_pm(deltas, 1, show_n=False) if deltas else "–", _costs(runs["search"]), _costs(runs["default"]),
                     f"{mean_sd(tph)[0]:.0f}" if tph else "–", f"{kept}/{len(runs['search'])}"])
    machines = sorted({(r["machine"]["cpus"], r["machine"]["git_head"], r["machine"]["date_utc"][:10])
                       for r in results.values()})
    lines = [
        ("Command: `.venv/bin/python -m bench.search_quality` (resumable; `--cells dataset:seconds` runs a part). "
        "Each seed runs train.py twice with the dataset's train_input.json at the cell's maxTrainingTimeSeconds: "
        "with `--search-trials auto` and without (the default run); seeds 3, 4, 5. Holdout: int8, the public "
        "holdout (a test set, never selected on). Δ: search minus default, paired by seed. Costs: means of the "
        "shipped models (flash = int8 file bytes, RAM = TFLite Micro arena). trials/h: trials counted (complete, "
        "stopped early or failed) per hour of the search's own time."),
        "",
        markdown_table(headers, rows),
        "",
        "Machines (cpus, commit, date): " + "; ".join(f"{c} cpus @ {g} on {d}" for c, g, d in machines) + ".",
        "",
        "Verdicts of the searches:",
        "",
        *[f"- {r['dataset']} {r['limit'] // 60} min, seed {r['seed']}: {r.get('verdict', r.get('error', '?'))}"
          for r in sorted(results.values(), key=lambda r: (r["dataset"], r["limit"], r["seed"]))
          if r["mode"] == "search"],
    ]
    return text_table(headers, rows), "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    if not opts.report:
        for cell in opts.cells:
            dataset, limit = cell.rsplit(":", 1)
            for seed in range(opts.first_seed, opts.first_seed + opts.seeds):
                for mode in opts.modes:
                    k = key(dataset, int(limit), mode, seed)
                    if k in results and results[k].get("shipped"):
                        continue
                    print(f"running {k}", flush=True)
                    results[k] = run_cell(dataset, int(limit), mode, seed, opts)
                    results = json.loads(RESULTS_JSON.read_text()) | {k: results[k]} if RESULTS_JSON.exists() \
                        else results  # another process may have added cells meanwhile
                    write_json(RESULTS_JSON, results)
                    shipped = results[k].get("shipped") or {}
                    print(f"  {k}: holdout int8 {shipped.get('holdout_int8')}, {results[k].get('verdict', '')}",
                          flush=True)
    return publish(*report(results), opts.update_results_md, SECTION, "bench/search_quality.py")


if __name__ == "__main__":
    sys.exit(main())
