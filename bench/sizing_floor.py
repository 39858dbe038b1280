"""Where should `--max-params` sizing stop narrowing the base to fit more dendrites? (issue 21)

    .venv/bin/python -m bench.sizing_floor                 # measure (resumes), print, update RESULTS.md
    .venv/bin/python -m bench.sizing_floor --report        # tables only

Under a fixed budget every dendrite per neuron costs base width: at Edge Impulse's size ("auto") a CC run
with up to 3 dendrites gets 3 channels per conv layer on hello-world. This bench trains, at the automatic
budget, the traditional net and CC with up to 1, 2 and 3 dendrites (each sized by the block's own
block/sizing.py, so the width falls as k rises) and reports float validation accuracy (library-level fit,
no export; the holdout is not used) against the base width. The floor in block/sizing.py (MIN_BASE_WIDTH)
is read off this table: the narrowest width whose dendritic runs were not clearly behind wider ones.
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench import common

DATASETS = ("hello-world", "gsc12-real")
CONFIGS = {
    "traditional": ["--model-format", "traditional"],
    "cc, k<=1": ["--model-format", "cc", "--max-dendrites", "1"],
    "cc, k<=2": ["--model-format", "cc", "--max-dendrites", "2"],
    "cc, k<=3": ["--model-format", "cc", "--max-dendrites", "3"],
}
RESULTS_JSON = common.RESULTS_DIR / "sizing_floor.json"
SECTION = "## Sizing floor: base width against dendrites at the automatic budget (issue 21)"
HEADERS = ["dataset", "budget", "config", "conv channels", "dendrites (max)", "params", "val % (mean ± sd)",
           "seeds", "s per run"]


def run_one(job: tuple) -> dict:
    """One library-level fit at the automatic budget, sized with the floor switched off (the bench measures
    what the floor should be, so it must see the narrow bases too)."""
    import torch

    from bench.common import block_run, load_dataset
    from block import sizing
    from kws.trainer import evaluate, fit

    dataset, name, seed, data_root = job
    torch.set_num_threads(1)
    data = load_dataset(dataset, data_root)
    args, run = block_run([*CONFIGS[name], "--seed", str(seed)], data.n_features, data.n_classes)
    budget, _ = sizing.resolve_budget("auto", data.n_features, data.n_classes, args.mfcc_coefficients)
    sizing.MIN_BASE_WIDTH = 1
    run, chosen = sizing.size_to_budget(run, budget)
    t0 = time.monotonic()
    model = fit(run, data.splits(), lambda line: None).model.eval()
    val = evaluate(model, torch.as_tensor(data.x_val), torch.as_tensor(data.y_val))[1]
    return {"dataset": dataset, "name": name, "seed": seed, "budget": budget, "val": val,
            "channels": chosen["channels"], "max_dendrites": chosen["max_dendrites"],
            "params": model.deployed_params(), "dendrites": model.num_dendrites,
            "seconds": time.monotonic() - t0}


def table(runs: list[dict]) -> list[list[str]]:
    rows = []
    for ds in DATASETS:
        for name in CONFIGS:
            mine = [r for r in runs if r["dataset"] == ds and r["name"] == name]
            if not mine:
                continue
            mean, sd = common.mean_sd([100 * r["val"] for r in mine])
            params = sorted({r["params"] for r in mine})
            rows.append([ds, f"{mine[0]['budget']:,}", name, str(mine[0]["channels"]),
                         f"{common.mean_sd([r['dendrites'] for r in mine])[0]:.1f} ({mine[0]['max_dendrites']})",
                         f"{params[0]:,}" + (f"-{params[-1]:,}" if len(params) > 1 else ""),
                         f"{mean:.1f} ± {sd:.1f}", str(len(mine)),
                         f"{common.mean_sd([r['seconds'] for r in mine])[0]:.0f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--data-root", type=Path, default=common.DATA_ROOT)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--report", action="store_true")
    args = p.parse_args(argv)
    state = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"runs": []}
    if not args.report:
        done = {(r["dataset"], r["name"], r["seed"]) for r in state["runs"]}
        todo = [(ds, name, s, args.data_root) for ds in DATASETS for name in CONFIGS for s in args.seeds
                if (ds, name, s) not in done]
        with ProcessPoolExecutor(args.jobs) as pool:
            for record in pool.map(run_one, todo):  # saved as they finish, so an interrupted run resumes
                state["runs"].append(record)
                common.write_json(RESULTS_JSON, state | {"machine": common.machine_info()})
    rows = table(state["runs"])
    print(common.text_table(HEADERS, rows))
    if not args.report:
        machine = state.get("machine", {})
        body = (f"Command: `python -m bench.sizing_floor`; {machine.get('cpus')} CPUs, one core per run, "
                f"{machine.get('date_utc', '')[:10]}, commit {machine.get('git_head', '')}. Float validation "
                "accuracy, library-level fit at the automatic budget, sizing floor off.\n\n"
                + common.markdown_table(HEADERS, rows) + "\n")
        common.update_md_section(common.RESULTS_MD, SECTION, body, "bench.sizing_floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
