"""python -m features.predict on ONNX and float/int8 TFLite models, and the full local loop (slow)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from features_wavs import FIXTURE, REPO, ROWS, assert_one_line_error, make_wav_tree, run_module
from onnx import TensorProto, helper

from export.runtime import predict
from features import compute_wav
from features.predict import main

pytestmark = pytest.mark.skipif(not ROWS, reason=f"wav fixture not found at {FIXTURE}")
CLASSES = ["helloworld", "noise", "unknown"]

# Builds float and int8-I/O TFLite twins of the centroid model in a child process, so TensorFlow's import
# (~5 s, many threads) stays out of the test process.
TFLITE_SCRIPT = """
import sys, numpy as np, tensorflow as tf
w, b, x, out = np.load(sys.argv[1]), np.load(sys.argv[2]), np.load(sys.argv[3]), sys.argv[4]
class Net(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, w.shape[0]], tf.float32)])
    def __call__(self, features):
        return tf.nn.softmax(tf.matmul(features, w) + b)
net = Net()
for name, int8 in (("float.tflite", False), ("int8.tflite", True)):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([net.__call__.get_concrete_function()], net)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([row[None]] for row in x)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    open(f"{out}/{name}", "wb").write(conv.convert())
"""


def parse(stdout: str) -> tuple[dict[str, tuple[str, float, str]], list[str]]:
    """{file: (predicted, confidence, true)} from the per-file table, and the lines after it."""
    lines = stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("accuracy:"))
    table = {}
    for line in lines[1:end]:
        file, pred, conf, *true = line.split()
        table[file] = (pred, float(conf), true[0] if true else "")
    return table, lines[end:]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A labelled WAV folder and a nearest-centroid classifier over its EI features, exported to ONNX."""
    root = tmp_path_factory.mktemp("predict")
    wavs = make_wav_tree(root / "wavs")
    files = sorted(p.relative_to(wavs).as_posix() for p in wavs.rglob("*.wav"))
    x = np.stack([compute_wav(wavs / f) for f in files])
    labels = np.array([CLASSES.index(f.split("/")[0]) for f in files])
    centroids = np.stack([x[labels == c].mean(axis=0) for c in range(len(CLASSES))])
    w, b = centroids.T.astype(np.float32), (-0.5 * (centroids ** 2).sum(axis=1)).astype(np.float32) / 100
    w /= 100  # keep the softmax from saturating, so confidences are informative
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Add", ["z", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["y"], axis=1)], "centroids",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, len(CLASSES)])],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b")])
    model = root / "model" / "model.onnx"
    model.parent.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), model)
    logits = x @ w + b
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"root": root, "wavs": wavs, "model": model, "files": files, "x": x, "labels": labels, "w": w,
            "b": b, "probs": probs / probs.sum(axis=1, keepdims=True)}


def run_main(capsys: pytest.CaptureFixture, *args: str | Path) -> str:
    assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out


def test_onnx_labels_confidence_accuracy_and_confusion(setup: dict, capsys: pytest.CaptureFixture) -> None:
    table, tail = parse(run_main(capsys, setup["model"], setup["wavs"], "--classes", ",".join(CLASSES)))
    expected = setup["probs"].argmax(axis=1)
    assert list(table) == setup["files"]
    for f, p, row, label in zip(setup["files"], expected, setup["probs"], setup["labels"]):
        assert table[f] == (CLASSES[p], pytest.approx(row[p], abs=1e-4), CLASSES[label])
    correct = int((expected == setup["labels"]).sum())
    n = len(expected)
    assert tail[0] == f"accuracy: {correct / n:.4f} ({correct}/{n} files with known labels)"
    matrix = np.array([[int(c) for c in line.split()[1:]] for line in tail[3:]])
    assert matrix.shape == (3, 3) and np.trace(matrix) == correct
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(setup["labels"], minlength=3))


def test_class_names_from_metrics_json_or_indices(setup: dict, capsys: pytest.CaptureFixture) -> None:
    model = setup["model"]
    (model.parent / "metrics.json").write_text(json.dumps({"classes": CLASSES, "accuracy": 1.0}))
    try:
        table, tail = parse(run_main(capsys, model, setup["wavs"]))
        assert {pred for pred, _, _ in table.values()} <= set(CLASSES) and tail[1].startswith("confusion")
    finally:
        (model.parent / "metrics.json").unlink()
    single = setup["wavs"] / setup["files"][0]
    table, tail = parse(run_main(capsys, model, single))
    assert next(pred for pred, _, _ in table.values()) in {"0", "1", "2"}
    assert len(tail) == 1 and tail[0].startswith("accuracy: n/a (no file has a label among the classes; labels "
                                                 "come from the first subfolder (yes/a.wav)")


def test_tflite_float_and_int8_models(setup: dict, capsys: pytest.CaptureFixture) -> None:
    root = setup["root"]
    for name in ("w", "b", "x"):
        np.save(root / f"{name}.npy", setup[name])
    subprocess.run([sys.executable, "-c", TFLITE_SCRIPT, *(root / f"{n}.npy" for n in "wbx"), root],
                   check=True, capture_output=True, timeout=300)
    for name in ("float.tflite", "int8.tflite"):
        table, _ = parse(run_main(capsys, root / name, setup["wavs"], "--classes", ",".join(CLASSES)))
        probs = predict(root / name, setup["x"])
        assert [table[f][0] for f in setup["files"]] == [CLASSES[p] for p in probs.argmax(axis=1)]
        agree = np.mean(probs.argmax(axis=1) == setup["probs"].argmax(axis=1))
        assert agree >= (1.0 if name == "float.tflite" else 0.8), (name, agree)


def test_bad_input_fails_in_one_line(setup: dict, tmp_path: Path) -> None:
    model, wavs = setup["model"], setup["wavs"]
    assert_one_line_error(run_module("features.predict", tmp_path / "no.onnx", wavs), "expected an existing")
    assert_one_line_error(run_module("features.predict", model, wavs, "--num-cepstral", "12"),
                          "could not run on 600-feature rows")
    assert_one_line_error(run_module("features.predict", model, wavs, "--classes", "a,b"),
                          "2 class names ['a', 'b'] but the model has 3 outputs")
    (tmp_path / "bad.wav").write_bytes(b"")
    assert_one_line_error(run_module("features.predict", model, tmp_path / "bad.wav"), "no readable WAV")


@pytest.mark.slow
def test_round_trip_wavs_features_train_predict(tmp_path: Path) -> None:
    """The local loop end to end: WAV folders -> python -m features -> train.py -> python -m features.predict
    on every artifact train.py writes (ONNX, float TFLite, int8-I/O TFLite)."""
    if not (REPO / "train.py").is_file():
        pytest.skip("train.py does not exist yet")
    wavs = tmp_path / "wavs"
    for row in ROWS:
        if row["file"].split("__")[0] in ("hello-world", "commands12"):  # 36 clips, 13 labels
            (wavs / row["label"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURE / row["file"], wavs / row["label"] / row["file"])
    data, out = tmp_path / "data", tmp_path / "out"
    proc = run_module("features", wavs, "--out-directory", data)
    assert proc.returncode == 0, proc.stderr
    train = [sys.executable, "train.py", "--data-directory", data, "--out-directory", out, "--epochs", "3"]
    proc = subprocess.run(train, cwd=REPO, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    classes = json.loads((data / "train_input.json").read_text())["classes"]
    predictions = {}
    for name in ("model.onnx", "model.tflite", "model_quantized_int8_io.tflite"):
        # class names: explicit for the ONNX run, from train.py's metrics.json for the TFLite runs
        explicit = ["--classes", ",".join(classes)] if name == "model.onnx" else []
        proc = run_module("features.predict", out / name, wavs, *explicit)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        table, tail = parse(proc.stdout)
        assert len(table) == 36 and tail[0].startswith("accuracy: ") and tail[1].startswith("confusion")
        assert {pred for pred, _, _ in table.values()} <= set(classes)
        predictions[name] = [table[f][0] for f in sorted(table)]
    agree = np.mean(np.array(predictions["model.onnx"]) == np.array(predictions["model.tflite"]))
    assert agree >= 0.9, agree
