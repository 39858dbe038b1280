"""The README's "in your own PyTorch loop" example, run as written from outside the checkout, and timed.

    .venv/bin/python -m bench.readme_example [--rows 512] [--update-results-md]

copies this file into a fresh temporary directory and runs it there as a script with the given interpreter
(default: this one, the .venv `make setup` installed the project into), so the example can only import the
installed package, exactly as a user's script would. The script fills in the user's pieces (`MyNet`, a
`train_loader` of ROWS toy rows, `validation_accuracy`), executes the README's python blocks in order, and
prints one JSON line: wall time, epochs, dendrites, and how far `fold_model`'s output is from the trained net
(the final model, and the best checkpoint of every dendrite count). tests/test_readme.py runs the same
script and checks those numbers; this command also refreshes the RESULTS.md section with its wall time.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

SECTION = "## The README's PyTorch example (issue 22)"
N_VAL = 256


def readme_code(readme: Path) -> str:
    """The README's python blocks, in order, as one program."""
    return "\n".join(re.findall(r"^```python\n(.*?)^```", readme.read_text(), re.DOTALL | re.MULTILINE))


def user_pieces(rows: int) -> dict:
    """What the README leaves to the user: a small conv + FC net, a loader of `rows` rows in batches of 32,
    and a validation accuracy. The toy task (3 classes from the signs of two half-sums) is learnable but not
    trivially, so the schedule runs neuron and dendrite phases."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows + N_VAL, 1, 40, generator=gen)
    y = (x[:, 0, :20].sum(1) > 0).long() + (x[:, 0, 20:].sum(1) > 0).long()
    x_val, y_val = x[rows:], y[rows:]

    class MyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 8, 3, padding=1)
            self.hidden = nn.Linear(8 * 40, 16)
            self.out = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.hidden(torch.relu(self.conv(x)).flatten(1))))

    @torch.no_grad()
    def validation_accuracy(model: nn.Module) -> float:
        model.eval()
        return float((model(x_val).argmax(1) == y_val).float().mean())

    torch.manual_seed(0)
    loader = [(x[i:i + 32], y[i:i + 32]) for i in range(0, rows, 32)]
    return {"MyNet": MyNet, "train_loader": loader, "validation_accuracy": validation_accuracy, "x_val": x_val}


def fold_gaps(dm, x) -> dict[str, float]:
    """Max |fold_model(net)(x) - net(x)| for the final net and for the best checkpoint of each dendrite count."""
    import torch

    from export.fold import fold_model

    def gap() -> float:
        with torch.no_grad():
            return float((fold_model(dm.net)(x) - dm.net.eval()(x)).abs().max())

    gaps = {"final": gap()}
    for k, (_, state) in sorted(dm.best_by_dendrites.items()):
        dm.load_state_dict(state)
        gaps[f"best_{k}_dendrites"] = gap()
    return gaps


def run_example(readme: Path, rows: int) -> dict:
    """Execute the README's code with the user's pieces; what the test and RESULTS.md need."""
    t0 = time.perf_counter()
    ns = user_pieces(rows)
    lines: list[str] = []
    ns["print"] = lambda *a, **_: lines.append(" ".join(map(str, a)))  # the example's per-epoch lines
    exec(compile(readme_code(readme), str(readme), "exec"), ns)  # noqa: S102 - the README's own example
    wall = time.perf_counter() - t0
    dm = ns["dm"]
    return {"wall_s": wall, "rows": rows, "epochs": len(lines), "dendrites": dm.num_dendrites,
            "grown_to": max(dm.best_by_dendrites), "params": dm.deployed_params(),
            "val_accuracy": ns["validation_accuracy"](dm), "fold_max_abs_diff": fold_gaps(dm, ns["x_val"]),
            "dendritic_module": sys.modules["dendritic"].__file__, "last_line": lines[-1] if lines else ""}


def run_outside(readme: Path, rows: int, python: str, workdir: Path, timeout: float = 600) -> dict:
    """This file run as a script in `workdir` (outside the checkout) by `python`; its JSON line."""
    import os
    import shutil
    import subprocess

    script = workdir / "readme_example.py"
    shutil.copy(__file__, script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([python, str(script), str(readme), str(rows)], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode:
        raise RuntimeError(f"the README example failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _shown(python: str) -> str:
    """The interpreter as a reader can rerun it: relative to the checkout when it is the checkout's .venv."""
    from bench.common import REPO

    path = Path(python)
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else python


def markdown(result: dict, machine: dict, python: str) -> str:
    gaps = ", ".join(f"{k} {v:.1e}" for k, v in result["fold_max_abs_diff"].items())
    cpu = next((ln.split(":", 1)[1].strip() for ln in machine["lscpu_head"] if ln.startswith("Model name")), "?")
    what = (f"Wall time of the README example as written, on {result['rows']} toy rows: "
            f"**{result['wall_s']:.1f} s** ({result['epochs']} epochs, grew to {_n(result['grown_to'], 'dendrite')}, "
            f"ended with {result['dendrites']}; validation accuracy {result['val_accuracy']:.3f}; imports included). "
            f"fold_model vs the trained net, max abs diff: {gaps}.")
    where = (f"Measured {machine['date_utc']} (UTC) on {machine['cpus']} CPUs ({cpu}), 1-min load "
             f"{machine['loadavg_1_5_15'][0]:.1f} from other jobs, Python {machine['python']}, commit "
             f"{machine['git_head']}, interpreter `{_shown(python)}`, run from a temporary directory outside the "
             "checkout.")
    command = ".venv/bin/python -m bench.readme_example --update-results-md   # regenerates this block"
    return f"{what}\n\n{where}\n\n```\n{command}\n```"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    from bench.common import REPO, RESULTS_MD, machine_info, update_md_section

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--python", default=sys.executable, help="interpreter to run the example with")
    p.add_argument("--update-results-md", action="store_true", help=f"refresh the generated block of {SECTION!r}")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="readme-example-") as tmp:
        result = run_outside(REPO / "README.md", args.rows, args.python, Path(tmp))
    print(json.dumps(result, indent=1))
    if args.update_results_md:
        update_md_section(RESULTS_MD, SECTION, markdown(result, machine_info(), args.python),
                          tool="bench/readme_example.py")
    return 0


if __name__ == "__main__" and len(sys.argv) == 3 and not sys.argv[1].startswith("-"):
    print(json.dumps(run_example(Path(sys.argv[1]), int(sys.argv[2]))))  # the script, in a directory outside
elif __name__ == "__main__":
    sys.exit(main())
