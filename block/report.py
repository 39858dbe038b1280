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
             f"params={metrics['params']}", f"flash_bytes={metrics.get('flash_bytes')}",
             f"ram_bytes={metrics.get('arena_bytes')}", f"macs={metrics.get('macs')}",
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
    head = ("model", "dendrites", "params", "flash B (int8 file)", "RAM B (arena)", "MACs", "val int8",
            "holdout int8")
    rows = [head]
    for name, d in deployment.items():
        hold = d.get("holdout_int8_accuracy")
        rows.append((name, str(d["dendrites"]), str(d["params"]), str(d["flash_bytes"]), str(d["arena_bytes"]),
                     str(d["macs"]), f"{d['validation_int8_accuracy']:.4f}", "-" if hold is None else f"{hold:.4f}"))
    what = "shipped model and the same net without dendrites" if len(deployment) > 1 else "shipped model"
    return [f"deployment cost of the {what} (int8; RAM measured by the real TFLite Micro interpreter):",
            *fixed_width(rows)]


def fixed_width(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns with a dashed rule under the header row, for the plain-text Studio log."""
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows]
    return [lines[0], "  ".join("-" * w for w in width), *lines[1:]]


CUSTOM_ONLY = "--conv-type/--conv-layers/--conv-width/--width-growth/--kernel-size/--linear-*"


def network_line(cfg, sizing: dict, preset: str) -> str:
    """The network this run builds, logged right after the arguments: a preset brings its own architecture
    (sized to the budget), so the `arguments:` line's custom-architecture values do not describe it."""
    from block.sizing import deployed
    from kws.nets.convfc import conv_channels
    from kws.nets.dstcn import DSConfig

    net, k = cfg.net, cfg.schedule.max_dendrites
    if isinstance(net, DSConfig):
        branches = f", trained as kernels {'/'.join(map(str, net.branch_kernels))}" if net.branch_kernels else ""
        text = (f"network: preset {preset}: DS-TCN stem conv {net.width} (kernel {net.stem_kernel}) -> {net.blocks} "
                f"blocks of depthwise kernel {net.kernel}{branches} + pointwise {net.width} with residual "
                f"({net.downsample} strided) -> average pool -> dense {net.n_classes}, {deployed(cfg, 0):,} params")
    else:
        hidden = f"dense {net.linear_width} x{net.linear_layers - 1} -> " if net.linear_layers > 1 else ""
        text = (f"network: preset {preset}: {net.conv_type} conv channels {conv_channels(net)} "
                f"(kernel {net.kernel_size}) -> {hidden}dense {net.n_classes}, {deployed(cfg, 0):,} params")
    if cfg.mode != "traditional":
        text += f"; {cfg.mode} dendrites: up to {k} per neuron, at most {deployed(cfg, k):,} params"
    if sizing.get("budget") or sizing.get("device"):
        text += f"; sized to a budget of {budget_text(sizing)} ({sizing['source']})"
    if preset != "custom":
        text += f"; {CUSTOM_ONLY} apply to --model-preset custom only"
    return text


def budget_text(sizing: dict) -> str:
    """'3,228 params and 10 KB flash and 5 KB RAM': the parameter and device limits a run was sized to."""
    from block.sizing import Budget

    limits = sizing.get("device_limits") or {}
    return str(Budget(sizing.get("budget") or 0, limits.get("flash_bytes", 0), limits.get("ram_bytes", 0),
                      limits.get("macs", 0)))


def sizing_line(metrics: dict) -> str:
    """The budget, what it chose and where the shipped model's dendrites are, in one line."""
    s = metrics.get("sizing") or {}
    text = f"budget {budget_text(s)} ({s['source']})" if s.get("budget") or s.get("device") else "no parameter budget"
    if s.get("channels"):
        text += f": conv channels {s['channels']}"
    layers = metrics.get("dendrites_per_layer") or {}
    grown = {name: k for name, k in layers.items() if k}
    text += f"; shipped {metrics['params']:,} params"
    if metrics.get("flash_bytes") is not None:
        text += f", {metrics['flash_bytes']:,} B flash, {metrics['arena_bytes']:,} B RAM"
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


# Curve colours kept apart from the dendrite-phase shading (gold) and the dendrite-addition lines (red).
COLOURS = {"train": "black", "validation": "tab:purple", "holdout": "tab:brown", "added": "tab:red",
           "dendrite phase": "gold"}
NAMES = {"shipped": "shipped model", "traditional": "same net without dendrites"}


def _phase_spans(history: list[EpochRecord], phase: str) -> list[tuple[int, int]]:
    """(first epoch, last epoch) of every contiguous run of `phase`."""
    spans: list[tuple[int, int]] = []
    for r in history:
        if r.phase != phase:
            continue
        if spans and spans[-1][1] == r.epoch - 1:
            spans[-1] = (spans[-1][0], r.epoch)
        else:
            spans.append((r.epoch, r.epoch))
    return spans


def device_lines(deployment: dict, cycles: list[dict]) -> list[str]:
    """training.png's right panel: params, flash and RAM of the shipped model (and of the same net without
    dendrites when it has some), then the best validation accuracy per dendrite count when there were several."""
    lines: list[str] = []
    for name, d in deployment.items():
        hold = d.get("holdout_int8_accuracy")
        acc = f"  int8 acc  val {d['validation_int8_accuracy']:.3f}" + ("" if hold is None else f", holdout {hold:.3f}")
        k = d["dendrites"]
        lines += [NAMES.get(name, name) + (f" ({k} dendrite{'' if k == 1 else 's'})" if name == "shipped" else ""),
                  f"  params  {d['params']:>9,}",
                  f"  flash   {d['flash_bytes']:>9,} B  (int8 file)", f"  RAM     {d['arena_bytes']:>9,} B  (arena)",
                  acc, ""]
    if len(cycles) > 1:
        lines.append("best validation per dendrite count:")
        lines += [f"  {c['dendrites']}: {c['params']:>7,} params  val {c['best_val_accuracy']:.3f}" for c in cycles]
    return lines


def plot_training(history: list[EpochRecord], cycles: list[dict], path: Path, title: str = "",
                  deployment: dict | None = None) -> list[str]:
    """training.png: accuracy per epoch (dendrite phases shaded and additions marked, only when the run had
    them) and what the model costs on the device (device_lines); `title` (the sizing line) wrapped on top.
    Returns the legend's labels (what the figure claims to show)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [2.6, 1.4]})
    ep = [r.epoch for r in history]
    ax.plot(ep, [r.train_acc for r in history], color=COLOURS["train"], lw=1.2, label="train accuracy")
    ax.plot(ep, [r.val_acc for r in history], color=COLOURS["validation"], lw=1.4, label="validation accuracy")
    held = [(r.epoch, r.holdout_acc) for r in history if r.holdout_acc is not None]
    if held:  # measured at checkpoint candidates only
        ax.plot(*zip(*held), "o", ms=3, color=COLOURS["holdout"], alpha=0.8,
                label="holdout accuracy (at each cycle's new best)")
    for j, (first, last) in enumerate(_phase_spans(history, "dendrite")):
        ax.axvspan(first - 0.5, last + 0.5, color=COLOURS["dendrite phase"], alpha=0.3, lw=0,
                   label="dendrite phase (neurons frozen)" if j == 0 else None)
    added = [r.epoch + 0.5 for r in history if r.action in ("add_dendrites", "install_dendrites")]
    for j, x in enumerate(added):
        ax.axvline(x, color=COLOURS["added"], ls="--", lw=1, label="dendrites added" if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy per epoch", fontsize=10)
    labels = [t.get_text() for t in ax.legend(loc="lower right", fontsize=8).get_texts()]
    bx.axis("off")
    bx.set_title("on the device", fontsize=10)
    bx.text(0.0, 1.0, "\n".join(device_lines(deployment or {}, cycles)), va="top", ha="left", family="monospace",
            fontsize=8.5, transform=bx.transAxes)
    if title:
        fig.suptitle(textwrap.fill(title, 150), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # "tight": nothing clipped, whatever the title's length
    plt.close(fig)
    return labels
