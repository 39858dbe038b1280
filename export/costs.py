"""Deployment costs read from the exported TFLite graph (what the MCU actually runs, after folding and the
converter's own fusions): op counts and multiply-accumulates of the conv/FC layers."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .runtime import litert_interpreter

if TYPE_CHECKING:
    from torch import nn


def _op_macs(op: dict, shapes: dict[int, np.ndarray]) -> int:
    """MACs of one conv/FC op: output elements x reduction length (per output element) taken from the weight
    shape. CONV_2D weights are [O, H, W, I], DEPTHWISE_CONV_2D [1, H, W, O], FULLY_CONNECTED [O, I].
    Elementwise ops (the dendrites' Mul/Add, activations) are not MACs and are not counted."""
    name = op["op_name"]
    if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    out = int(np.prod(shapes[op["outputs"][0]]))
    w = shapes[op["inputs"][1]]
    if name == "CONV_2D":
        return out * int(np.prod(w[1:]))
    if name == "DEPTHWISE_CONV_2D":
        return out * int(w[1] * w[2])
    return out * int(w[-1])


def graph_costs(path: Path) -> tuple[dict[str, int], int]:
    """(op name -> count, conv/FC MACs per inference) of a .tflite file."""
    it = litert_interpreter(path)
    ops = it._get_ops_details()
    shapes = {t["index"]: t["shape"] for t in it.get_tensor_details()}
    return dict(Counter(d["op_name"] for d in ops)), sum(_op_macs(d, shapes) for d in ops)


def count_params(model: nn.Module) -> int:
    """Parameters of the (folded) torch model that is exported: stacked layer weights, T and the non-zero
    cascade weights. Equals pb-algorithm §6.2's deployment count, less cascades and T rows that are
    identically zero and the dead dendrites export_all drops (export/fold.py)."""
    return sum(p.numel() for p in model.parameters())
