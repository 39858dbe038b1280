"""The default run under device budgets (issue 24): `train.py --max-flash-kb F --max-ram-kb R` on gsc12-real.

    .venv/bin/python -m bench.device_budget                       # seeds 3, 4, 5 at 10 KB flash, 5 KB RAM
    .venv/bin/python -m bench.device_budget --flash-kb 16 --ram-kb 6
    .venv/bin/python -m bench.device_budget --collect OUT_DIR...  # add runs made by hand with the same flags
    .venv/bin/python -m bench.device_budget --report --update-results-md

Each run is `train.py --data-directory D --holdout-directory D/holdout --seed S --max-flash-kb F --max-ram-kb R`
(everything else the block's defaults). Reported per budget: the shipped model's params, int8 file bytes,
TFLite Micro arena bytes and MACs (each checked against the budget), int8 validation and holdout accuracy
(mean ± sd over seeds), and the job's wall time. Results merge into bench/results/device_budget.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.common import (
    DATA_ROOT,
    REPO,
    RESULTS_DIR,
    fmt_pm,
    machine_info,
    markdown_table,
    publish,
    run_train,
    text_table,
    write_json,
)

RESULTS_JSON = RESULTS_DIR / "device_budget.json"
SECTION = "## Device budgets: the default run sized to flash and RAM (issue 24)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="gsc12-real")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--flash-kb", type=float, default=10.0)
    p.add_argument("--ram-kb", type=float, default=5.0)
    p.add_argument("--seeds", type=int, default=3, help="seeds 3, 4, ...")
    p.add_argument("--out-root", type=Path, default=REPO / "out" / "bench" / "device_budget")
    p.add_argument("--collect", nargs="+", type=Path, help="out directories of runs made with these flags")
    p.add_argument("--report", action="store_true")
    p.add_argument("--update-results-md", action="store_true")
    return p.parse_args(argv)


def record(metrics: dict, dataset: str, flash_kb: float, ram_kb: float, seed: int, wall: float | None) -> dict:
    keep = ("params", "flash_bytes", "arena_bytes", "macs", "int8_accuracy", "holdout_int8_accuracy",
            "holdout_float_accuracy", "total_seconds")
    return {"dataset": dataset, "flash_kb": flash_kb, "ram_kb": ram_kb, "seed": seed, "wall_seconds": wall,
            "network": metrics["config"]["net"], **{k: metrics.get(k) for k in keep}, "machine": machine_info()}


def report(results: dict) -> tuple[str, str]:
    groups: dict[tuple, list[dict]] = {}
    for r in results.values():
        groups.setdefault((r["dataset"], r["flash_kb"], r["ram_kb"]), []).append(r)
    headers = ["dataset", "budget", "network", "params", "flash B (int8 file)", "RAM B (arena)", "MACs",
               "within budget", "int8 validation", "int8 holdout", "job s"]
    rows = []
    for (dataset, flash_kb, ram_kb), runs in sorted(groups.items()):
        net = runs[0]["network"]
        shape = f"DS-TCN {net['blocks']} block(s) x {net['width']}" if net.get("family") == "dstcn" else "conv+FC"
        within = all(r["flash_bytes"] <= flash_kb * 1024 and r["arena_bytes"] <= ram_kb * 1024 for r in runs)
        rows.append([dataset, f"{flash_kb:g} KB flash, {ram_kb:g} KB RAM", shape,
                     "/".join(sorted({f"{r['params']:,}" for r in runs})),
                     "/".join(sorted({f"{r['flash_bytes']:,}" for r in runs})),
                     "/".join(sorted({f"{r['arena_bytes']:,}" for r in runs})),
                     "/".join(sorted({f"{r['macs']:,}" for r in runs})), "yes" if within else "NO",
                     fmt_pm([r["int8_accuracy"] for r in runs]), fmt_pm([r["holdout_int8_accuracy"] for r in runs]),
                     fmt_pm([r["total_seconds"] for r in runs], 0, show_n=False)])
    dates = sorted({(r["machine"]["date_utc"][:10], r["machine"]["git_head"]) for r in results.values()})
    body = "\n".join([
        "Command: `.venv/bin/python -m bench.device_budget` (`train.py --max-flash-kb 10 --max-ram-kb 5` on "
        "gsc12-real, seeds 3-5, all else the block's defaults; flash = the shipped int8 file's bytes, RAM = its "
        "TFLite Micro arena, both measured on the shipped files). Runs: "
        + ", ".join(f"{d} at {g}" for d, g in dates) + "; the shared 2-core VM, CPU only, beside two "
        "search-quality runs (so job seconds are upper bounds).",
        "",
        markdown_table(headers, rows),
    ])
    return text_table(headers, rows), body


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    if opts.collect:
        for out in opts.collect:
            m = json.loads((out / "metrics.json").read_text())
            seed = m["config"]["train"]["seed"]
            results[f"{opts.dataset}:{opts.flash_kb:g}:{opts.ram_kb:g}:{seed}"] = record(
                m, opts.dataset, opts.flash_kb, opts.ram_kb, seed, None)
        write_json(RESULTS_JSON, results)
    elif not opts.report:
        d = opts.data_root / opts.dataset
        for seed in range(3, 3 + opts.seeds):
            key = f"{opts.dataset}:{opts.flash_kb:g}:{opts.ram_kb:g}:{seed}"
            if key in results:
                continue
            run = run_train(["--data-directory", str(d), "--holdout-directory", str(d / "holdout"), "--seed", str(seed),
                             "--max-flash-kb", str(opts.flash_kb), "--max-ram-kb", str(opts.ram_kb)],
                            opts.out_root / key.replace(":", "-"))
            if run["metrics"] is None:
                print(f"ERR: {key}: {run.get('error')}", file=sys.stderr)
                return 1
            results[key] = record(run["metrics"], opts.dataset, opts.flash_kb, opts.ram_kb, seed, run["wall_seconds"])
            write_json(RESULTS_JSON, results)
    return publish(*report(results), opts.update_results_md, SECTION, "bench/device_budget.py")


if __name__ == "__main__":
    sys.exit(main())
