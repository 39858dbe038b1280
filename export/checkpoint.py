"""model.pt: the trained network plus everything needed to rebuild and re-export it without training.

    save_checkpoint(path, model, run, classes, calib)       # the block writes OUT/model.pt
    model, report = export_checkpoint(path, out_dir)        # what `python -m export` and the block run

The file is a plain dict of tensors, strings and numbers, so `torch.load(weights_only=True)` reads it
(no pickled code runs): the RunConfig as a dict, the classes, the feature count, the dendrite count of
every wrapped layer, the DendriticModel state dict and the int8 calibration rows the block used. The
block exports its shipped model *from this file*, so a re-export with the stored calibration rows writes
the same int8 model as the training run did.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kws.errors import ProjectError, first_line

if TYPE_CHECKING:
    from dendritic.pb import DendriticModel
    from kws.trainer import RunConfig

CALIBRATION_ROWS = 1000  # int8 calibration and parity rows: the block's first 1,000 validation rows
FORMAT = "dendritic-nn/model.pt"
VERSION = 1


class CheckpointError(ProjectError, ValueError):
    """A model.pt that cannot be read back: corrupt, foreign, or from an incompatible version."""


@dataclass
class Checkpoint:
    model: DendriticModel  # eval mode, on the CPU, dendrites grown to the saved structure
    run: RunConfig
    classes: list[str]
    n_features: int
    calibration: np.ndarray  # float32 (N, F): the int8 calibration rows the training run used


def save_checkpoint(path: Path, model: DendriticModel, run: RunConfig, classes: list[str],
                    calib: np.ndarray) -> None:
    import torch

    torch.save({
        "format": FORMAT, "version": VERSION, "run": run.to_dict(), "classes": list(classes),
        "n_features": int(run.net.n_features), "architecture": model.architecture(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "calibration": torch.as_tensor(np.ascontiguousarray(calib, dtype=np.float32)),
    }, path)


def load_checkpoint(path: Path) -> Checkpoint:
    """Rebuild the trained model; a file that is not a readable block checkpoint is a CheckpointError."""
    import torch

    from kws.trainer import RunConfig, build_model

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file; all mean the same
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({type(e).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: not a Dendritic NN model.pt (expected the block's own checkpoint, "
                              f"as written by train.py into its out directory)")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path.name}: checkpoint version {blob.get('version')!r} is not {VERSION}")
    try:
        run = RunConfig.from_dict(blob["run"])
        model = build_model(run, "cpu")
        model.load_state_dict(blob["state_dict"])
        if model.architecture() != blob["architecture"]:
            raise ValueError(f"dendrites {model.architecture()} differ from the saved {blob['architecture']}")
        calibration = blob["calibration"].numpy()
        classes = [str(c) for c in blob["classes"]]
    except Exception as e:  # noqa: BLE001 - a damaged or edited checkpoint: one line, never a traceback
        raise CheckpointError(f"{path.name}: damaged checkpoint ({first_line(e, typed=True)})") from None
    return Checkpoint(model.eval(), run, classes, int(blob["n_features"]), calibration)


def export_checkpoint(path: Path, out_dir: Path, calib: np.ndarray | None = None) -> tuple[Checkpoint, dict]:
    """Fold, export and verify a saved model into out_dir (the three EI model files). `calib` replaces the
    stored int8 calibration rows (e.g. another dataset's validation split)."""
    from . import export_all

    ckpt = load_checkpoint(path)
    rows = ckpt.calibration if calib is None else np.asarray(calib, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != ckpt.n_features:
        raise CheckpointError(f"calibration rows of shape {rows.shape} do not match the model's "
                              f"{ckpt.n_features} features")
    return ckpt, export_all(ckpt.model.net, Path(out_dir), rows, rows)
