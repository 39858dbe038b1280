"""Checks on exported artifacts. Each failure raises ExportError with one line that names the problem, so the
training block can fail loudly instead of shipping a model EI cannot run or that computes something else."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import numpy as np

from kws.errors import ProjectError, first_line

from .runtime import litert_int8_predict, litert_interpreter, probe_interpreters, tflm_predict

PARITY_TOL = 1e-4  # float artifacts vs torch, on softmax outputs
# Real TFLM vs LiteRT reference kernels on the same int8 input. They are not bit-identical: on a trained
# commands12 ei-default (no dendrites) 3 % of rows differ by 1 LSB already at the logits (requantisation
# rounding); softmax and the dendrites' MUL/ADD chains spread that, and a single near-tie row reached
# 21 LSB (0.08 in probability) with 99.9 % of predictions still equal. A genuine kernel mismatch (a wrong
# op, per-channel FC on an old TFLM) shifts every row and flips predictions, so the gate is on argmax
# agreement and the mean difference; the max is reported, not gated.
TFLM_MEAN_LSB_TOL = 1.0
TFLM_MIN_ARGMAX_AGREEMENT = 0.99

# TFLite Micro builtin ops as registered by the EI SDK's all-ops resolver (ei-contract §5.4) plus the
# builtins conversion.md saw TFLM run. Anything else (CUSTOM, Flex, POW, ...) cannot run on an MCU.
TFLM_OPS = frozenset({
    "ABS", "ADD", "ADD_N", "ARG_MAX", "ARG_MIN", "AVERAGE_POOL_2D", "BATCH_MATMUL", "BATCH_TO_SPACE_ND",
    "CAST", "CEIL", "CONCATENATION", "CONV_2D", "COS", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "DIV", "ELU", "EQUAL", "EXP", "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV",
    "FLOOR_MOD", "FULLY_CONNECTED", "GATHER", "GATHER_ND", "GREATER", "GREATER_EQUAL", "HARD_SWISH",
    "L2_NORMALIZATION", "L2_POOL_2D", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND",
    "LOGICAL_NOT", "LOGICAL_OR", "LOGISTIC", "LOG_SOFTMAX", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM",
    "MIRROR_PAD", "MUL", "NEG", "NOT_EQUAL", "PACK", "PAD", "PADV2", "PRELU", "QUANTIZE", "REDUCE_MAX",
    "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "ROUND", "RSQRT", "SELECT_V2", "SHAPE", "SIN", "SLICE", "SOFTMAX",
    "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE",
    "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK", "ZEROS_LIKE",
})


class ExportError(ProjectError, RuntimeError):
    """An export or verification step failed; the message is one line naming the problem."""


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def check_parity(what: str, got: np.ndarray, ref: np.ndarray, tol: float = PARITY_TOL) -> float:
    """Max |got - ref|; raises when above tol or when the shapes differ."""
    if got.shape != ref.shape:
        raise ExportError(f"{what}: output shape {got.shape} differs from torch {ref.shape}")
    diff = max_abs_diff(got, ref)
    if not diff <= tol:  # also catches NaN
        raise ExportError(f"{what}: max |diff| vs torch {diff:.3g} > {tol:g}")
    return diff


def check_tflite(path: Path, int8: bool) -> None:
    """Static single-input single-output graph of TFLM builtins; int8 I/O and per-tensor FULLY_CONNECTED
    weights for the quantized model (EI's FC kernel has no per-channel path), float32 I/O otherwise."""
    name = Path(path).name
    it = litert_interpreter(path)
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise ExportError(f"{name}: {len(ins)} inputs and {len(outs)} outputs, EI needs exactly 1 and 1")
    ops = it._get_ops_details()
    bad = sorted({d["op_name"] for d in ops} - TFLM_OPS)
    if bad:
        raise ExportError(f"{name}: ops not in TFLite Micro's builtins: {', '.join(bad)}")
    tensors = it.get_tensor_details()
    dynamic = [t["name"] for t in tensors if -1 in list(t["shape_signature"])]
    if dynamic:
        raise ExportError(f"{name}: {len(dynamic)} tensors have dynamic dims, e.g. {dynamic[0]!r}")
    want = np.int8 if int8 else np.float32
    for kind, d in (("input", ins[0]), ("output", outs[0])):
        if d["dtype"] != want:
            got, expected = np.dtype(d["dtype"]).name, np.dtype(want).name
            raise ExportError(f"{name}: {kind} is {got}, expected {expected}")
    by_index = {t["index"]: t for t in tensors}
    for d in ops:
        if d["op_name"] == "FULLY_CONNECTED" and len(d["inputs"]) > 1:
            scales = by_index[d["inputs"][1]]["quantization_parameters"]["scales"]
            if len(scales) > 1:
                raise ExportError(f"{name}: FULLY_CONNECTED weights are per-channel quantized "
                                  f"({len(scales)} scales); the EI SDK needs per-tensor")


PROBE_TIMEOUT_S = 120.0  # the probe takes ~0.2 s; generous for a loaded machine


def check_loadable(litert: list[Path], tflm: list[Path]) -> None:
    """Load and allocate the models in LiteRT (and `tflm` in TFLite Micro) in a child process first. A
    quantization the kernels reject (e.g. a tensor calibrated to a ~zero range, whose requantisation
    multiplier is out of bounds) is a TFLITE_CHECK in their Prepare step: it aborts the process, which no
    try/except can catch, so it must happen in a child that may die. Raises ExportError naming the model,
    the signal, the interpreter and the smallest activation scale."""
    try:
        rc, lines, stderr = probe_interpreters(litert, tflm, PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExportError(f"loading {', '.join(Path(p).name for p in litert)} in the TFLite interpreters did "
                          f"not finish in {PROBE_TIMEOUT_S:g} s") from None
    if rc == 0 and ["done"] in lines:
        return
    stages = [line for line in lines if line[0] == "stage" and len(line) == 3]
    if rc >= 0 or not stages:  # an error, not a signal, or a death before any model: not the model's fault
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportError(f"could not probe the exported models in a child process (exit status {rc}): "
                          f"{tail}")
    _, runtime, path = stages[-1]
    try:
        sig = signal.Signals(-rc).name
    except ValueError:
        sig = f"signal {-rc}"
    smallest = [line for line in lines if line[0] == "smallest" and len(line) == 4 and line[1] == path]
    hint = ""
    if smallest:
        scale, tensor = float(smallest[-1][2]), smallest[-1][3]
        hint = f"; smallest activation scale {scale:.2g} on tensor {tensor!r}"
    raise ExportError(f"{Path(path).name} crashes the TFLite interpreter ({sig} while {runtime} loads "
                      f"and allocates it): a quantization its kernels reject, e.g. a tensor calibrated to a "
                      f"~zero range{hint}")


def check_tflm(int8_path: Path, x_int8: np.ndarray) -> dict[str, float]:
    """Run the int8 model in the real TFLite Micro interpreter and hold it to LiteRT's reference kernels.
    Returns the max and mean output difference in LSB and the argmax agreement."""
    try:
        tflm = tflm_predict(int8_path, x_int8)
    except Exception as e:  # TFLM raises RuntimeError on unsupported ops / per-channel FC
        raise ExportError(f"TFLite Micro cannot run {Path(int8_path).name}: {first_line(e, typed=True)}") from e
    ref = litert_int8_predict(int8_path, x_int8)
    diff = np.abs(tflm.astype(np.int32) - ref.astype(np.int32))
    stats = {"tflm_max_lsb": int(diff.max()), "tflm_mean_lsb": float(diff.mean()),
             "tflm_argmax_agreement": float(np.mean(tflm.argmax(1) == ref.argmax(1)))}
    if stats["tflm_mean_lsb"] > TFLM_MEAN_LSB_TOL or stats["tflm_argmax_agreement"] < TFLM_MIN_ARGMAX_AGREEMENT:
        raise ExportError(f"TFLite Micro disagrees with LiteRT's reference kernels: mean {stats['tflm_mean_lsb']:.2f} "
                          f"LSB (limit {TFLM_MEAN_LSB_TOL}), argmax agreement {stats['tflm_argmax_agreement']:.3f} "
                          f"(limit {TFLM_MIN_ARGMAX_AGREEMENT})")
    return stats
