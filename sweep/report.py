"""Sweep outputs: trials.csv, pareto.png (the paper's Figure 1) and frontier.md, plus the best-trial pick.

Selection is always on validation accuracy. Holdout accuracy is the test score of the models chosen on
validation: it is shown next to them and never used to choose (the holdout panel of pareto.png plots the
validation frontier's models at their holdout accuracy, not a holdout frontier).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path

from optuna.trial import FrozenTrial

from .space import ALL_KNOBS, FORMATS
from .study import retried_numbers, state_word, tally

COLORS = {"traditional": "tab:blue", "gd": "tab:orange", "cc": "tab:green"}
BUDGETS = (250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000)
COLUMNS = (
    "number",
    "state",
    "model_format",
    "params",
    "dendrites",
    "val_accuracy",
    "holdout_accuracy",
    "epochs",
    "best_epoch",
    "seconds",
    "batch",
    "base_params",
    "bound_params",
    "max_dendrites_used",
    "flash_bytes",
    "arena_bytes",
    "macs",
    "retry_of",
    "retried",
    "worker",
    "reason",
    "error",
)
Row = dict


def trial_rows(trials: list[FrozenTrial]) -> list[Row]:
    """One flat dict per trial: results, size bounds, retry links, then every searched value."""
    retried = retried_numbers(trials)
    rows = []
    for t in trials:
        history = t.system_attrs.get("retry_history", [])
        row = {
            "number": t.number,
            "state": state_word(t),
            "retry_of": history[0] if history else None,
            "retried": t.number in retried,
        }
        row |= {k: t.user_attrs.get(k) for k in COLUMNS if k not in row}
        row |= t.user_attrs.get("device") or {}  # the trained model's measured flash, RAM and MACs, if any
        row["device"] = t.user_attrs.get("device")
        row["reason"] = t.user_attrs.get("reason", t.user_attrs.get("pruned"))  # "pruned": studies before #21
        row |= {k: t.params.get(k) for k in ALL_KNOBS}
        row["model_format"] = t.params.get("model_format") or t.user_attrs.get("hparams", {}).get("model_format")
        row["hparams"] = t.user_attrs.get("hparams", {})
        row["argv_list"] = list(t.user_attrs.get("argv", []))
        row["argv"] = " ".join(row["argv_list"])
        rows.append(row)
    return rows


def complete(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r["state"] == "COMPLETE" and r["params"] is not None]


def pick_best(rows: Iterable[Row], max_params: int = 0) -> Row | None:
    """Highest validation accuracy within the parameter budget; ties: fewer params, then the earlier trial."""
    fits = [r for r in complete(rows) if not max_params or r["params"] <= max_params]
    return min(fits, key=lambda r: (-r["val_accuracy"], r["params"], r["number"]), default=None)


def pareto_front(rows: Iterable[Row], key: str = "val_accuracy") -> list[Row]:
    """Non-dominated rows (fewer params, higher `key`), by increasing params."""
    front: list[Row] = []
    for r in sorted(complete(rows), key=lambda r: (r["params"], -r[key], r["number"])):
        if not front or r[key] > front[-1][key]:
            front.append(r)
    return front


def write_csv(rows: list[Row], path: Path) -> None:
    fields = list(COLUMNS) + list(ALL_KNOBS) + ["argv"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


DEVICE_AXES = (("flash_bytes", "flash: int8 file bytes (log scale)"), ("arena_bytes", "RAM: TFLite Micro arena bytes (log scale)"),
               ("macs", "MACs per inference (log scale)"))


def plot_pareto(rows: list[Row], path: Path, max_params: int = 0) -> None:
    """Log-x params vs accuracy, one colour per model format, each format's validation Pareto front drawn;
    beside them validation accuracy against flash, RAM and MACs for the trials measured on the device
    (under device budgets, and in the Studio search)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = complete(rows)
    has_holdout = any(r["holdout_accuracy"] is not None for r in done)
    panels = [("val_accuracy", "validation accuracy")] + (
        [("holdout_accuracy", "holdout accuracy")] if has_holdout else []
    )
    device = [(x, label) for x, label in DEVICE_AXES if any(r.get(x) for r in done)]
    fig, axes = plt.subplots(1, len(panels) + len(device), figsize=(6.5 * (len(panels) + len(device)), 5),
                             squeeze=False)
    for ax, (x, label) in zip(axes[0][len(panels):], device):
        for fmt in FORMATS:
            mine = [r for r in done if r["model_format"] == fmt and r.get(x)]
            ax.scatter([r[x] for r in mine], [r["val_accuracy"] for r in mine], s=22, color=COLORS[fmt], alpha=0.6,
                       label=fmt)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title("on the device: " + label.split(":")[0].split(" (")[0], fontsize=9)
    for ax, (key, label) in zip(axes[0], panels):
        for fmt in FORMATS:
            mine = [r for r in done if r["model_format"] == fmt]
            if not mine:
                continue
            grown = [r for r in mine if fmt == "traditional" or r["dendrites"]]
            flat = [r for r in mine if fmt != "traditional" and not r["dendrites"]]
            ax.scatter(
                [r["params"] for r in grown],
                [r[key] for r in grown],
                s=22,
                color=COLORS[fmt],
                alpha=0.6,
                label=f"{fmt} ({len(mine)})",
            )
            if flat:
                ax.scatter(
                    [r["params"] for r in flat],
                    [r[key] for r in flat],
                    s=22,
                    facecolors="none",
                    edgecolors=COLORS[fmt],
                    alpha=0.8,
                )
            front = pareto_front(mine)
            xs, ys = [r["params"] for r in front], [r[key] for r in front]
            if key == "val_accuracy":
                ax.step(xs, ys, where="post", color=COLORS[fmt], lw=2)
            else:  # the validation front's models, at their holdout accuracy
                ax.plot(xs, ys, color=COLORS[fmt], lw=2, marker="D", ms=4)
        if max_params:
            ax.axvline(max_params, color="k", ls="--", lw=1, label=f"budget {max_params:,}")
        ax.set_xscale("log")
        ax.set_xlabel("deployed parameters (dendrites included, log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(
            label
            + (
                " (front: non-dominated on validation)"
                if key == "val_accuracy"
                else " of the validation front (never selected on)"
            ),
            fontsize=9,
        )
    axes[0][0].legend(
        loc="lower right", fontsize=8, title="hollow: gd/cc run kept 0 dendrites", title_fontsize=7
    )
    accs = [r[k] for r in done for k, _ in panels if r[k] is not None]
    if accs:
        lo = sorted(accs)[len(accs) // 10]  # keep the interesting top: hide the worst 10 %
        for ax in axes[0]:  # same scale on both panels, with tick labels on each
            ax.set_ylim(max(0.0, lo - 0.02), min(1.0, max(accs) + 0.01))
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _cell(r: Row | None) -> str:
    if r is None:
        return "–"
    hold = f" / {r['holdout_accuracy']:.3f}" if r["holdout_accuracy"] is not None else ""
    return f"{r['val_accuracy']:.3f}{hold} ({r['params']:,} p, k={r['dendrites']}, #{r['number']})"


def _deltas(model: Row | None, trad: Row | None) -> str:
    """'Δ val | Δ holdout' table cells of a model against the traditional one, in accuracy points."""
    cells = []
    for key in ("val_accuracy", "holdout_accuracy"):
        a, b = (None if r is None else r[key] for r in (model, trad))
        cells.append("–" if a is None or b is None else f"{100 * (a - b):+.1f}")
    return " | ".join(cells)


def frontier_markdown(rows: list[Row], meta: dict) -> str:
    """Best model per parameter budget and format (chosen on validation), and each format's Pareto front."""
    done = complete(rows)
    n_val, n_hold = meta.get("n_val"), meta.get("n_holdout")
    header = (
        f"Trials: {meta.get('tally', '')}. Budget: {meta.get('budget', 'none')}. Epoch cap per trial: "
        f"{meta.get('epochs')}. Validation rows: {n_val}; holdout rows: {n_hold or '–'}."
    )
    legend = (
        "Cells: validation / holdout accuracy (deployed params, dendrites k, trial #). Every model is chosen "
        "on validation accuracy (ties: fewer params); the holdout number is its test score, never used to "
        "choose. Δ = accuracy points over the best traditional model under the same budget, for the best "
        "gd/cc run (whatever dendrite count its schedule kept, 0 included) and for the best model that "
        "actually has ≥ 1 dendrite."
    )
    lines = [f"# Sweep frontier: {meta.get('title', '')}".rstrip(), "", header, "", legend, ""]
    if n_val:
        p = max((r["val_accuracy"] for r in done), default=0.9)
        lines += [
            f"Noise: one validation row is {100 / n_val:.2f} points; the binomial standard error at "
            f"{p:.2f} accuracy is {100 * math.sqrt(p * (1 - p) / n_val):.1f} points on validation"
            + (f" and {100 * math.sqrt(p * (1 - p) / n_hold):.1f} on holdout" if n_hold else "")
            + ". Taking the better of gd and cc on validation also favours 'dendritic' there; the holdout "
            "Δ has no such bias.",
            "",
        ]
    lines += [
        "## Best model under each parameter budget",
        "",
        "| ≤ params | traditional | gd | cc | Δ gd/cc val | Δ gd/cc holdout | with ≥ 1 dendrite | Δ val | "
        + "Δ holdout |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    top = max((r["params"] for r in done), default=0)
    low = min((r["params"] for r in done), default=0)
    for b in [b for b in BUDGETS if low <= b < 2 * top] + [math.inf]:
        fits = [r for r in done if r["params"] <= b]
        best = {f: pick_best([r for r in fits if r["model_format"] == f]) for f in FORMATS}
        trad = best["traditional"]
        dendritic = pick_best([r for r in (best["gd"], best["cc"]) if r])
        grown = pick_best([r for r in fits if r["model_format"] != "traditional" and r["dendrites"]])
        label = "any" if b == math.inf else f"{b:,}"
        lines.append(
            f"| {label} | {_cell(trad)} | {_cell(best['gd'])} | {_cell(best['cc'])} "
            f"| {_deltas(dendritic, trad)} | {_cell(grown)} | {_deltas(grown, trad)} |"
        )
    lines += [
        "",
        "## Pareto front per format (non-dominated on validation)",
        "",
        "| format | params | flash B | RAM B | MACs | dendrites | val | holdout | trial | configuration |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fmt in FORMATS:
        for r in pareto_front([r for r in done if r["model_format"] == fmt]):
            hold = f"{r['holdout_accuracy']:.3f}" if r["holdout_accuracy"] is not None else "–"
            device = " | ".join(f"{r[k]:,}" if r.get(k) else "–" for k in ("flash_bytes", "arena_bytes", "macs"))
            lines.append(
                f"| {fmt} | {r['params']:,} | {device} | {r['dendrites']} | {r['val_accuracy']:.3f} | {hold} | "
                f"{r['number']} | `{r['argv']}` |"
            )
    return "\n".join(lines) + "\n"


def write_reports(
    trials: list[FrozenTrial], out: Path, meta: dict, max_params: int = 0, figures: bool = True
) -> list[Row]:
    """trials.csv, and with `figures` pareto.png and frontier.md, in `out` (each replaced atomically)."""
    rows = trial_rows(trials)
    write_csv(rows, out / "trials.csv")
    meta = {**meta, "tally": str(tally(trials))}
    if figures and complete(rows):
        plot_pareto(rows, out / "pareto.png", max_params)
        tmp = out / "frontier.md.tmp"
        tmp.write_text(frontier_markdown(rows, meta))
        os.replace(tmp, out / "frontier.md")
    return rows
