"""The README's Python examples run as written (issue 22): bench/readme_example.py fills in the user's pieces
(a toy conv + FC `MyNet`, a loader of 512 rows, `validation_accuracy`) and executes every ```python block
from a directory outside the checkout, importing only the installed package, as a user's script would."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.readme_example import readme_code, run_outside

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_has_the_pytorch_loop_example() -> None:
    code = readme_code(ROOT / "README.md")
    compile(code, "README.md", "exec")  # every block parses
    for name in ("DendriticModel(", "dm.training_step(", "dm.end_epoch(", "fold_model(dm.net)"):
        assert name in code, name


def test_the_readme_example_runs_as_written_and_folds_exactly(tmp_path: Path) -> None:
    result = run_outside(ROOT / "README.md", 512, sys.executable, tmp_path)
    assert result["epochs"] > 20 and result["last_line"].split()[2] == "stop"  # the schedule ran to its end
    assert result["grown_to"] >= 1  # dendrites were grown, so the fold below covers dendritic checkpoints
    gaps = result["fold_max_abs_diff"]
    assert {"final", "best_0_dendrites", "best_1_dendrites"} <= set(gaps)
    assert max(gaps.values()) <= 1e-5, gaps
    assert result["val_accuracy"] > 0.5  # three classes: chance is about 0.4 on this toy task
