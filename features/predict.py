"""python -m features.predict MODEL WAV_OR_DIR: run an exported .onnx/.tflite model on WAVs, as EI would.

Prints the predicted label and confidence per file (a file longer than one window: probabilities averaged
over its windows), then accuracy and a confusion matrix over the files whose label (subfolder, or file name
before the first dot) is one of the classes. Class names come from --classes, else metrics.json or
train_input.json next to the model; without them, class indices are printed. Unreadable files are skipped
with a warning (--strict: fail).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from features.cli import add_feature_args, feature_args, run
from features.dataset import extract
from features.errors import InputError
from features.wavdir import NAMING, find_wavs
from kws.errors import ArgumentParser


def load_classes(model: Path, spec: str | None) -> list[str] | None:
    """--classes as "a,b,c" or a JSON file with a "classes" list; else the first such file by the model."""
    if spec and not spec.lower().endswith(".json"):
        return [c.strip() for c in spec.split(",") if c.strip()]
    for path in [Path(spec)] if spec else [model.parent / "metrics.json", model.parent / "train_input.json"]:
        try:
            classes = json.loads(path.read_text())["classes"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            if spec:
                raise InputError(f"--classes {spec}: no 'classes' list ({type(e).__name__}: {e})") from None
            continue
        return [str(c) for c in classes]
    return None


def run_model(model: Path, x: np.ndarray) -> np.ndarray:
    """(N, C) probabilities; a model that cannot take these rows is bad input, reported in one line."""
    if not model.is_file() or model.suffix not in (".onnx", ".tflite"):
        raise InputError(f"{model}: expected an existing .onnx or .tflite file")
    from export.runtime import predict  # export/__init__ imports torch (1.5 s): only pay it to run a model

    try:
        return predict(model, x)
    except Exception as e:  # noqa: BLE001 - onnxruntime/LiteRT raise assorted types for a bad shape or format
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{model.name} could not run on {x.shape[1]}-feature rows (MFCC/window options must "
                         f"match training): {reason}") from None


def confusion(truth: list[int], pred: list[int], n: int) -> np.ndarray:
    """(n, n) counts, rows = true class, columns = predicted class."""
    m = np.zeros((n, n), dtype=int)
    np.add.at(m, (truth, pred), 1)
    return m


def report(names: list[str], files: list[str], probs: np.ndarray, truth: list[int | None]) -> list[str]:
    """The lines to print: one per file, then accuracy and the confusion matrix when labels are known."""
    pred = probs.argmax(axis=1)
    w_file, w_name = max(map(len, files + ["file"])), max(map(len, names + ["predicted"]))
    lines = [f"{'file':<{w_file}}  {'predicted':<{w_name}}  confidence  true"]
    lines += [f"{f:<{w_file}}  {names[p]:<{w_name}}  {p_row[p]:10.4f}  {'' if t is None else names[t]}"
              for f, p, p_row, t in zip(files, pred, probs, truth)]
    known = [(t, int(p)) for t, p in zip(truth, pred) if t is not None]
    if not known:
        return [*lines, f"accuracy: n/a (no file has a label among the classes; {NAMING})"]
    m = confusion(*zip(*known), len(names))
    w, cols = max(map(len, names + ["true/predicted"])), [max(len(n), 4) for n in names]

    def row(head: str, cells: list) -> str:
        return f"{head:<{w}}  " + "  ".join(f"{c:>{cw}}" for c, cw in zip(cells, cols))

    lines += [f"accuracy: {np.trace(m) / m.sum():.4f} ({np.trace(m)}/{m.sum()} files with known labels)",
              "confusion matrix (rows: true label, columns: predicted):", row("true/predicted", names)]
    lines += [row(name, list(counts)) for name, counts in zip(names, m)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m features.predict", description=__doc__.split("\n\n")[1])
    parser.add_argument("model", metavar="MODEL",
                        help="model.onnx, model.tflite or model_quantized_int8_io.tflite")
    parser.add_argument("target", metavar="WAV_OR_DIR", help="one WAV, or a folder of (labelled) WAVs")
    parser.add_argument("--classes", help='names "a,b,c" in one-hot order, or a JSON file with "classes"')
    add_feature_args(parser)
    args = parser.parse_args(argv)
    model, target = Path(args.model), Path(args.target)
    classes = load_classes(model, args.classes)
    items = find_wavs(target)
    feats = extract(items, args.strict, **feature_args(args))
    kept = [(path, label, f) for (path, label), f in zip(items, feats) if f is not None]
    if not kept:
        raise InputError(f"{target}: no readable WAV file")
    rows = run_model(model, np.concatenate([f for _, _, f in kept]))
    if classes is not None and len(classes) != rows.shape[1]:
        raise InputError(f"{len(classes)} class names {classes} but the model has {rows.shape[1]} outputs")
    names = classes or [str(i) for i in range(rows.shape[1])]
    probs = np.stack([p.mean(axis=0) for p in np.split(rows, np.cumsum([len(f) for *_, f in kept])[:-1])])
    files = [(path.relative_to(target) if target.is_dir() else path).as_posix() for path, *_ in kept]
    truth = [names.index(label) if classes and label in names else None for _, label, _ in kept]
    print("\n".join(report(names, files, probs, truth)))
    return 0


def cli() -> None:
    """The `dendritic-predict` command (pyproject.toml)."""
    run(main)


if __name__ == "__main__":
    cli()
