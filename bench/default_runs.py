"""Run the block's DEFAULT train.py on the benchmark datasets and compare with EI's default Keras net.

    .venv/bin/python -m bench.default_runs                      # train: hello-world + commands12, 3 seeds
    .venv/bin/python -m bench.default_runs --seeds 1 --datasets hello-world
    .venv/bin/python -m bench.default_runs --report --update-results-md   # tables only, no training

Each run is `python train.py --data-directory D --out-directory O --holdout-directory D/holdout [--seed S]`
(no other parameters, so whatever defaults parameters.json / block.params hold today are measured; --seed is
left out for the block's own default seed). Runs go one after another in a subprocess whose wall time is
measured; BLAS/OpenMP/TF threads are capped (--threads). From each metrics.json we keep params, dendrites,
epochs, float/int8 accuracy on validation and holdout, artifact sizes, MACs, arena bytes and the resolved
config, plus the git commit and the dirty block files, because the defaults are still being tuned.

Results merge into bench/results/default_runs.json keyed by (dataset, seed), so re-running one dataset keeps
the others. --report prints the comparison with bench/results/keras_reference_<dataset>.json (written by
`python -m bench.keras_reference`); --update-results-md also refreshes the generated block of this
benchmark's section in bench/RESULTS.md.
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
    RESULTS_MD,
    fmt_pm,
    git,
    machine_info,
    markdown_table,
    run_train,
    text_table,
    update_md_section,
    write_json,
)

DATASETS = ("hello-world", "commands12")
RESULTS_JSON = RESULTS_DIR / "default_runs.json"
SECTION = "## Default block run vs EI's default Keras classifier"
BLOCK_PATHS = ("train.py", "parameters.json", "block", "dendritic", "kws", "export")
ARTIFACTS = ("model.onnx", "model.tflite", "model_quantized_int8_io.tflite")
KEPT_METRICS = ("params", "dendrites", "epochs", "float_accuracy", "int8_accuracy", "holdout_float_accuracy",
                "holdout_int8_accuracy", "train_seconds", "total_seconds", "macs", "arena_bytes", "files",
                "model_format", "parity")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), help="folder names under --data-root")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--seeds", type=int, default=3, help="seeds: block default seed, +1, ...")
    p.add_argument("--out-root", type=Path, default=REPO / "out" / "bench" / "default_runs",
                   help="where each run's --out-directory goes (wiped before the run)")
    p.add_argument("--threads", type=int, default=1, help="cap for OMP/MKL/TF threads in the child")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run before it is killed")
    p.add_argument("--python", default=sys.executable, help="interpreter for train.py")
    p.add_argument("--report", action="store_true", help="no training: print tables from the JSON results")
    p.add_argument("--update-results-md", action="store_true", help=f"refresh our part of {RESULTS_MD.name}")
    return p.parse_args(argv)


EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+ phase=(\w+) dendrites=(\d+) "
                        r".*?val_acc=([\d.]+)(?: holdout_acc=([\d.]+))?")
FINAL_LINE = re.compile(r"best model has (\d+) dendrites, (\d+) params")


def log_summary(lines: list[str]) -> dict | None:
    """Torch accuracy of the chosen model read back from the training log, for runs whose export failed.

    The block keeps, for the final dendrite count, its best validation epoch (latest on ties); we take that
    epoch's val_acc/holdout_acc (4 decimals). None when the log has no final line (e.g. training failed).
    """
    final = next((m for ln in lines if (m := FINAL_LINE.search(ln))), None)
    if final is None:
        return None
    k = int(final.group(1))
    epochs = [m.groups() for ln in lines if (m := EPOCH_LINE.match(ln))]
    best = None
    for ep, phase, dendrites, val, hold in epochs:
        if phase == "neuron" and int(dendrites) == k and (best is None or float(val) >= float(best[3])):
            best = (ep, phase, dendrites, val, hold)
    return {"dendrites": k, "params": int(final.group(2)), "epochs": len(epochs),
            "best_epoch": int(best[0]) if best else None,
            "val_accuracy": float(best[3]) if best else None,
            "holdout_accuracy": float(best[4]) if best and best[4] else None}


def block_default_seed() -> int:
    """The seed train.py uses when --seed is not given (parameters.json)."""
    params = json.loads((REPO / "parameters.json").read_text())["parameters"]
    return int(next(p["value"] for p in params if p["param"] == "seed"))


def block_provenance() -> dict:
    """Which block code was measured: commit plus any uncommitted changes to the block's files."""
    return {"git_head": git("rev-parse", "--short", "HEAD"),
            "dirty": git("status", "--porcelain", "--", *BLOCK_PATHS).splitlines()}


def run_one(dataset: str, seed: int, args: argparse.Namespace) -> dict:
    """Train once in a subprocess (`--seed` only when it differs from the block default); return the timing,
    return code, the metrics we keep and, from the log, the torch accuracy of the chosen model."""
    data_dir = args.data_root / dataset
    out_dir = args.out_root / f"{dataset}-seed{seed}"
    train_args = ["--data-directory", str(data_dir), "--holdout-directory", str(data_dir / "holdout")]
    train_args += ["--seed", str(seed)] if seed != block_default_seed() else []
    record: dict = {"dataset": dataset, "seed": seed, "out_directory": str(out_dir),
                    "block": block_provenance(), "machine": machine_info()}
    run = run_train(train_args, out_dir, python=args.python, threads=args.threads, timeout=args.timeout)
    metrics = run.pop("metrics")
    record.update(run)
    record["torch_from_log"] = log_summary((out_dir / "train.log").read_text(errors="replace").splitlines())
    if metrics is None:
        return record
    record.update({k: metrics[k] for k in KEPT_METRICS if k in metrics})
    record["artifact_bytes"] = {n: (out_dir / n).stat().st_size for n in ARTIFACTS if (out_dir / n).exists()}
    record["cycles"] = metrics.get("cycles", [])
    record["config"] = metrics.get("config", {})
    record["torch_accuracy"] = {split: ev.get("torch", {}).get("accuracy")
                                for split, ev in metrics.get("evaluation", {}).items()}
    return record


def load_runs(path: Path) -> list[dict]:
    return json.loads(path.read_text())["runs"] if path.exists() else []


def merge_runs(old: list[dict], new: list[dict]) -> list[dict]:
    """New runs replace old ones with the same (dataset, seed); the rest are kept."""
    fresh = {(r["dataset"], r["seed"]) for r in new}
    return sorted([r for r in old if (r["dataset"], r["seed"]) not in fresh] + new,
                  key=lambda r: (r["dataset"], r["seed"]))


def ok_runs(runs: list[dict], dataset: str) -> list[dict]:
    return [r for r in runs if r["dataset"] == dataset and r.get("returncode") == 0]


def pct(values: list[float | None]) -> str:
    """Accuracies as mean ± sd in percent."""
    return fmt_pm([None if v is None else 100 * v for v in values], digits=1)


def num(values: list[float | int | None], digits: int = 0) -> str:
    """A count/size: the value if all runs agree, else mean ± sd."""
    vals = [v for v in values if v is not None]
    if vals and len(set(vals)) == 1:
        return f"{vals[0]:,.{digits}f}"
    return fmt_pm(vals, digits=digits)


def each(values: list[int | None]) -> str:
    """A per-seed count (params, dendrites, epochs): the value if all runs agree, else 'a / b / c'."""
    vals = [v for v in values if v is not None]
    return "–" if not vals else f"{vals[0]:,}" if len(set(vals)) == 1 else " / ".join(f"{v:,}" for v in vals)


def keras_reference(dataset: str) -> dict | None:
    path = RESULTS_DIR / f"keras_reference_{dataset}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ours_row(ds: str, ours: list[dict]) -> list[str]:
    """Summary row of the block runs that finished (metrics.json written)."""
    def col(key: str) -> list:
        return [r.get(key) for r in ours]
    model = f"**ours**: default `train.py` ({ours[0].get('model_format')}, {each(col('dendrites'))} dendr.)"
    sizes = " / ".join(num([r["artifact_bytes"].get(a) for r in ours]) for a in ARTIFACTS)
    return [ds, model, each(col("params")), each(col("epochs")), pct(col("float_accuracy")),
            pct(col("int8_accuracy")), pct(col("holdout_float_accuracy")), pct(col("holdout_int8_accuracy")),
            num(col("train_seconds")), num(col("wall_seconds")), sizes, num(col("arena_bytes"))]


def logged_row(ds: str, logged: list[dict]) -> list[str]:
    """Summary row of every block run's chosen model as the training log reports it (torch, float)."""
    def col(key: str) -> list:
        return [r.get(key) for r in logged]
    model = f"ours, torch, from the log: all seeds incl. failed exports ({each(col('dendrites'))} dendrites)"
    return [ds, model, each(col("params")), each(col("epochs")), pct(col("val_accuracy")), "–",
            pct(col("holdout_accuracy")), "–", "–", "–", "–", "–"]


def keras_rows(ds: str, ref: dict) -> list[list[str]]:
    """One row per epoch budget of the Keras reference; wall time only for the budget that was trained."""
    trained = max(map(int, ref["summary"]))
    rows = []
    for budget in ref["summary"]:
        rs = [r for r in ref["runs"] if r["epochs"] == int(budget)]
        wall = num([r["seed_wall_seconds"] for r in rs]) if int(budget) == trained else "–"
        rows.append([ds, f"EI default Keras, {budget} epochs", f"{ref['params']:,}", budget,
                     pct([r["val_accuracy"] for r in rs]), "–",
                     pct([r.get("holdout_accuracy") for r in rs]), "–",
                     num([r["fit_seconds"] for r in rs]), wall, "–", "–"])
    return rows


def comparison_rows(runs: list[dict], datasets: list[str]) -> list[list[str]]:
    """Per dataset: ours (finished runs), ours from the logs (all runs), EI's Keras net per epoch budget."""
    rows = []
    for ds in datasets:
        if ours := ok_runs(runs, ds):
            rows.append(ours_row(ds, ours))
        logged = [r["torch_from_log"] for r in runs if r["dataset"] == ds and r.get("torch_from_log")]
        if logged:
            rows.append(logged_row(ds, logged))
        if ref := keras_reference(ds):
            rows += keras_rows(ds, ref)
    return rows


COMPARISON_HEADERS = ["dataset", "model", "params", "epochs", "val float %", "val int8 %", "holdout float %",
                      "holdout int8 %", "train s", "wall s", "onnx / tflite / int8 tflite bytes", "arena B"]


def pair_pct(a: float | None, b: float | None) -> str:
    """'84.8 / 84.5' (float / int8 accuracy in %); a missing value shows as '–'."""
    return " / ".join("–" if v is None else f"{100 * v:.1f}" for v in (a, b))


def per_seed_rows(runs: list[dict], datasets: list[str]) -> list[list[object]]:
    """One row per block run, with its dendrite cycles, so a change in the defaults is easy to spot."""
    rows: list[list[object]] = []
    for r in (r for ds in datasets for r in runs if r["dataset"] == ds):
        if r.get("returncode") != 0:
            log = r.get("torch_from_log") or {}
            failed = f"**FAILED** (exit {r.get('returncode')}): {r.get('error')}"
            rows.append([r["dataset"], r["seed"], f"{log.get('params', 0):,}", log.get("dendrites", "–"),
                         log.get("epochs", "–"), pair_pct(log.get("val_accuracy"), None),
                         pair_pct(log.get("holdout_accuracy"), None), f"{r['wall_seconds']:.0f}",
                         r["block"]["git_head"], failed])
            continue
        cycles = "; ".join(f"k={c['dendrites']}: {c['params']:,} p, val {100 * c['best_val_accuracy']:.1f} "
                           f"@ ep {c['epoch']}" for c in r.get("cycles", []))
        commit = r["block"]["git_head"] + ("+dirty" if r["block"]["dirty"] else "")
        rows.append([r["dataset"], r["seed"], f"{r['params']:,}", r["dendrites"], r["epochs"],
                     pair_pct(r["float_accuracy"], r["int8_accuracy"]),
                     pair_pct(r.get("holdout_float_accuracy"), r.get("holdout_int8_accuracy")),
                     f"{r['wall_seconds']:.0f}", commit, cycles])
    return rows


PER_SEED_HEADERS = ["dataset", "seed", "params", "dendrites", "epochs", "val float / int8 %",
                    "holdout float / int8 %", "wall s", "commit", "cycles (best val per dendrite count)"]


def keras_seed_rows(datasets: list[str]) -> list[list[object]]:
    """One row per (dataset, seed, epoch budget) of the Keras reference."""
    return [[ds, r["seed"], r["epochs"], r["best_epoch"], f"{100 * r['val_accuracy']:.1f}",
             f"{100 * r['holdout_accuracy']:.1f}" if "holdout_accuracy" in r else "–",
             f"{r['fit_seconds']:.1f}"]
            for ds in datasets for r in (keras_reference(ds) or {"runs": []})["runs"]]


KERAS_SEED_HEADERS = ["dataset", "seed", "epochs", "best epoch (val_loss)", "val %", "holdout %", "fit s"]

NOTES = """\
Measured {dates} (UTC) on the shared 2-core dev machine, CPU only, runs strictly one after another, 1 thread
each (OMP/MKL/TF capped; the block's torch trainer uses 1 thread). Accuracies: mean ± sample sd over seeds,
in %. val = EI's validation split (`X_split_test.npy`); holdout = `holdout/`, never used for any choice.
wall s = the whole `train.py` process (load, train, fold, ONNX/TFLite export, verification, TFLM run), or
for Keras one seed's fit + evaluation; train s = the training loop only (Keras: `model.fit`). The Keras net
is not exported (no int8 / sizes); the export section above has the plain ei-default's sizes. A failed
block run (export gate) writes no metrics.json: its row shows the torch accuracy of the chosen model as the
training log prints it (4 decimals), the same numbers metrics.json reports for the runs that pass."""

KERAS_NOTE = """\
EI default Keras net, per seed. A 30-epoch row is the best-val_loss checkpoint as it stood after epoch 30
of the 100-epoch run, which equals a separate 30-epoch run bit for bit (checked with `--separate`); its
fit s is 30 % of the 100-epoch fit."""


def provenance(ours: list[dict]) -> str:
    """Commit(s) of the measured block code, with uncommitted block files named."""
    def one(r: dict) -> str:
        dirty = sorted({ln.split()[-1] for ln in r["block"]["dirty"]})
        return r["block"]["git_head"] + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else "")
    return "; ".join(sorted({one(r) for r in ours})) or "–"


PER_RUN_ARGS = ("data_directory", "holdout_directory", "out_directory", "seed")


def shared_arguments(ours: list[dict]) -> list[str]:
    """The log's `arguments:` lines minus the per-run values (dirs, seed): one line if the defaults agreed."""
    def strip(line: str) -> str:
        return " ".join(kv for kv in line.split() if kv.split("=")[0] not in PER_RUN_ARGS)
    return sorted({strip(r["arguments"]) for r in ours if r.get("arguments")})


def _span(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    lo, hi = f"{min(values):{fmt}}", f"{max(values):{fmt}}"
    return lo if lo == hi else f"{lo}–{hi}"


def checks_line(ours: list[dict]) -> str:
    """The measured ranges the README quotes (export parity, TFLM vs LiteRT, wall time), from these runs'
    metrics.json, so no hand-copied bound can drift from what the runs logged."""
    par = [r["parity"] for r in ours if r.get("returncode") == 0 and r.get("parity")]
    walls = [r["wall_seconds"] for r in ours if r.get("returncode") == 0]

    def got(key: str) -> list[float]:
        return [p[key] for p in par if p.get(key) is not None]

    return (f"Measured ranges over these {len(par)} exported runs (metrics.json `parity`): ONNX Runtime vs torch "
            f"max |diff| {_span(got('onnx_max_abs_diff'), '.1e')}, float TFLite vs torch "
            f"{_span(got('tflite_max_abs_diff'), '.1e')} (gate 1e-4), folded vs unfolded torch "
            f"{_span(got('fold_max_abs_diff'), 'g')}; TFLite Micro vs LiteRT int8 outputs max "
            f"{_span(got('tflm_max_lsb'), 'd')} LSB, mean {_span(got('tflm_mean_lsb'), '.3f')} LSB, argmax agreement "
            f"{_span(got('tflm_argmax_agreement'), '.3f')} (gate: mean <= 1 LSB, >= 99 %); wall "
            f"{_span(walls, '.0f')} s per run.")


def report_markdown(runs: list[dict], datasets: list[str]) -> str:
    """The generated part of the RESULTS.md section: tables, machine, commands, dates, provenance."""
    ours = [r for r in runs if r["dataset"] in datasets]
    refs = [ref for ds in datasets if (ref := keras_reference(ds))]
    stamped = ours + refs
    dates = ", ".join(sorted({x["machine"]["date_utc"][:10] for x in stamped}))
    loads = [x["machine"]["loadavg_1_5_15"][0] for x in stamped]
    lscpu = stamped[-1]["machine"]["lscpu_head"] if stamped else []
    seeds = sorted({r["seed"] for r in ours})
    clean = not any(r["block"]["dirty"] for r in ours)
    run_cmd = f".venv/bin/python -m bench.default_runs --seeds {len(seeds)} --datasets {' '.join(datasets)}"
    data = f"{DATA_ROOT}/<dataset>"
    one_run = (f"    train.py --data-directory {data} --holdout-directory {data}/holdout [--seed S]"
               " --out-directory out/bench/default_runs/<dataset>-seed<S>")
    keras_total = ", ".join(f"{x['dataset']} {x['total_seconds']:.0f} s" for x in refs)
    return "\n".join([
        NOTES.format(dates=dates), "",
        markdown_table(COMPARISON_HEADERS, comparison_rows(runs, datasets)), "",
        "Block runs, per seed:", "",
        markdown_table(PER_SEED_HEADERS, per_seed_rows(runs, datasets)), "",
        checks_line(ours), "",
        KERAS_NOTE + f" Keras wall s excludes the TF import; one process for all seeds and budgets took "
        f"{keras_total or '–'}.", "",
        markdown_table(KERAS_SEED_HEADERS, keras_seed_rows(datasets)), "",
        f"Block code measured: {provenance(ours)}"
        + (" (no uncommitted changes to the block's files)" if clean and ours else "")
        + ". Defaults as train.py resolved them (its `arguments:` log line minus dirs and seed):", "",
        "```", *shared_arguments(ours), "```", "",
        "Commands (repo root):", "",
        "```", *[x["command"] for x in refs],
        f"{run_cmd}   # seeds {', '.join(map(str, seeds))}, one run each:",
        one_run + f"   # --seed only when S != {block_default_seed()}",
        ".venv/bin/python -m bench.default_runs --report --update-results-md   # regenerates this block",
        "```", "",
        (f"1-min load average sampled with each run: {min(loads, default=0):.1f}–{max(loads, default=0):.1f}"
         " (other engineers' jobs share the 2 cores), so wall and train s are noisy."),
        "",
        "Machine (`lscpu | head`):", "",
        "```", *lscpu, "```",
    ])


def print_tables(runs: list[dict], datasets: list[str]) -> None:
    print(text_table(COMPARISON_HEADERS, comparison_rows(runs, datasets)))
    print()
    print(text_table(PER_SEED_HEADERS, per_seed_rows(runs, datasets)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_root = args.data_root.resolve()
    runs = load_runs(RESULTS_JSON)
    if not args.report:
        first = block_default_seed()
        for dataset in args.datasets:
            for seed in range(first, first + args.seeds):
                print(f"[default_runs] {dataset} seed {seed} ...", flush=True)
                rec = run_one(dataset, seed, args)
                runs = merge_runs(runs, [rec])
                write_json(RESULTS_JSON, {"runs": runs})  # after every run, so a later failure loses nothing
                status = "ok" if rec.get("returncode") == 0 else f"FAILED: {rec.get('error')}"
                print(f"[default_runs] {dataset} seed {seed}: {status} in {rec['wall_seconds']:.0f}s",
                      flush=True)
    print_tables(runs, args.datasets)
    if args.update_results_md:
        body = report_markdown(runs, args.datasets)
        update_md_section(RESULTS_MD, SECTION, body, tool="bench/default_runs.py")
        print(f"updated '{SECTION}' in {RESULTS_MD}")
    return 0 if all(r.get("returncode") == 0 for r in runs if r["dataset"] in args.datasets) else 1


if __name__ == "__main__":
    sys.exit(main())
