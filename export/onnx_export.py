"""torch -> model.onnx in the shape Edge Impulse feeds: static flat (1, F) frame-major input, softmax in the
graph (the EI SDK treats outputs as confidences and applies none), static (1, C) output."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .verify import ExportError, first_line

INPUT_NAME, OUTPUT_NAME = "x", "y"
# The dynamo exporter specialises on the static example input, so shape arithmetic (KWSNet's odd-length
# pooling pad, reshape(-1, ...)) folds to constants and the output is a static (1, C). The legacy exporter
# keeps Shape/Gather/Mod chains and a symbolic batch there. Opset 18 is the one conversion.md measured.
OPSET = 18


def with_softmax(model: nn.Module) -> nn.Module:
    """Logits model -> probabilities model, as EI expects."""
    return nn.Sequential(model, nn.Softmax(dim=-1)).eval()


def export_onnx(model: nn.Module, path: Path, n_features: int) -> Path:
    """Write `model` (plain or folded, logits out) with softmax appended to `path`; check it fully."""
    import onnx

    probs = with_softmax(model)
    noisy = logging.getLogger("torch.onnx")  # "torchvision is not installed" registry warnings
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(probs, (torch.zeros(1, n_features),), str(path), dynamo=True,
                              opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              verbose=False, external_data=False)  # weights inside model.onnx
    finally:
        noisy.setLevel(level)
    m = onnx.load(str(path))
    try:
        onnx.checker.check_model(m, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"ONNX checker rejected {path.name}: {first_line(e, typed=True)}") from e
    check_onnx_io(m, n_features)
    return path


def _dims(value_info) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_onnx_io(m, n_features: int) -> None:
    """Exactly one static (1, F) input and one static (1, C) output, at the opset we asked for (the dynamo
    exporter can silently keep a different one, conversion.md pitfall 6)."""
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset != OPSET:
        raise ExportError(f"ONNX opset is {opset}, expected {OPSET}")
    if len(m.graph.input) != 1 or len(m.graph.output) != 1:
        raise ExportError(f"ONNX model has {len(m.graph.input)} inputs and {len(m.graph.output)} outputs, "
                          "need 1 and 1")
    i, o = _dims(m.graph.input[0]), _dims(m.graph.output[0])
    if i != [1, n_features]:
        raise ExportError(f"ONNX input shape is {i}, expected [1, {n_features}]")
    if len(o) != 2 or o[0] != 1 or not isinstance(o[1], int) or o[1] < 1:
        raise ExportError(f"ONNX output shape is {o}, expected a static [1, C]")
