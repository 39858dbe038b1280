"""End-to-end export of a plain and a dendritic ei-default KWSNet: artifacts, parity, the MCU checks, and the
real TFLite Micro interpreter. Each model is exported once per module and the tests read the result."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_fold import dendritic_net

from export import ExportError, export_all
from export.runtime import (
    input_quantization,
    litert_int8_predict,
    litert_interpreter,
    predict,
    quantize,
    tflm_arena_bytes,
    tflm_predict,
)
from export.verify import TFLM_OPS, check_tflite
from kws.nets.convfc import KWSNet, preset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hello-world"
FILES = ("model.onnx", "model.tflite", "model_quantized_int8_io.tflite")
N_CHECK = 120


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    """(calibration rows, check rows): the EI validation split when ../shared is there, else random rows."""
    path = DATA / "X_split_test.npy"
    x = np.load(path) if path.exists() else np.random.default_rng(0).normal(size=(200, 650))
    x = x.astype(np.float32)
    return x, x[:N_CHECK]


def _export(model: torch.nn.Module, out: Path, features) -> dict:
    t = time.perf_counter()
    report = export_all(model, out, *features)
    report["wall_s"] = time.perf_counter() - t
    print(f"export {out.name}: {report}")
    return report


@pytest.fixture(scope="module")
def plain(tmp_path_factory, features) -> tuple[Path, dict]:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("plain")
    return out, _export(KWSNet(preset("ei-default", 650, 3)), out, features)


@pytest.fixture(scope="module")
def dendritic(tmp_path_factory, features) -> tuple[Path, dict]:
    """ei-default with 2 tanh dendrites on every layer, non-zero cascade (CC-style)."""
    out = tmp_path_factory.mktemp("dendritic")
    return out, _export(dendritic_net("conv1d", "tanh", 2, "cc", linear_layers=1), out, features)


@pytest.fixture(params=["plain", "dendritic"])
def exported(request) -> tuple[Path, dict]:
    return request.getfixturevalue(request.param)


def test_artifacts_and_report(exported) -> None:
    out, report = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # intermediates stay in a temp dir
    assert report["files"] == {name: (out / name).stat().st_size for name in FILES}
    assert report["macs"] > 0 and report["params"] > 0 and report["arena_bytes"] > 0
    assert report["ops"]["CONV_2D"] == 2 and report["ops"]["SOFTMAX"] == 1
    assert report["wall_s"] < 60


def test_dendritic_report_counts(plain, dendritic) -> None:
    """2 dendrites stack into the same conv/FC ops (3x the output channels, so 3x the MACs), plus per layer
    (3 layers) one SPLIT_V (SPLIT at ONNX opset >= 13), 2 TANH, 3 MUL and 3 ADD (2 for T, 1 for the cascade U_1)."""
    p, d = plain[1], dendritic[1]
    assert d["macs"] == 3 * p["macs"]
    for op in ("CONV_2D", "FULLY_CONNECTED"):
        assert d["ops"][op] == p["ops"][op]
    assert d["ops"]["SPLIT_V"] == 3 and d["ops"]["TANH"] == 6 and d["ops"]["MUL"] == 9 and d["ops"]["ADD"] == 9


def test_float_parity_with_torch(exported, features) -> None:
    """The parity the export gated on, re-measured here through the public predict()."""
    out, report = exported
    for key in ("fold_max_abs_diff", "onnx_max_abs_diff", "tflite_max_abs_diff"):
        assert report["parity"][key] <= 1e-4, key
    x = features[1]
    probs = predict(out / "model.tflite", x)
    assert probs.shape == (len(x), 3)
    np.testing.assert_allclose(probs, predict(out / "model.onnx", x), atol=1e-4)
    int8 = predict(out / "model_quantized_int8_io.tflite", x)
    assert np.abs(int8 - probs).max() < 0.1 and np.abs(int8.sum(1) - 1).max() < 0.05


def test_onnx_is_opset_10_with_static_shapes(exported) -> None:
    """model.onnx uses Edge Impulse's own PyTorch example's opset (export/onnx_export.py OPSET has the
    measurements behind it): static (1, 650) in, (1, 3) out, weights as initializers, not inputs."""
    import onnx

    out, _ = exported
    m = onnx.load(str(out / "model.onnx"))
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 10)]
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*m.graph.input, *m.graph.output)]
    assert dims == [[1, 650], [1, 3]] and m.graph.initializer
    assert {n.op_type for n in m.graph.node} <= {"Constant", "Reshape", "Transpose", "Conv", "Relu", "Pad",
                                                 "MaxPool", "Flatten", "Gemm", "Split", "Tanh", "Mul", "Add",
                                                 "Softmax"}


def test_mcu_rules(exported) -> None:
    """TFLite Micro builtins only, static shapes, 1 input / 1 output, int8 I/O, per-tensor FC weights."""
    out, _ = exported
    for name, int8 in (("model.tflite", False), ("model_quantized_int8_io.tflite", True)):
        check_tflite(out / name, int8=int8)  # the export's own gate; asserted independently below
        it = litert_interpreter(out / name)
        ops = it._get_ops_details()
        tensors = {t["index"]: t for t in it.get_tensor_details()}
        assert {d["op_name"] for d in ops} <= TFLM_OPS
        assert all(-1 not in t["shape_signature"] for t in tensors.values())
        (inp,), (outp,) = it.get_input_details(), it.get_output_details()
        assert list(inp["shape"]) == [1, 650] and list(outp["shape"]) == [1, 3]
        assert inp["dtype"] == outp["dtype"] == (np.int8 if int8 else np.float32)
        fc_weights = [tensors[d["inputs"][1]] for d in ops if d["op_name"] == "FULLY_CONNECTED"]
        assert fc_weights and all(len(w["quantization_parameters"]["scales"]) <= 1 for w in fc_weights)


def test_tflm_matches_litert(exported, features) -> None:
    """Real TFLite Micro vs LiteRT reference kernels on the same int8 input: bit-exact without dendrites,
    at most 2 LSB with tanh (the kernels' tanh approximations differ)."""
    out, report = exported
    path = out / "model_quantized_int8_io.tflite"
    q = quantize(features[1], *input_quantization(path))
    tflm, ref = tflm_predict(path, q), litert_int8_predict(path, q)
    assert tflm.dtype == np.int8 and tflm.shape == ref.shape == (len(q), 3)
    lsb = np.abs(tflm.astype(int) - ref.astype(int)).max()
    assert lsb <= (2 if "TANH" in report["ops"] else 0)
    assert tflm_arena_bytes(path) == report["arena_bytes"] > 0


def test_export_keeps_model_and_rejects_bad_input(tmp_path, features) -> None:
    net = KWSNet(preset("ei-default", 650, 3)).train()
    with pytest.raises(ExportError, match="check set"):
        export_all(net, tmp_path, features[0], np.zeros((0, 650), np.float32))
    assert net.training


# ---- the checks must catch what they guard against (small hand-made TFLite graphs) ----

def _tflite(tmp_path: Path, fn, batch: int | None = 1, int8: bool = False,
            per_channel_fc: bool = False) -> Path:
    import tensorflow as tf

    spec = tf.TensorSpec([batch, 650], tf.float32)
    cf = tf.function(fn, input_signature=[spec]).get_concrete_function()
    c = tf.lite.TFLiteConverter.from_concrete_functions([cf])
    if int8:
        rows = np.random.default_rng(0).normal(size=(20, 1, 650)).astype(np.float32)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([r] for r in rows)
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = c.inference_output_type = tf.int8
        c._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_fc
    path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.tflite"
    path.write_bytes(c.convert())
    return path


def _dense(x):
    import tensorflow as tf

    w = tf.constant(np.random.default_rng(1).normal(size=(650, 3)).astype(np.float32))
    return tf.nn.softmax(tf.matmul(x, w))


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_checks_catch_violations(tmp_path) -> None:
    import tensorflow as tf

    check_tflite(_tflite(tmp_path, _dense, int8=True), int8=True)  # the good case passes
    cases = [
        (_tflite(tmp_path, _dense, int8=True, per_channel_fc=True), True, "per-channel"),
        (_tflite(tmp_path, _dense), True, "input is float32, expected int8"),
        (_tflite(tmp_path, _dense, batch=None), False, "dynamic dims"),
        (_tflite(tmp_path, lambda x: tf.pow(x, x)), False, "POW"),
    ]
    for path, int8, message in cases:
        with pytest.raises(ExportError, match=message):
            check_tflite(path, int8=int8)
