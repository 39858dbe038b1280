"""PB training speed: our traditional / gd / cc modes against `perforatedai` 3.2.9's open-source GD mode.

Why: issue 8 asks whether our PB library is fast enough for EI's compute budget and how it compares with
the reference library on the same net, data and schedule. Every run is a fresh subprocess with one torch
thread; ours run under the block's .venv via `kws.trainer.fit`, perforatedai's under its own
bench/.pai-venv (built by bench/pai_env.sh) with our KWSNet imported via PYTHONPATH and converted by the
library's own API. Runs are interleaved per seed (the order rotates) because the machine is shared and its
load drifts; the load average is recorded around every run.

    .venv/bin/python -m bench.pb_speed                       # hello-world + commands12, seeds 1-3
    .venv/bin/python -m bench.pb_speed --datasets hello-world --seeds 1 --variants gd pai-gd
    .venv/bin/python -m bench.pb_speed --summarise bench/results/pb_speed.json   # tables of a results file

The time breakdown of one of our runs is `python -m bench.profile_ours` (bench/profile_ours.py); `--profile
MODE` here forwards to it.

Settings default to the block's parameters.json defaults (epochs cap, lr, batch size, switch patience,
max dendrites, improvement threshold, init multiplier, dendrite activation, dropout, input noise).

Writes bench/results/pb_speed.json and prints a table. Holdout accuracy is that of the returned model
(the best-validation checkpoint on both sides); the holdout never drives any decision.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

# The pai worker runs this module under bench/.pai-venv with PYTHONPATH=<repo>: everything imported here at
# module level (bench.common, kws.nets.convfc/trainer, and block.data inside load_dataset) needs only
# numpy and torch.
from bench.common import (
    REPO,
    RESULTS_DIR,
    fmt_pm,
    git,
    load_dataset,
    machine_info,
    text_table,
    thread_env,
    write_json,
)
from kws.nets.convfc import KWSNet, preset
from kws.trainer import evaluate, score, seed_everything

RESULTS = RESULTS_DIR / "pb_speed.json"
OUR_PY = REPO / ".venv" / "bin" / "python"
PAI_PY = REPO / "bench" / ".pai-venv" / "bin" / "python"
VARIANTS = ("traditional", "gd", "cc", "pai-gd")
MODES = ("traditional", "gd", "cc")  # ours


BLOCK_PARAMS = {  # RunSpec field <- parameters.json "param": the bench follows the block's defaults
    "epochs": "epochs", "learning_rate": "learning-rate", "batch_size": "batch-size", "lr_patience": "lr-patience",
    "switch_patience": "switch-patience", "max_dendrites": "max-dendrites", "max_tries": "max-dendrite-tries",
    "improvement_threshold": "improvement-threshold", "init_mult": "init-multiplier",
    "activation": "dendrite-activation", "dropout": "dropout", "input_noise": "input-noise",
    "dendrite_patience": "dendrite-patience", "dendrite_update": "dendrite-update",
}


def block_defaults() -> dict:
    """The block's current defaults from parameters.json, so the bench measures what Studio runs."""
    params = {p["param"]: p["value"] for p in json.loads((REPO / "parameters.json").read_text())["parameters"]}
    return {field: params[name] for field, name in BLOCK_PARAMS.items()}


_D = block_defaults()


@dataclass(frozen=True)
class RunSpec:
    """Everything both libraries are given: the same net, data split, seed and schedule knobs."""

    dataset: str
    variant: str
    seed: int
    epochs: int = _D["epochs"]  # cap, all phases included
    learning_rate: float = _D["learning_rate"]
    batch_size: int = _D["batch_size"]
    lr_patience: int = _D["lr_patience"]  # ReduceLROnPlateau(mode=max, factor=0.5)
    switch_patience: int = _D["switch_patience"]  # perforatedai: n_epochs_to_switch
    max_dendrites: int = _D["max_dendrites"]
    max_tries: int = _D["max_tries"]
    improvement_threshold: float = _D["improvement_threshold"]
    init_mult: float = _D["init_mult"]
    activation: str = _D["activation"]  # dendrite activation (perforatedai: pai_forward_function)
    dropout: float = _D["dropout"]
    input_noise: float = _D["input_noise"]  # KWSNet's training-time Gaussian input noise
    dendrite_patience: int = _D["dendrite_patience"]  # ours, cc only
    dendrite_update: bool = _D["dendrite_update"]  # ours, cc only

    def net(self, n_features: int, n_classes: int):
        return preset("ei-default", n_features, n_classes, dropout=self.dropout, noise_std=self.input_noise)


def add_spec_options(ap: argparse.ArgumentParser) -> None:
    """The command-line options that set a RunSpec (shared with bench/profile_ours.py)."""
    ap.add_argument("--datasets", nargs="+", default=["hello-world", "commands12"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=RunSpec.epochs)
    ap.add_argument("--activation", default=RunSpec.activation, choices=("tanh", "sigmoid", "relu"))
    ap.add_argument("--input-noise", type=float, default=RunSpec.input_noise)
    ap.add_argument("--switch-patience", type=int, default=RunSpec.switch_patience)


def spec_from(args: argparse.Namespace, dataset: str, variant: str, seed: int) -> RunSpec:
    return RunSpec(dataset=dataset, variant=variant, seed=seed, epochs=args.epochs, activation=args.activation,
                   input_noise=args.input_noise, switch_patience=args.switch_patience)


# ---- shared by both workers: data via bench.common.load_dataset (block.data), and kws.trainer's
# evaluate and score (the score our schedule maximises is fed to perforatedai too, so both libraries
# switch on the same signal) ------------------------------------------------------------------------
def phase_key(phase: str, dendrites: int) -> str:
    """'n0' neuron phase without dendrites, 'n+' neuron phase with dendrites, 'p' CC dendrite phase."""
    return "p" if phase == "dendrite" else ("n0" if dendrites == 0 else "n+")


# ---- worker: our library -------------------------------------------------------------------------
def run_ours(spec: RunSpec) -> dict:
    from dendritic import PBConfig, ScheduleConfig
    from kws.trainer import RunConfig, TrainConfig, fit

    data = load_dataset(spec.dataset)
    run = RunConfig(
        net=spec.net(data.n_features, data.n_classes),
        pb=PBConfig(mode=spec.variant, activation=spec.activation, init_mult=spec.init_mult,
                    dendrite_update=spec.dendrite_update),
        schedule=ScheduleConfig(max_dendrites=spec.max_dendrites, switch_patience=spec.switch_patience,
                                improvement_threshold=spec.improvement_threshold, max_tries=spec.max_tries,
                                dendrite_patience=spec.dendrite_patience),
        train=TrainConfig(epochs=spec.epochs, learning_rate=spec.learning_rate, batch_size=spec.batch_size,
                          lr_patience=spec.lr_patience, seed=spec.seed, device="cpu", threads=1))
    cpu_marks: list[float] = []

    def log(msg: str) -> None:
        """fit() logs once before epoch 1 and once after each epoch: CPU time between those lines is the
        epoch's CPU time (wall time is the EpochRecord's own)."""
        if msg.startswith("training on") or (msg.startswith("epoch ") and " phase=" in msg):
            cpu_marks.append(time.process_time())

    t0, c0 = time.monotonic(), time.process_time()
    res = fit(run, data.splits(), log=log)
    train_s, train_cpu = time.monotonic() - t0, time.process_time() - c0
    dm = res.model
    xh, yh = torch.as_tensor(data.x_holdout), torch.as_tensor(data.y_holdout)
    xv, yv = torch.as_tensor(data.x_val), torch.as_tensor(data.y_val)
    cpu = np.diff(cpu_marks).tolist()
    epochs = [{"phase": phase_key(r.phase, r.dendrites), "dendrites": r.dendrites, "seconds": r.seconds,
               "cpu_seconds": c, "val_acc": r.val_acc, "holdout_acc": r.holdout_acc}
              for r, c in zip(res.history, cpu)]
    return {"train_seconds": train_s, "train_cpu_seconds": train_cpu, "epochs": epochs,
            "final_dendrites": dm.num_dendrites,
            "deployed_params": dm.deployed_params(), "val_acc": evaluate(dm, xv, yv)[1],
            "holdout_acc": evaluate(dm, xh, yh)[1]}


# ---- worker: perforatedai (runs under bench/.pai-venv) ----------------------------------------------
def configure_pai(spec: RunSpec) -> None:
    """perforatedai's open-source GD mode with our schedule knobs. Settings that have no counterpart in
    our library are turned off so both sides run the same schedule: no LR sweep after a switch
    (find_best_lr), no 'only give up after an LR drop' guard, raw score (history_lookback 1, no warm-up
    epochs), no graphs and no per-epoch 'latest' saves (best_model / switch saves stay: the library
    needs them to revert)."""
    from perforatedai import globals_perforatedai as GPA

    pc = GPA.pc
    pc.set_testing_dendrite_capacity(False)  # the default True switches every epoch and stops at 3
    pc.set_configuration_confirmed(True)  # skip the interactive target-selection TUI
    pc.set_unwrapped_modules_confirmed(True)
    pc.set_modules_to_perforate([nn.Conv1d, nn.Linear])  # = our scope 'all'
    pc.set_perforated_backpropagation(False)
    pc.set_switch_mode(pc.DOING_HISTORY)
    pc.set_n_epochs_to_switch(spec.switch_patience)
    pc.set_max_dendrites(spec.max_dendrites)
    pc.set_max_dendrite_tries(spec.max_tries)
    pc.set_improvement_threshold([spec.improvement_threshold])
    pc.set_improvement_threshold_raw(1e-12)
    pc.set_candidate_weight_initialization_multiplier(spec.init_mult)
    pc.set_pai_forward_function(getattr(torch, spec.activation))
    pc.set_find_best_lr(False)
    pc.set_dont_give_up_unless_learning_rate_lowered(False)
    pc.set_history_lookback(1)
    pc.set_initial_history_after_switches(0)
    pc.set_test_saves(False)
    pc.set_weight_decay_accepted(True)
    pc.set_silent(True)
    pc.set_verbose(False)


def pai_modules(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if type(m).__name__ == "PAINeuronModule"]


def pai_dendrites(net: nn.Module) -> int:
    return max((len(m.dendrite_module.layers) for m in pai_modules(net)), default=0)


def pai_deployed_params(net: nn.Module) -> int:
    """Our deployment count (pb-algorithm §6.2) on perforatedai's structure: (k+1)·P_M + k·C + C·k(k−1)/2
    per wrapped module plus unwrapped parameters, so both sides are counted alike."""
    total, wrapped = 0, set()
    for m in pai_modules(net):
        k = len(m.dendrite_module.layers)
        main = m.main_module
        p_main = sum(p.numel() for p in main.parameters())
        c = main.weight.shape[0]
        total += (k + 1) * p_main + k * c + c * k * (k - 1) // 2
        wrapped.update(id(p) for p in m.parameters())
    return total + sum(p.numel() for p in net.parameters() if id(p) not in wrapped)


def run_pai(spec: RunSpec) -> dict:
    """The same loop as kws.trainer.fit (one gather per epoch, batch views, train accuracy from the
    step's logits, validation every epoch, holdout only at a new best validation score), with
    perforatedai's tracker deciding switches and owning the optimizer/scheduler."""
    from perforatedai import globals_perforatedai as GPA
    from perforatedai import utils_perforatedai as UPA

    torch.set_num_threads(1)
    data = load_dataset(spec.dataset)
    seed_everything(spec.seed)
    net: nn.Module = KWSNet(spec.net(data.n_features, data.n_classes))
    configure_pai(spec)
    t0, c0 = time.monotonic(), time.process_time()
    net = UPA.perforate_model(net, save_name="PAI", making_graphs=False, maximizing_score=True)
    for m in pai_modules(net):
        if isinstance(m.main_module, nn.Conv1d):
            m.set_this_output_dimensions([-1, 0, -1])
    tracker = GPA.pai_tracker
    tracker.set_optimizer(torch.optim.Adam)
    tracker.set_scheduler(torch.optim.lr_scheduler.ReduceLROnPlateau)
    sched_args = {"mode": "max", "factor": 0.5, "patience": spec.lr_patience}

    def make_opt(model: nn.Module) -> torch.optim.Optimizer:
        return tracker.setup_optimizer(model, {"params": model.parameters(), "lr": spec.learning_rate},
                                       dict(sched_args))[0]

    opt = make_opt(net)
    t = {k: torch.as_tensor(v) for k, v in vars(data.splits()).items()}
    gen = torch.Generator().manual_seed(spec.seed)
    n, bs = len(t["x_train"]), spec.batch_size
    epochs: list[dict] = []
    complete = False
    best_score = -float("inf")
    for _ in range(spec.epochs):
        e0, ec0 = time.monotonic(), time.process_time()
        k = pai_dendrites(net)
        net.train()
        loss_sum = torch.zeros(())
        correct = torch.zeros(())
        perm = torch.randperm(n, generator=gen)
        x_epoch, y_epoch = t["x_train"][perm], t["y_train"][perm]
        for i in range(0, n, bs):
            xb, yb = x_epoch[i:i + bs], y_epoch[i:i + bs]
            opt.zero_grad(set_to_none=True)
            out = net(xb)
            loss = nn.functional.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            loss_sum.add_(loss.detach(), alpha=len(yb))
            correct += (out.detach().argmax(1) == yb).sum()
        v_loss, v_acc = evaluate(net, t["x_val"], t["y_val"])
        v_score = score(v_acc, v_loss)
        h_acc = evaluate(net, t["x_holdout"], t["y_holdout"])[1] if v_score > best_score else None
        best_score = max(best_score, v_score)
        net, restructured, complete = tracker.add_validation_score(v_score, net)
        if restructured and not complete:
            opt = make_opt(net)
        epochs.append({"phase": phase_key("neuron", k), "dendrites": k, "seconds": time.monotonic() - e0,
                       "cpu_seconds": time.process_time() - ec0, "val_acc": v_acc, "holdout_acc": h_acc})
        if complete:
            break
    if not complete:  # epoch cap: the library's best checkpoint is the result, as on our side
        net = UPA.load_system(net, "PAI", "best_model", switch_call=True)
    train_s, train_cpu = time.monotonic() - t0, time.process_time() - c0
    return {"train_seconds": train_s, "train_cpu_seconds": train_cpu, "epochs": epochs,
            "final_dendrites": pai_dendrites(net),
            "deployed_params": pai_deployed_params(net), "library_param_count": int(UPA.count_params(net)),
            "val_acc": evaluate(net, t["x_val"], t["y_val"])[1],
            "holdout_acc": evaluate(net, t["x_holdout"], t["y_holdout"])[1], "completed": bool(complete)}


def worker(spec: RunSpec, out: Path) -> None:
    torch.set_num_threads(1)
    result = run_pai(spec) if spec.variant == "pai-gd" else run_ours(spec)
    out.write_text(json.dumps(result))


# ---- orchestrator --------------------------------------------------------------------------------
def ensure_pai_venv() -> None:
    if not PAI_PY.exists():
        subprocess.run(["bash", str(REPO / "bench" / "pai_env.sh")], check=True)


def launch(spec: RunSpec) -> dict:
    """One run in a fresh single-threaded subprocess, in a scratch cwd (perforatedai writes its
    checkpoints and config there). Returns the worker's result plus wall time and load averages."""
    py = PAI_PY if spec.variant == "pai-gd" else OUR_PY
    env = os.environ | thread_env(1) | {"PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="pb_speed_") as tmp:
        out = Path(tmp) / "result.json"
        load0 = os.getloadavg()
        t0 = time.monotonic()
        proc = subprocess.run([str(py), "-m", "bench.pb_speed", "--worker", json.dumps(asdict(spec)),
                               "--worker-out", str(out)], cwd=tmp, env=env, capture_output=True, text=True,
                              check=False)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{spec.variant} {spec.dataset} seed {spec.seed} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(out.read_text())
    return {"spec": asdict(spec), "process_seconds": wall, "loadavg_before": list(load0),
            "loadavg_after": list(os.getloadavg()), **result}


def order_for(seed_index: int, variants: list[str]) -> list[str]:
    """Rotate the variant order each seed so no variant always runs first or last."""
    r = seed_index % len(variants)
    return variants[r:] + variants[:r]


def per_phase(run: dict, key: str = "seconds") -> dict[str, float]:
    """Mean wall (or, with key='cpu_seconds', CPU) seconds per epoch by phase (n0, n+, p), by dendrite
    count in neuron phases (k1, k2, ...: runs differ in how long they keep each count, so like-for-like
    speed comparisons use these), and over all epochs."""
    by: dict[str, list[float]] = {}
    for e in run["epochs"]:
        keys = [e["phase"], "all"] + ([f"k{e['dendrites']}"] if e["phase"] != "p" else [])
        for k in keys:
            by.setdefault(k, []).append(e[key])
    return {k: statistics.fmean(v) for k, v in by.items()}


pm = partial(fmt_pm, spec=".3g", show_n=False)  # 'm ± sd' (sample sd) over the seeds, '–' for no values


PHASES = ("all", "n0", "k1", "k2", "p")
CLOCKS = {"wall": "seconds", "cpu": "cpu_seconds"}


def summarise(runs: list[dict]) -> dict:
    """Per dataset × variant lists over seeds, and paired (same seed, run back to back) speed ratios,
    for wall and CPU time (CPU time is far less sensitive to the other engineers' load)."""
    out: dict = {}
    for ds in dict.fromkeys(r["spec"]["dataset"] for r in runs):
        out[ds] = {}
        for var in VARIANTS:
            rs = [r for r in runs if r["spec"]["dataset"] == ds and r["spec"]["variant"] == var]
            if not rs:
                continue
            entry: dict = {"seeds": [r["spec"]["seed"] for r in rs]}
            for clock, key in CLOCKS.items():
                phases = [per_phase(r, key) for r in rs]
                entry[f"s_per_epoch_{clock}"] = {k: [p[k] for p in phases if k in p] for k in (*PHASES, "n+")}
            for key in ("train_seconds", "train_cpu_seconds", "process_seconds", "final_dendrites",
                        "deployed_params", "holdout_acc", "val_acc"):
                entry[key] = [r[key] for r in rs]
            entry["epochs"] = [len(r["epochs"]) for r in rs]
            entry["loadavg_1min"] = [r["loadavg_before"][0] for r in rs] + [r["loadavg_after"][0] for r in rs]
            out[ds][var] = entry

        def paired(num: str, den: str, ds: str = ds) -> list[tuple[dict, dict]]:
            """(num-variant run, den-variant run of the same seed) for every num run that has a partner."""
            pairs = []
            for r in runs:
                if r["spec"]["dataset"] != ds or r["spec"]["variant"] != num:
                    continue
                other = [o for o in runs if o["spec"]["dataset"] == ds and o["spec"]["variant"] == den
                         and o["spec"]["seed"] == r["spec"]["seed"]]
                if other:
                    pairs.append((r, other[0]))
            return pairs

        def ratio(num: str, den: str, num_phase: str, den_phase: str, key: str) -> list[float]:
            """num-variant seconds/epoch in num_phase over den-variant's in den_phase, per seed."""
            pairs = [(per_phase(r, key).get(num_phase), per_phase(o, key).get(den_phase)) for r, o in paired(num, den)]
            return [a / b for a, b in pairs if a and b]

        def matched(key: str) -> list[float]:
            """pai-gd / our gd per seed with both runs' per-k seconds/epoch weighted by OUR run's epochs at
            each dendrite count: the whole-run means also differ by how long each schedule keeps each k."""
            out_ = []
            for ours_run, pai_run in paired("gd", "pai-gd"):
                counts = Counter(f"k{e['dendrites']}" for e in ours_run["epochs"] if e["phase"] != "p")
                pai, ours = per_phase(pai_run, key), per_phase(ours_run, key)
                ks = [k for k in counts if k in pai and k in ours]
                out_.append(sum(counts[k] * pai[k] for k in ks) / sum(counts[k] * ours[k] for k in ks))
            return out_

        out[ds]["ratios"] = {f"pai_gd/our_gd matched_{clock}": matched(key) for clock, key in CLOCKS.items()}
        out[ds]["ratios"] |= {
            f"{name}_{clock}": ratio(num, den, a, b, key)
            for clock, key in CLOCKS.items()
            for name, num, den, a, b in (
                ("pai_gd/our_gd all", "pai-gd", "gd", "all", "all"),
                ("pai_gd/our_gd n0", "pai-gd", "gd", "n0", "n0"),
                ("pai_gd/our_gd n+", "pai-gd", "gd", "n+", "n+"),
                ("pai_gd/our_gd k1", "pai-gd", "gd", "k1", "k1"),
                ("pai_gd/our_gd k2", "pai-gd", "gd", "k2", "k2"),
                ("cc/traditional all", "cc", "traditional", "all", "all"),
                ("cc p/traditional", "cc", "traditional", "p", "all"),
                ("cc n+/traditional", "cc", "traditional", "n+", "all"),
            )}
    return out


def table(summary: dict, clock: str = "wall") -> str:
    """Plain-text table (mean ± sd over seeds) and the paired ratios."""
    head = ("dataset", "variant", f"s/ep all ({clock})", "s/ep k=0", "s/ep k=1", "s/ep k=2", "s/ep P",
            f"train s ({clock})",
            "epochs", "dendrites", "params", "holdout acc")
    train_key = "train_seconds" if clock == "wall" else "train_cpu_seconds"
    rows = []
    for ds, by in summary.items():
        for var, s in by.items():
            if var == "ratios":
                continue
            spe = s[f"s_per_epoch_{clock}"]
            rows.append((ds, var, *(pm(spe[k]) for k in PHASES), pm(s[train_key], spec=".1f"),
                         pm(s["epochs"], spec=".1f"), pm(s["final_dendrites"], spec=".1f"),
                         pm(s["deployed_params"], spec=".0f"), pm(s["holdout_acc"], spec=".4f")))
    ratio_lines = [f"{ds}: " + ", ".join(f"{k}={pm(v)}" for k, v in by["ratios"].items()
                                         if v and k.endswith(clock)) for ds, by in summary.items()]
    return "\n".join([text_table(head, rows), "", *ratio_lines])


def machine() -> dict:
    """bench.common.machine_info plus torch's version and the uncommitted files under dendritic/ and kws/ (others
    edit the tree concurrently)."""
    dirty = [ln.strip() for ln in git("status", "--porcelain", "dendritic", "kws").splitlines()]
    return machine_info() | {"torch": torch.__version__, "dendritic_dirty": dirty}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_spec_options(ap)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--profile", choices=MODES, metavar="MODE",
                    help="traditional, gd or cc: instead of the benchmark, `python -m bench.profile_ours --profile MODE` "
                         "with the other options given here (and its --op-table); see its --help")
    ap.add_argument("--summarise", type=Path, metavar="JSON", help="recompute the summary of a results file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    if args.profile:  # bench.profile_ours imports this module: it runs as its own process, not imported here
        cmd = [sys.executable, "-m", "bench.profile_ours", *(sys.argv[1:] if argv is None else argv)]
        return subprocess.run(cmd, cwd=REPO, check=False).returncode
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.worker:
        worker(RunSpec(**json.loads(args.worker)), args.worker_out)
        return 0
    if args.summarise:
        payload = json.loads(args.summarise.read_text())
        payload["summary"] = summarise(payload["runs"])
        write_json(args.summarise, payload)
        for clock in CLOCKS:
            print(table(payload["summary"], clock), end="\n\n")
        return 0
    if "pai-gd" in args.variants:
        ensure_pai_venv()
    runs: list[dict] = []
    info = machine()
    for ds in args.datasets:
        for i, seed in enumerate(args.seeds):
            for var in order_for(i, list(args.variants)):
                r = launch(spec_from(args, ds, var, seed))
                runs.append(r)
                print(f"{ds} seed {seed} {var:11s} epochs {len(r['epochs']):3d} train {r['train_seconds']:6.1f}s "
                      f"({r['train_seconds'] / len(r['epochs']):.3f} s/ep) dendrites {r['final_dendrites']} "
                      f"params {r['deployed_params']} holdout {r['holdout_acc']:.4f} "
                      f"load {r['loadavg_before'][0]:.1f}->{r['loadavg_after'][0]:.1f}", flush=True)
                summary = summarise(runs)
                # after every run: a killed bench keeps its data
                write_json(args.out, {"machine": info, "torch_threads": 1, "runs": runs, "summary": summary})
    summary = summarise(runs)
    for clock in CLOCKS:
        print()
        print(table(summary, clock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
