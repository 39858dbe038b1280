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

from kws.errors import signals_deferred

from .verify import ExportError, first_line

INPUT_NAME, OUTPUT_NAME = "x", "y"
# Opset 10, the one Edge Impulse's own PyTorch block example exports, so a Studio that converts model.onnx
# itself gets the opset it is known to take. Measured (torch 2.13, onnxruntime, onnx2tf 1.28.8; plain and
# dendritic Conv1d/Linear with tanh/sigmoid/relu dendrites, Conv2d paper-baseline; README "ONNX opset"):
# - TorchScript exporter (dynamo=False) at opset 10 (and 9): static (1, F) -> (1, C), ORT, float TFLite and
#   int8 outputs identical to opset 18's, the same TFLM builtin ops (SPLIT_V instead of SPLIT), TFLM runs.
#   Opset 9 passes too; we stay at EI's documented 10. Opsets 7-8 put the weights in as graph inputs.
# - TorchScript exporter at opset 11-18: the odd-length pooling pad becomes a Shape/Slice/ConstantOfShape
#   chain and the output batch is symbolic ('Softmaxy_dim_0'); only pad-free (Conv2d) nets stay static.
# - dynamo exporter below 18: the down-conversion fails (no adapter for Pad to 17, Identity from 16) and the
#   file silently stays at opset 18; at 16-17 Conv2d nets fail the checker (Split num_outputs).
# The TorchScript exporter is deprecated in torch 2.13 but pinned here; check_onnx_io catches any drift.
OPSET = 10


def with_softmax(model: nn.Module) -> nn.Module:
    """Logits model -> probabilities model, as EI expects."""
    return nn.Sequential(model, nn.Softmax(dim=-1)).eval()


def import_onnx():
    """The onnx module, imported with stop signals held: its nanobind native init runs Python, and a
    KeyboardInterrupt raised there aborts the whole process (`signals_deferred`). Later calls are cached."""
    with signals_deferred():
        import onnx
    return onnx


def export_onnx(model: nn.Module, path: Path, n_features: int) -> Path:
    """Write `model` (plain or folded, logits out) with softmax appended to `path`; check it fully."""
    onnx = import_onnx()

    probs = with_softmax(model)
    noisy = logging.getLogger("torch.onnx")  # "torchvision is not installed" registry warnings
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(probs, (torch.zeros(1, n_features),), str(path), dynamo=False,
                              opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              verbose=False)  # static shapes: no dynamic_axes; weights inside model.onnx
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
    exporter can silently keep a different one, conversion.md pitfall 6; see OPSET)."""
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
