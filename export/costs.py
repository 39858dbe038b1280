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


def measure(net: nn.Module, n_features: int) -> dict[str, int]:
    """Flash, RAM and MACs of `net` on the device, counted as the device counts them: the bytes of its int8
    .tflite built the shipping way (fold, ONNX, onnx2tf, int8 calibration), the TFLite Micro arena of that
    file, and its graph's conv/FC MACs. They depend on the shapes only, so a net with random weights (every
    weight non-zero, so no dendrite is folded away) measures what its trained self ships; export_all's
    dropping of negligible dendrites can only make the shipped file smaller. `net` is left untouched."""
    import copy
    import tempfile

    import torch

    from .fold import fold_model
    from .onnx_export import export_onnx
    from .runtime import tflm_arena_bytes
    from .tflite import convert_tflite

    net = copy.deepcopy(net).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + 0.05)
    rows = np.random.default_rng(0).standard_normal((32, n_features)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="measure-") as tmp:
        onnx_path = export_onnx(fold_model(net), Path(tmp) / "model.onnx", n_features)
        _, int8, _ = convert_tflite(onnx_path, Path(tmp), rows)
        _, macs = graph_costs(int8)
        return {"flash_bytes": int8.stat().st_size, "arena_bytes": tflm_arena_bytes(int8), "macs": macs}
