"""Where does one of our PB training runs spend its time? CPU time per epoch and phase, by part (issue 8).

    .venv/bin/python -m bench.profile_ours --profile gd --datasets hello-world --seeds 1
    .venv/bin/python -m bench.profile_ours --profile cc --op-table   # + torch.profiler's top operators

One in-process run of `bench.pb_speed.run_ours` (the speed bench's RunSpec, data and block defaults; the
first of --datasets and --seeds) with timers around its parts. Prints milliseconds per epoch by phase (n0:
neuron phase without dendrites, n+: with dendrites, p: CC dendrite phase) and writes them to
bench/results/pb_profile.json (or --out). Findings: bench/profile_notes.md. `python -m bench.pb_speed
--profile MODE ...` forwards here.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from bench.common import RESULTS_DIR, write_json
from bench.pb_speed import MODES, RunSpec, add_spec_options, phase_key, run_ours, spec_from
from kws.nets.convfc import KWSNet

RESULTS = RESULTS_DIR / "pb_profile.json"


def profile_ours(spec: RunSpec, op_table: bool) -> dict:
    """Run `fit` in-process with CPU-time timers wrapped around its parts (no library edits; CPU time
    because the shared machine's load makes wall time swing 2-3x) and return milliseconds per epoch by
    phase for: the fused forward + backward pass (KWSNet.cross_entropy_step, ops.Tape) or, where it does
    not apply, the autograd forward and backward / CC correlation + candidates' backward / optimizer step
    / validation+holdout evaluation / end_epoch (schedule, checkpoint deep copy, restructure) / the rest
    (loop overhead). With op_table, also run it under torch.profiler and add the top operators by self CPU
    time."""
    from dendritic import pb
    from kws import trainer

    buckets: dict[str, dict[str, float]] = {}
    epochs: dict[str, int] = {}
    state = {"phase": "n0", "depth": 0, "in_step": False, "in_eval": False, "backward_i": 0}

    def add(name: str, dt: float) -> None:
        b = buckets.setdefault(state["phase"], {})
        b[name] = b.get(name, 0.0) + dt

    def timed(name_of, fn):
        def wrapper(*a, **kw):
            t = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                name = name_of(*a, **kw)
                if name:
                    add(name, time.process_time() - t)
        return wrapper

    orig_step, orig_end = pb.DendriticModel.training_step, pb.DendriticModel.end_epoch
    orig_eval, orig_fwd, orig_fused = trainer.evaluate, KWSNet.forward, KWSNet.cross_entropy_step
    orig_cc, orig_back, orig_adam = pb.cc.candidate_backward, torch.Tensor.backward, torch.optim.Adam.step

    def step(self, *a, **kw):
        key = phase_key(self.phase.value, self.num_dendrites)
        if key != state["phase"] or not state["in_step"]:
            state["phase"] = key
        state["in_step"], state["backward_i"] = True, 0
        try:
            return timed(lambda *_a, **_k: "train step (total)", orig_step)(self, *a, **kw)
        finally:
            state["in_step"] = False

    def end_epoch(self, *a, **kw):
        epochs[state["phase"]] = epochs.get(state["phase"], 0) + 1
        return timed(lambda *_a, **_k: "end_epoch", orig_end)(self, *a, **kw)

    def evaluate(*a, **kw):
        state["in_eval"] = True
        try:
            return timed(lambda *_a, **_k: "validation + holdout eval", orig_eval)(*a, **kw)
        finally:
            state["in_eval"] = False

    def forward(self, *a, **kw):
        def name(*_a, **_k):
            if self.training:
                return "  forward"
            return None if state["in_eval"] else "eval-mode forward outside evaluate()"
        return timed(name, orig_fwd)(self, *a, **kw)

    def backward(self, *a, **kw):
        state["backward_i"] += 1
        label = "  task-loss backward" if state["backward_i"] == 1 else "  CC surrogate backward"
        return timed(lambda *_a, **_k: label if state["in_step"] else None, orig_back)(self, *a, **kw)

    pb.DendriticModel.training_step, pb.DendriticModel.end_epoch = step, end_epoch
    trainer.evaluate, KWSNet.forward = evaluate, forward
    KWSNet.cross_entropy_step = timed(lambda *_a, **_k: "  fused forward + backward (Tape)", orig_fused)
    pb.cc.candidate_backward = timed(lambda *_a, **_k: "  CC correlation + candidates' backward", orig_cc)
    torch.Tensor.backward = backward
    torch.optim.Adam.step = timed(lambda *_a, **_k: "  optimizer step", orig_adam)
    prof = None
    try:
        if op_table:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        t0 = time.perf_counter()
        res = run_ours(spec)
        total = time.perf_counter() - t0
    finally:
        if prof is not None:
            prof.__exit__(None, None, None)
        pb.DendriticModel.training_step, pb.DendriticModel.end_epoch = orig_step, orig_end
        trainer.evaluate, KWSNet.forward, KWSNet.cross_entropy_step = orig_eval, orig_fwd, orig_fused
        pb.cc.candidate_backward, torch.Tensor.backward, torch.optim.Adam.step = orig_cc, orig_back, orig_adam
    report: dict = {"spec": asdict(spec), "seconds_total": total, "epochs_by_phase": epochs,
                    "ms_per_epoch": {}}
    for ph, b in buckets.items():
        n = max(epochs.get(ph, 0), 1)
        cpu = sum(e["cpu_seconds"] for e in res["epochs"] if e["phase"] == ph)
        parts = {k: 1e3 * v / n for k, v in sorted(b.items(), key=lambda kv: -kv[1])}
        timed_top = sum(v for k, v in parts.items() if not k.startswith("  "))
        parts["rest (loop, indexing, logging)"] = 1e3 * cpu / n - timed_top
        report["ms_per_epoch"][ph] = {"epoch (CPU)": 1e3 * cpu / n, **parts}
    if prof is not None:
        report["op_table"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", "--mode", dest="mode", choices=MODES, required=True, metavar="MODE",
                    help="our variant to profile: traditional, gd or cc")
    add_spec_options(ap)
    ap.add_argument("--op-table", action="store_true", help="also torch.profiler's top-operator table")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rep = profile_ours(spec_from(args, args.datasets[0], args.mode, args.seeds[0]), args.op_table)
    for ph, parts in rep["ms_per_epoch"].items():
        print(f"phase {ph} ({rep['epochs_by_phase'].get(ph, 0)} epochs): ms per epoch")
        for k, v in parts.items():
            print(f"  {k:40s} {v:8.1f}")
    print(rep.get("op_table", ""))
    write_json(args.out, rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
