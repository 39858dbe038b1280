"""model.onnx -> float32 model.tflite (onnx2tf 1.28.8) and int8-I/O model_quantized_int8_io.tflite (our own
strict TFLiteConverter), the route conversion.md measured as TFLite-Micro and EI-SDK safe.

onnx2tf and TensorFlow are imported lazily: the import costs 3-4.5 s and most callers never convert.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .runtime import captured_fds
from .verify import ExportError, first_line

FLOAT_NAME, INT8_NAME = "model.tflite", "model_quantized_int8_io.tflite"
MAX_CALIB = 1000  # EI's reference int8 path uses at most 1000 single validation samples


def calibration_rows(x_calib: np.ndarray) -> np.ndarray:
    """At most MAX_CALIB rows, spread evenly over the set so every class region is represented."""
    x = np.asarray(x_calib, dtype=np.float32)
    if len(x) == 0:
        raise ValueError("int8 calibration needs at least one feature row")
    if len(x) > MAX_CALIB:
        x = x[np.linspace(0, len(x) - 1, MAX_CALIB).round().astype(int)]
    return x


# TFLite's int8 ADD/SUB rescale both inputs to twice the larger input scale and need the output multiplier
# 2 * max(input scale) / (2^20 * output scale) below 1 (a TFLITE_CHECK that aborts the process otherwise):
# an ADD whose output range is under 2^-19 of an input's range cannot run. A sum that small carries nothing
# the next ops can use, so such an output's calibrated range is raised to RANGE_FLOOR x its largest input
# range (2^-12: 128x inside the kernels' limit, and still 1/16 of an input's int8 step).
RANGE_FLOOR = 2.0 ** -12
FLOORED_OPS = ("ADD", "SUB")
# Ops whose int8 output the quantizer ties to their input's scale: a SPLIT's slice, for example, is quantized
# with the whole stacked layer's range, not with its own (smaller) calibrated one.
SCALE_TIED_OPS = frozenset({"SPLIT", "SPLIT_V", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "GATHER",
                            "MAX_POOL_2D", "PAD", "SLICE", "STRIDED_SLICE", "CONCATENATION"})


def _calibrated_range(q) -> tuple[float, float] | None:
    """(min, max) with 0 inside of a tensor's calibrated per-tensor range; None for constants and
    per-channel tensors, which carry none."""
    if q is None or q.min is None or q.max is None or len(q.min) != 1:
        return None
    return min(float(q.min[0]), 0.0), max(float(q.max[0]), 0.0)


def floor_ranges(calibrated: bytes) -> tuple[bytes, list[str]]:
    """The calibrated (float, min/max-annotated) model with every ADD/SUB output range floored at
    RANGE_FLOOR x its largest input range as the quantizer will see it, and one "tensor: old range -> new
    range" note per change. A model that needs no floor comes back unchanged, byte for byte."""
    from tensorflow.lite.tools import flatbuffer_utils as fb

    model = fb.convert_bytearray_to_object(bytearray(calibrated))
    notes = []
    for graph in model.subgraphs:
        producer = {out: op for op in graph.operators for out in op.outputs}

        def span(index: int, graph=graph, producer=producer) -> float:
            """The tensor's calibrated range (with 0); for a scale-tied op's output, its input's."""
            lo_hi = _calibrated_range(graph.tensors[index].quantization)
            own = lo_hi[1] - lo_hi[0] if lo_hi else 0.0
            op = producer.get(index)
            if op is not None and fb.opcode_to_name(model, op.opcodeIndex) in SCALE_TIED_OPS:
                own = max([own, *(span(i) for i in op.inputs if i >= 0)])
            return own

        for op in graph.operators:
            if fb.opcode_to_name(model, op.opcodeIndex) not in FLOORED_OPS:
                continue
            out = op.outputs[0]
            floor = RANGE_FLOOR * max(span(i) for i in op.inputs if i >= 0)
            q = graph.tensors[out].quantization
            if (lo_hi := _calibrated_range(q)) is None:
                continue
            lo, hi = lo_hi
            have = hi - lo
            if have >= floor:
                continue
            grow = floor - have  # widen away from zero on the side the values lie (both sides when ~0)
            if hi > -lo:
                hi += grow
            elif lo < -hi:
                lo -= grow
            else:
                lo, hi = lo - grow / 2, hi + grow / 2
            q.min, q.max = [lo], [hi]
            notes.append(f"{graph.tensors[out].name.decode()}: range {have:.2g} -> {floor:.2g}")
    if not notes:
        return calibrated, notes
    return bytes(fb.convert_object_to_bytearray(model)), notes


def _quantize_int8(saved_model: Path, x_calib: np.ndarray) -> tuple[bytes, list[str]]:
    """Full-int8 model with int8 input and output, builtin int8 kernels only (anything else fails loudly
    instead of becoming a Flex op) and per-tensor FULLY_CONNECTED weights (EI SDK has no per-channel FC).
    Returns the model and floor_ranges' notes.

    The converter calibrates, then hands the calibrated model to its MLIR quantizer (`lite._mlir_quantize`);
    floor_ranges runs between the two by wrapping that one call for the duration of this conversion, so every
    other step (options, IO types, buffer dedup, metadata) stays the converter's own and a model that needs
    no floor converts byte for byte as before."""
    from unittest import mock

    import tensorflow as tf
    from tensorflow.lite.python import lite

    notes: list[str] | None = None  # floor_ranges' notes, once the converter has called the hook
    quantize = lite._mlir_quantize

    def floored_quantize(calibrated: bytes, *args, **kwargs) -> bytes:
        nonlocal notes
        calibrated, notes = floor_ranges(calibrated)
        return quantize(calibrated, *args, **kwargs)

    rows = calibration_rows(x_calib)
    c = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = lambda: ([rows[i:i + 1]] for i in range(len(rows)))
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = tf.int8
    c.inference_output_type = tf.int8
    c._experimental_disable_per_channel_quantization_for_dense_layers = True
    with mock.patch.object(lite, "_mlir_quantize", floored_quantize):
        model = c.convert()
    if notes is None:
        raise RuntimeError("the TFLite converter skipped its calibrate -> MLIR quantize step, which the "
                           "int8 range floor needs")
    return model, notes


def convert_tflite(onnx_path: Path, out_dir: Path, x_calib: np.ndarray) -> tuple[Path, Path, list[str]]:
    """Write model.tflite and model_quantized_int8_io.tflite into out_dir (intermediates stay in a temp
    dir); returns their paths and the int8 ranges floor_ranges raised. Raises ExportError with the
    converter's log attached as a note."""
    out_dir = Path(out_dir)
    log: list[str] = []
    step = "onnx2tf float32 conversion"
    try:
        # TF and the MLIR converter log from C++ straight to fd 2; keep it for the error note instead.
        with tempfile.TemporaryDirectory(prefix="onnx2tf_") as tmp, captured_fds(log), \
                contextlib.redirect_stdout(io.StringIO()):
            from .onnx_export import import_onnx

            import_onnx()  # onnx2tf imports onnx: first with stop signals held (TF's import stays interruptible)
            import onnx2tf  # sets TF_USE_LEGACY_KERAS and quiet TF logging before TF loads

            tf_dir = Path(tmp) / "saved_model"
            onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(tf_dir),
                            output_signaturedefs=True, not_use_onnxsim=True, non_verbose=True)
            shutil.copyfile(tf_dir / f"{Path(onnx_path).stem}_float32.tflite", out_dir / FLOAT_NAME)
            step = "int8 quantization"
            int8, floored = _quantize_int8(tf_dir, x_calib)
            (out_dir / INT8_NAME).write_bytes(int8)
    except (Exception, SystemExit) as e:  # onnx2tf calls sys.exit on some conversion errors
        err = ExportError(f"{step} failed: {first_line(e, typed=True)}")
        err.add_note("converter log (tail):\n" + "".join(log)[-4000:])
        raise err from e
    return out_dir / FLOAT_NAME, out_dir / INT8_NAME, floored
