"""Export a trained KWS model (plain or dendritic) as the three EI artifacts, verified.

    export_all(model, out_dir, x_calib, x_check) -> report dict

drop dendrites int8 cannot represent -> fold (dendrites and BatchNorm, exact) -> model.onnx (static (1, F) in, softmax,
(1, C) out) -> model.tflite (float32, onnx2tf) -> model_quantized_int8_io.tflite (int8 I/O, per-tensor FC)
-> load probe in a child process (a model that aborts the interpreters is an ExportError, not a crash) ->
parity, op allow-list, static shapes, real TFLite Micro run, costs. Any failed check raises ExportError.

torch is imported only when a model is exported or folded, so `from export.runtime import predict` (used to
run shipped artifacts) stays about 1 s cheaper.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .costs import graph_costs
from .runtime import input_quantization, predict, quantize, tflm_arena_bytes
from .tflite import RANGE_FLOOR, calibration_rows, convert_tflite
from .verify import (
    ExportError,
    check_loadable,
    check_parity,
    check_tflite,
    check_tflm,
    first_line,
    max_abs_diff,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ExportError", "export_all", "fold_model", "predict"]


def __getattr__(name: str):
    if name == "fold_model":
        from .fold import fold_model

        return fold_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

ONNX_NAME = "model.onnx"
FOLD_TOL = 1e-5  # folding is exact algebra; only float32 rounding may differ
TFLM_ROWS = 1000  # rows run through the real TFLite Micro interpreter (about 0.4 ms each)
# Dendrites worth less than this many int8 steps of their layer's output on the calibration and check rows are
# left out before folding (fold.drop_negligible_dendrites): int8 cannot represent them, and their ~zero-range
# tensors make TFLite's kernels abort the process.
NEGLIGIBLE_STEPS = 0.5


def _log(stage: str, t0: float, detail: str = "") -> None:
    print(f"[export] {stage:<8} {time.perf_counter() - t0:5.1f}s {detail}".rstrip(), flush=True)


def _probs(model: nn.Module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)), dim=-1).numpy()


def _torch_reference(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax outputs of the model as trained (eval mode), without changing its train/eval state."""
    was_training = model.training
    model.eval()
    try:
        return _probs(model, x)
    except RuntimeError as e:
        raise ExportError(f"model rejects check rows of shape {x.shape}: {first_line(e, typed=True)}") from e
    finally:
        model.train(was_training)


def _drop_negligible(model: nn.Module, x_calib: np.ndarray, x_check: np.ndarray, t0: float
                     ) -> tuple[nn.Module, dict[str, int]]:
    """The model without the dendrites that int8 cannot represent on the rows the converter calibrates on
    and on the check rows; one log line when any is dropped (the report has the params)."""
    import torch

    from .fold import drop_negligible_dendrites

    rows = [torch.from_numpy(calibration_rows(x_calib)), torch.from_numpy(x_check)]
    try:
        pruned, dropped = drop_negligible_dendrites(model, rows, NEGLIGIBLE_STEPS)
    except RuntimeError as e:
        raise ExportError(f"model rejects calibration rows of shape {x_calib.shape}: "
                          f"{first_line(e, typed=True)}") from e
    if any(dropped.values()):
        layers = ", ".join(f"{name}: {n}" for name, n in dropped.items() if n)
        _log("prune", t0, f"dropped {sum(dropped.values())} dendrite(s) ({layers}) that together change their "
                          f"layer's output by under {NEGLIGIBLE_STEPS:g} int8 step on "
                          f"{sum(len(r) for r in rows)} calibration/check rows")
    return pruned, dropped


def export_all(model: nn.Module, out_dir: Path, x_calib: np.ndarray, x_check: np.ndarray) -> dict:
    """Write model.onnx, model.tflite and model_quantized_int8_io.tflite into out_dir and verify them.

    model: logits model taking flat (B, F) EI features (dendritic layers are folded here; model untouched).
    x_calib: float32 (N, F) int8 calibration rows, EI's validation features (at most 1000 are used).
    x_check: float32 (M, F) rows for the parity checks against torch.
    Returns {"files": {name: bytes}, "ops": {op: count} of the int8 model, "macs": conv/FC MACs from the
    TFLite graph, "params": parameters of the exported (folded) model, "dendrites_dropped": {dendritic layer:
    dendrites left out of the export}, "ranges_floored": [int8 ranges raised], "arena_bytes": TFLM arena, "parity": {...}}.
    """
    from .costs import count_params
    from .fold import fold_model, has_dendrites
    from .onnx_export import export_onnx

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x_check = np.ascontiguousarray(x_check, dtype=np.float32)
    if x_check.ndim != 2 or len(x_check) == 0:
        raise ExportError(f"need a non-empty (N, F) check set, got shape {x_check.shape}")
    parity: dict[str, float | int] = {}

    trained = _torch_reference(model, x_check)
    x_calib = np.ascontiguousarray(x_calib, dtype=np.float32)
    if x_calib.ndim != 2 or len(x_calib) == 0 or x_calib.shape[1] != x_check.shape[1]:
        raise ExportError(f"need non-empty int8 calibration rows with the check rows' {x_check.shape[1]} "
                          f"features, got shape {x_calib.shape}")
    exported, dropped = _drop_negligible(model, x_calib, x_check, t0)  # a copy: the caller's is untouched
    ref = _probs(exported, x_check) if any(dropped.values()) else trained
    parity["prune_max_abs_diff"] = max_abs_diff(ref, trained)  # what dropping dendrites moved (reported)
    parity["prune_argmax_agreement"] = float(np.mean(ref.argmax(1) == trained.argmax(1)))
    folded = fold_model(exported)
    parity["fold_max_abs_diff"] = check_parity("folded torch model", _probs(folded, x_check), ref, FOLD_TOL)
    _log("fold", t0, f"dendrites={has_dendrites(exported)} max|diff|={parity['fold_max_abs_diff']:.1e}")

    onnx_path = export_onnx(folded, out_dir / ONNX_NAME, x_check.shape[1])
    parity["onnx_max_abs_diff"] = check_parity("ONNX (onnxruntime)", predict(onnx_path, x_check), ref)
    _log("onnx", t0, f"max|diff|={parity['onnx_max_abs_diff']:.1e}")

    float_path, int8_path, floored = convert_tflite(onnx_path, out_dir, x_calib)
    if floored:
        _log("floor", t0, f"raised {len(floored)} int8 range(s) that TFLite's ADD cannot requantise to "
                          f"{RANGE_FLOOR:g} x their largest input's: {'; '.join(floored)}")
    t_probe = time.perf_counter()
    check_loadable([float_path, int8_path], [int8_path])  # before any in-process interpreter touches them
    _log("tflite", t0, f"load probe {time.perf_counter() - t_probe:.2f}s")

    parity["tflite_max_abs_diff"] = check_parity("float TFLite", predict(float_path, x_check), ref)
    check_tflite(float_path, int8=False)
    check_tflite(int8_path, int8=True)
    int8_probs = predict(int8_path, x_check)
    parity["int8_max_abs_diff"] = max_abs_diff(int8_probs, ref)  # reported, not gated: quantization error
    parity["int8_argmax_agreement"] = float(np.mean(int8_probs.argmax(1) == ref.argmax(1)))
    _log("verify", t0, f"float max|diff|={parity['tflite_max_abs_diff']:.1e} "
                       f"int8 argmax agreement={parity['int8_argmax_agreement']:.3f}")

    x_int8 = quantize(x_check[:TFLM_ROWS], *input_quantization(int8_path))
    parity.update(check_tflm(int8_path, x_int8))
    arena = tflm_arena_bytes(int8_path)
    ops, macs = graph_costs(int8_path)
    _log("tflm", t0, f"arena={arena} B, max {parity['tflm_max_lsb']} LSB vs LiteRT")

    files = {p.name: p.stat().st_size for p in (onnx_path, float_path, int8_path)}
    return {"files": files, "ops": ops, "macs": macs, "params": count_params(folded),
            "dendrites_dropped": dropped, "ranges_floored": floored, "arena_bytes": arena, "parity": parity}
