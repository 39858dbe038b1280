"""What the block reports: metrics.json, the final summary table and training.png."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kws.trainer import EpochRecord


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def accuracy_block(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class accuracy and confusion matrix (rows = true class) of one model on one set."""
    pred = probs.argmax(1)
    m = confusion(y, pred, len(classes))
    per_class = {c: (float(m[i, i] / m[i].sum()) if m[i].sum() else None) for i, c in enumerate(classes)}
    return {"accuracy": float((pred == y).mean()), "per_class_accuracy": per_class, "confusion": m.tolist()}


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def summary_table(metrics: dict) -> str:
    """A fixed-width table for the end of the Studio log: one row per evaluated model and split."""
    rows = [("model", "split", "accuracy")]
    for split in ("validation", "holdout"):
        for kind in ("torch", "float", "int8"):
            acc = metrics.get("evaluation", {}).get(split, {}).get(kind, {}).get("accuracy")
            if acc is not None:
                rows.append((kind, split, f"{acc:.4f}"))
    lines = fixed_width(rows)
    facts = [f"format={metrics['model_format']}", f"dendrites={metrics['dendrites']}",
             f"params={metrics['params']}", f"macs={metrics.get('macs')}", f"arena_bytes={metrics.get('arena_bytes')}",
             f"epochs={metrics['epochs']}", f"train_seconds={metrics['train_seconds']:.1f}"]
    files = [f"{name}={size}B" for name, size in metrics.get("files", {}).items()]
    cycles = [f"  k={c['dendrites']}: params={c['params']} best_val={c['best_val_accuracy']:.4f}"
              + (f" holdout={c['holdout_accuracy']:.4f}" if c.get("holdout_accuracy") is not None else "")
              for c in metrics.get("cycles", [])]
    return "\n".join(["", "=== Dendritic NN summary ===", *lines, *recall_table(metrics.get("evaluation", {})),
                      "sizing: " + sizing_line(metrics), "  ".join(facts), "  ".join(files), "cycles (best validation epoch per dendrite count):", *cycles,
                      *deployment_table(metrics.get("deployment", {})), ""])


def recall_table(evaluation: dict) -> list[str]:
    """Per-class recall of the shipped int8 model on each split: a keyword that is rarely caught hides
    easily in the overall accuracy, and class weighting (--auto-weight-classes) is the fix to try."""
    splits = [s for s in ("validation", "holdout") if "int8" in evaluation.get(s, {})]
    if not splits:
        return []
    per = {s: evaluation[s]["int8"]["per_class_accuracy"] for s in splits}
    rows = [("class", *(f"{s} recall (int8)" for s in splits))]
    for c in per[splits[0]]:
        rows.append((c, *("-" if per[s].get(c) is None else f"{per[s][c]:.4f}" for s in splits)))
    return ["per-class recall:", *fixed_width(rows)]


def deployment_table(deployment: dict) -> list[str]:
    """The shipped model beside the same net without dendrites: what the dendrites cost and bought."""
    if not deployment:
        return []
    head = ("model", "dendrites", "params", "int8 bytes", "arena B", "MACs", "val int8", "holdout int8")
    rows = [head]
    for name, d in deployment.items():
        hold = d.get("holdout_int8_accuracy")
        rows.append((name, str(d["dendrites"]), str(d["params"]), str(d["files"]["model_quantized_int8_io.tflite"]),
                     str(d["arena_bytes"]), str(d["macs"]), f"{d['validation_int8_accuracy']:.4f}",
                     "-" if hold is None else f"{hold:.4f}"))
    return ["deployment cost (int8, real TFLite Micro arena):", *fixed_width(rows)]


def fixed_width(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns with a dashed rule under the header row, for the plain-text Studio log."""
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows]
    return [lines[0], "  ".join("-" * w for w in width), *lines[1:]]


def sizing_line(metrics: dict) -> str:
    """The budget, what it chose and where the shipped model's dendrites are, in one line."""
    s = metrics.get("sizing") or {}
    text = f"budget {s['budget']:,} params ({s['source']})" if s.get("budget") else "no parameter budget"
    if s.get("channels"):
        text += f": conv channels {s['channels']}"
    layers = metrics.get("dendrites_per_layer") or {}
    grown = {name: k for name, k in layers.items() if k}
    text += f"; shipped {metrics['params']:,} params"
    if grown:
        neurons = metrics.get("dendrite_neurons") or {}
        text += ", dendrites per neuron: " + ", ".join(f"{n}={k}{_on(neurons.get(n))}" for n, k in grown.items())
    return text


def _on(layer: dict | None) -> str:
    """' (on 5/9, 2/9 neurons)' when selective installation left neurons out, else ''."""
    if not layer or all(n == layer["neurons"] for n in layer["per_dendrite"]):
        return ""
    c = layer["neurons"]
    return " (on " + ", ".join(f"{n}/{c}" for n in layer["per_dendrite"]) + " neurons)"


def plot_training(history: list[EpochRecord], cycles: list[dict], path: Path, title: str = "") -> None:
    """training.png: accuracy per epoch with neuron/dendrite phase bands, dendrite additions marked,
    and deployed params per cycle; `title` (the sizing line) on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    ep = [r.epoch for r in history]
    ax.plot(ep, [r.train_acc for r in history], label="train accuracy", lw=1.2)
    ax.plot(ep, [r.val_acc for r in history], label="validation accuracy", lw=1.2)
    held = [(r.epoch, r.holdout_acc) for r in history if r.holdout_acc is not None]
    if held:  # measured at checkpoint candidates only
        ax.plot(*zip(*held), "o", ms=3, label="holdout accuracy (at cycle-best epochs)", alpha=0.7)
    start = 0
    for i in range(1, len(history) + 1):  # shade contiguous runs of one phase
        if i == len(history) or history[i].phase != history[start].phase:
            colour = "tab:orange" if history[start].phase == "dendrite" else "tab:blue"
            ax.axvspan(history[start].epoch - 0.5, history[i - 1].epoch + 0.5, color=colour, alpha=0.08, lw=0)
            start = i
    added = [r.epoch + 0.5 for r in history if r.action in ("add_dendrites", "install_dendrites")]
    for j, x in enumerate(added):
        ax.axvline(x, color="tab:red", ls="--", lw=1, label="dendrites added" if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("blue band: neuron phase, orange band: dendrite phase")
    ax.legend(loc="lower right", fontsize=8)
    if cycles:
        ks = [str(c["dendrites"]) for c in cycles]
        bx.bar(ks, [c["params"] for c in cycles], color="tab:green")
        for k, c in zip(ks, cycles):
            bx.annotate(f"{c['best_val_accuracy']:.3f}", (k, c["params"]), ha="center", va="bottom", fontsize=8)
    bx.set_xlabel("dendrites per neuron")
    bx.set_ylabel("deployed params (label: best val acc)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
