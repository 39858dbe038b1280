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


def _quantize_int8(saved_model: Path, x_calib: np.ndarray) -> bytes:
    """Full-int8 model with int8 input and output, builtin int8 kernels only (anything else fails loudly
    instead of becoming a Flex op) and per-tensor FULLY_CONNECTED weights (EI SDK has no per-channel FC)."""
    import tensorflow as tf

    rows = calibration_rows(x_calib)
    c = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = lambda: ([rows[i:i + 1]] for i in range(len(rows)))
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = tf.int8
    c.inference_output_type = tf.int8
    c._experimental_disable_per_channel_quantization_for_dense_layers = True
    return c.convert()


def convert_tflite(onnx_path: Path, out_dir: Path, x_calib: np.ndarray) -> tuple[Path, Path]:
    """Write model.tflite and model_quantized_int8_io.tflite into out_dir (intermediates stay in a temp
    dir). Raises ExportError with the converter's log attached as a note."""
    out_dir = Path(out_dir)
    log: list[str] = []
    step = "onnx2tf float32 conversion"
    try:
        # TF and the MLIR converter log from C++ straight to fd 2; keep it for the error note instead.
        with tempfile.TemporaryDirectory(prefix="onnx2tf_") as tmp, captured_fds(log), \
                contextlib.redirect_stdout(io.StringIO()):
            import onnx2tf  # sets TF_USE_LEGACY_KERAS and quiet TF logging before TF loads

            tf_dir = Path(tmp) / "saved_model"
            onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(tf_dir),
                            output_signaturedefs=True, not_use_onnxsim=True, non_verbose=True)
            shutil.copyfile(tf_dir / f"{Path(onnx_path).stem}_float32.tflite", out_dir / FLOAT_NAME)
            step = "int8 quantization"
            (out_dir / INT8_NAME).write_bytes(_quantize_int8(tf_dir, x_calib))
    except (Exception, SystemExit) as e:  # onnx2tf calls sys.exit on some conversion errors
        err = ExportError(f"{step} failed: {first_line(e, typed=True)}")
        err.add_note("converter log (tail):\n" + "".join(log)[-4000:])
        raise err from e
    return out_dir / FLOAT_NAME, out_dir / INT8_NAME
