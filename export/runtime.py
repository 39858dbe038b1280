"""Run exported artifacts on feature rows: ONNX (onnxruntime), float or int8 TFLite (LiteRT reference
kernels) and int8 TFLite in the real TFLite Micro interpreter.

Everything loops over rows because the exported graphs have a static batch of 1 (EI's contract).
Heavy runtimes are imported lazily so `import export` stays cheap.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def litert_interpreter(model_path: str | Path):
    """A LiteRT interpreter with the reference kernels: TFLM-like int8 maths and the real op list
    (the default XNNPACK delegate would hide ops behind one DELEGATE node)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(model_path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    return it


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float -> int8 as the EI SDK does it for the input tensor (round, add zero point, clip)."""
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * np.float32(scale)


def _rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"expected feature rows of shape (N, F), got {X.shape}")
    return X


def _predict_onnx(model_path: Path, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: X[i:i + 1]})[0] for i in range(len(X))])


def _invoke_rows(it, X: np.ndarray) -> np.ndarray:
    """Raw outputs (N, C) of a LiteRT interpreter for rows already in its input dtype."""
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for i in range(len(X)):
        it.set_tensor(inp["index"], X[i:i + 1].reshape(inp["shape"]).astype(inp["dtype"]))
        it.invoke()
        rows.append(it.get_tensor(out["index"]).reshape(1, -1))
    return np.concatenate(rows)


def _predict_tflite(model_path: Path, X: np.ndarray) -> np.ndarray:
    it = litert_interpreter(model_path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if inp["dtype"] == np.int8:
        X = quantize(X, *inp["quantization"])
    y = _invoke_rows(it, X)
    return dequantize(y, *out["quantization"]) if out["dtype"] == np.int8 else y.astype(np.float32)


def input_quantization(model_path: str | Path) -> tuple[float, int]:
    """(scale, zero_point) of an int8 model's input tensor: what EI uses to quantize DSP features."""
    scale, zero_point = litert_interpreter(model_path).get_input_details()[0]["quantization"]
    return float(scale), int(zero_point)


def litert_int8_predict(model_path: str | Path, X_int8: np.ndarray) -> np.ndarray:
    """Raw int8 outputs (N, C) of LiteRT's reference kernels: the baseline the real TFLM run is held to."""
    return _invoke_rows(litert_interpreter(model_path), _rows(X_int8).astype(np.int8))


def predict(model_path: str | Path, X: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) float32 for float32 features X (N, F), for .onnx, float .tflite and
    int8-I/O .tflite (input quantized with the tensor's scale/zero-point, output dequantized)."""
    model_path = Path(model_path)
    X = _rows(X).astype(np.float32)
    if model_path.suffix == ".onnx":
        return _predict_onnx(model_path, X)
    if model_path.suffix == ".tflite":
        return _predict_tflite(model_path, X)
    raise ValueError(f"don't know how to run {model_path.name} (expected .onnx or .tflite)")


def _tflm_interpreter(model_path: str | Path):
    """The real TFLite Micro interpreter (raises on ops TFLM does not support)."""
    import tflite_micro  # its `runtime` submodule is only reachable as an attribute of the package

    return tflite_micro.runtime.Interpreter.from_file(str(model_path))


def tflm_predict(model_path: str | Path, X_int8: np.ndarray) -> np.ndarray:
    """Raw int8 outputs (N, C) of the real TFLite Micro interpreter for int8 input rows (N, F)."""
    X_int8 = _rows(X_int8).astype(np.int8)
    it = _tflm_interpreter(model_path)
    shape = it.get_input_details(0)["shape"]
    rows = []
    for i in range(len(X_int8)):
        it.set_input(X_int8[i:i + 1].reshape(shape), 0)
        it.invoke()
        rows.append(np.array(it.get_output(0)).reshape(1, -1))
    return np.concatenate(rows)


@contextlib.contextmanager
def captured_fds(log: list[str]):
    """Redirect the process-level stdout and stderr to a temp file; on exit (also on error) append the text
    to `log`. Needed for output printed from C++ (TFLM's allocation report, TF's converter logs), which
    Python-level redirection cannot see."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            for fd in saved:
                os.dup2(tmp.fileno(), fd)
            yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            log.append(tmp.read().decode(errors="replace"))


_ARENA_RE = re.compile(r"\[RecordingMicroAllocator\] Arena allocation total (\d+) bytes")


def tflm_arena_bytes(model_path: str | Path) -> int:
    """Tensor arena bytes the real TFLite Micro interpreter uses for this model (one zero-input run,
    then the RecordingMicroAllocator report)."""
    it = _tflm_interpreter(model_path)
    d = it.get_input_details(0)
    it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), 0)
    it.invoke()
    with captured_fds([]) as log:
        it.print_allocations()
    report = "".join(log)
    m = _ARENA_RE.search(report)
    if not m:
        raise RuntimeError(f"no arena total in the TFLite Micro allocation report: {report[:200]!r}")
    return int(m.group(1))


# Loads and allocates each model in LiteRT (reference kernels, as litert_interpreter) and, after "--tflm", in
# TFLite Micro, printing tab-separated progress so the parent can tell where a crash happened. Python-level
# errors are ignored here: the in-process checks raise them with their usual messages.
_PROBE = r"""
import sys
def say(*words):
    print(*words, sep="\t", flush=True)
args = sys.argv[1:]
cut = args.index("--tflm")
from ai_edge_litert.interpreter import Interpreter, OpResolverType
for path in args[:cut]:
    say("stage", "LiteRT", path)
    try:
        it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        tensors = {t["index"]: t for t in it.get_tensor_details()}
        outs = {o for op in it._get_ops_details() for o in op["outputs"]}
        scales = [(float(min(tensors[o]["quantization_parameters"]["scales"])), tensors[o]["name"])
                  for o in outs if o in tensors and len(tensors[o]["quantization_parameters"]["scales"])]
        if scales:
            say("smallest", path, *map(str, min(scales)))
        it.allocate_tensors()
    except Exception:
        pass
if args[cut + 1:]:
    import tflite_micro
    for path in args[cut + 1:]:
        say("stage", "TFLite Micro", path)
        try:
            tflite_micro.runtime.Interpreter.from_file(path)
        except Exception:
            pass
say("done")
"""


def probe_interpreters(litert: list[str | Path], tflm: list[str | Path], timeout: float = 120.0
                       ) -> tuple[int, list[list[str]], str]:
    """Load and allocate models in a short-lived child process (the same Python), so a model whose Prepare
    step hits a TFLITE_CHECK (an abort, not an exception) kills the child instead of this process.
    Returns (exit status, negative for a signal; the child's progress lines split on tabs; its stderr).
    About 0.2 s (no TensorFlow import). Raises subprocess.TimeoutExpired after `timeout` seconds."""
    cmd = [sys.executable, "-c", _PROBE, *map(str, litert), "--tflm", *map(str, tflm)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    return done.returncode, lines, done.stderr
