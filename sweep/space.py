"""The search spaces, two of them (`--space`), each a list of knobs whose values become ordinary block flags
(`to_argv`), so a trial trains exactly what `train.py` would train with those flags.

`frontier` (the default): built from what the frontier and recipe studies measured (bench/RESULTS.md).
- Families: the DS-TCN (kws/nets/dstcn.py: blocks 1-4, width 4-64 on a log scale, depthwise kernel 5/7/9,
  multi-kernel training branches or not) and the conv+FC family of `conv3` (conv1d, 2-3 uniform conv
  layers of width 4-48, one dense). Each budget's frontier pick (`auto` sized there) is a point of it.
- The recipe: learning rate, dropout (0 included), input noise, label smoothing, time shift, time and
  frequency masks, early-stopping patience (the LR plateau patience a third of it), each list holding the
  block's default.
- Dendritic formats: the forms that were the best dendritic pick somewhere: on the DS-TCN the pointwise
  convs (linear or ReLU dendrites) or the classifier; on conv+FC the conv layers, the last conv only, the
  conv layers with dilation-2 dendrites, or the dense layer; 1 or 2 dendrites per neuron.

`paper`: the paper's 800-trial KWS sweep (pb-algorithm §8.1) mapped onto this block's knobs, kept so that
sweep can be replayed. Every knob is categorical, as in the paper's random search over value lists.

Paper mapping (paper -> block), and where it deviates:
- num_conv {1,2,3}, num_linear {1,2}: `--conv-layers`, `--linear-layers` (same values).
- width {1/4,1/2,1,2,4}: one multiplier for all layers, as in the paper: conv width 8*m (EI default 8),
  hidden linear width 16*m.
- growth_mode 0..5: our two modes, uniform / doubling. Conv type: the paper used Conv2d only; the block
  also has Conv1d (EI's default), so both are searched.
- dropout {.1,.3,.5}, noise_std {0,.1,.2} (features are CMVN-normalised, std 1): same values.
- lr multiplier {1,5,10}: times 0.001 (Adam's default, the paper's base), i.e. {0.001, 0.005, 0.01}.
- switch_speed {10,25,100} epochs: scaled to a sweep's short epoch cap as PATIENCE; it is the switch
  patience of gd/cc and the early-stopping patience of traditional (the paper's max_dendrites=0 mode also
  used switch_speed as early stopping).
- improvement_threshold: gd {1e-3,1e-4,0}, cc 0 (paper); traditional keeps the block default.
- init multiplier {0.1,0.01}, activation {sigmoid,relu,tanh}, conversion all/linear -> `--perforate`,
  max_dendrites {1,2,3,4} (the paper's 4 meant unlimited; here it is 4).
- dendrite_graph_mode (PB only) has no direct equivalent: our CC dendrites are always perforated. Its
  nearest PB-only knob, `--dendrite-update` (fine-tune installed dendrites or freeze them), is searched.
Fixed: kernel 3, pooling, batch size, dendrite patience and retries (block defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FORMATS = ("traditional", "gd", "cc")
SPACES = ("frontier", "paper")
DEFAULT_SPACE = "frontier"
BASE_CONV_WIDTH = 8  # EI's default first conv layer
BASE_LINEAR_WIDTH = 16  # EI-style hidden dense width
BASE_LEARNING_RATE = 0.001
PATIENCE = (5, 10, 20)  # paper: 10 / 25 / 100 epochs with no epoch cap

HParams = dict[str, Any]


def _always(hp: HParams) -> bool:
    return True


def _dendritic(hp: HParams) -> bool:
    return hp["model_format"] != "traditional"


def _gd(hp: HParams) -> bool:
    return hp["model_format"] == "gd"


def _cc(hp: HParams) -> bool:
    return hp["model_format"] == "cc"


def _ds(hp: HParams) -> bool:
    return hp.get("family") == "dstcn"


def _convfc(hp: HParams) -> bool:
    return hp.get("family") == "convfc"


def _ds_dendritic(hp: HParams) -> bool:
    return _ds(hp) and _dendritic(hp)


def _convfc_dendritic(hp: HParams) -> bool:
    return _convfc(hp) and _dendritic(hp)


@dataclass(frozen=True)
class Knob:
    """One searched hyper-parameter: Optuna name, value list (or an integer range searched on a log scale:
    widths), and when it applies (conditional knobs)."""

    name: str
    choices: tuple = ()
    when: Callable[[HParams], bool] = _always
    int_range: tuple[int, int] | None = None

    def suggest(self, trial, int_range: tuple[int, int] | None = None) -> Any:
        """The trial's value; `int_range` narrows an integer knob's range (a search under a budget)."""
        if self.int_range:
            return trial.suggest_int(self.name, *(int_range or self.int_range), log=True)
        return trial.suggest_categorical(self.name, list(self.choices))


PAPER_KNOBS: tuple[Knob, ...] = (
    # model_format comes first: the dendrite knobs below depend on it.
    Knob("conv_type", ("conv1d", "conv2d")),
    Knob("conv_layers", (1, 2, 3)),
    Knob("linear_layers", (1, 2)),
    Knob("width_mult", (0.25, 0.5, 1.0, 2.0, 4.0)),
    Knob("growth", ("uniform", "doubling")),
    Knob("dropout", (0.1, 0.3, 0.5)),
    Knob("input_noise", (0.0, 0.1, 0.2)),
    Knob("lr_mult", (1, 5, 10)),
    Knob("patience", PATIENCE),
    Knob("max_dendrites", (1, 2, 3, 4), _dendritic),
    Knob("improvement_threshold", (1e-3, 1e-4, 0.0), _gd),
    Knob("init_multiplier", (0.1, 0.01), _dendritic),
    Knob("dendrite_activation", ("sigmoid", "relu", "tanh"), _dendritic),
    Knob("perforate", ("all", "linear"), _dendritic),
    Knob("dendrite_update", (True, False), _cc),
)

# Dendrite forms: name -> block flags ({blocks}: the DS-TCN's pointwise convs, {last}: conv+FC's last conv).
DS_DENDRITES = {
    "pointwise-linear": {"perforate-layers": "{pointwise}", "dendrite-activation": "linear"},
    "pointwise-relu": {"perforate-layers": "{pointwise}", "dendrite-activation": "relu"},
    "classifier-relu": {"perforate-layers": "classifier", "dendrite-activation": "relu"},
}
CONVFC_DENDRITES = {
    "conv-relu": {"perforate": "conv", "dendrite-activation": "relu"},
    "last-conv-relu": {"perforate-layers": "{last}", "dendrite-activation": "relu"},
    "conv-dilation2": {"perforate": "conv", "dendrite-activation": "relu", "dendrite-dilation": 2},
    "linear-relu": {"perforate": "linear", "dendrite-activation": "relu"},
}

DS_DEPTHS = (1, 2, 3, 4)  # DS-TCN blocks
FC_DEPTHS = (2, 3)  # conv layers of the conv+FC family
FRONTIER_KNOBS: tuple[Knob, ...] = (
    Knob("family", ("dstcn", "convfc")),
    Knob("ds_blocks", DS_DEPTHS, _ds),
    Knob("ds_width", when=_ds, int_range=(4, 64)),
    Knob("ds_kernel", (5, 7, 9), _ds),
    Knob("ds_multikernel", (False, True), _ds),
    Knob("fc_conv_layers", FC_DEPTHS, _convfc),
    Knob("fc_width", when=_convfc, int_range=(4, 48)),
    Knob("learning_rate", (0.002, 0.005, 0.01)),
    Knob("dropout", (0.0, 0.1, 0.2, 0.3)),
    Knob("input_noise", (0.0, 0.15, 0.3)),
    Knob("label_smoothing", (0.0, 0.05, 0.1, 0.2)),
    Knob("time_shift", (0, 2, 4, 6)),
    Knob("masks", (0, 1, 2)),
    Knob("patience", (10, 20, 30)),
    Knob("max_dendrites", (1, 2), _dendritic),
    Knob("ds_dendrites", tuple(DS_DENDRITES), _ds_dendritic),
    Knob("fc_dendrites", tuple(CONVFC_DENDRITES), _convfc_dendritic),
)
KNOBS = {"frontier": FRONTIER_KNOBS, "paper": PAPER_KNOBS}
# Trials of a batch share these (one network shape: kws/lockstep.py stacks them)
ARCH_KNOBS = {
    "frontier": ("family", "ds_blocks", "ds_width", "ds_kernel", "ds_multikernel", "fc_conv_layers", "fc_width"),
    "paper": ("conv_type", "conv_layers", "linear_layers", "width_mult", "growth"),
}
ALL_KNOBS: tuple[str, ...] = tuple(dict.fromkeys(k.name for knobs in KNOBS.values() for k in knobs))
DEFAULT_TRIAL = "default"  # user attribute of the trial that trains the user's own settings (the default run)


def suggest(trial, formats: tuple[str, ...], space: str = DEFAULT_SPACE,
            ranges: dict[str, tuple[int, int]] | None = None) -> HParams:
    """Draw one point of the space from an Optuna trial (fixed values of a retried trial come back as is);
    `ranges` narrows integer knobs (the widths) to what a budget holds (sweep/studio.py `width_ranges`)."""
    hp: HParams = {"model_format": trial.suggest_categorical("model_format", list(formats))}
    for knob in KNOBS[space]:
        if knob.when(hp):
            hp[knob.name] = knob.suggest(trial, (ranges or {}).get(knob.name))
    return hp


def to_argv(hp: HParams, max_dendrites: int | None = None) -> list[str]:
    """Block flags (parameters.json names) for a point of either space; `max_dendrites` caps the dendrite
    count below the sampled one when the parameter budget only fits fewer."""
    flags = _frontier_flags(hp) if "family" in hp else _paper_flags(hp)
    if _dendritic(hp):
        flags["max-dendrites"] = hp["max_dendrites"] if max_dendrites is None else max_dendrites
    return [item for name, value in flags.items() for item in (f"--{name}", _flag_value(value))]


def _frontier_flags(hp: HParams) -> dict[str, Any]:
    flags: dict[str, Any] = {"model-preset": "custom", "model-format": hp["model_format"]}
    if _ds(hp):
        flags |= {"conv-type": "dstcn-multikernel" if hp["ds_multikernel"] else "dstcn",
                  "conv-layers": hp["ds_blocks"], "conv-width": hp["ds_width"], "kernel-size": hp["ds_kernel"]}
    else:
        flags |= {"conv-type": "conv1d", "conv-layers": hp["fc_conv_layers"], "conv-width": hp["fc_width"],
                  "width-growth": "uniform", "kernel-size": 3, "linear-layers": 1}
    flags |= {
        "learning-rate": hp["learning_rate"],
        "dropout": hp["dropout"],
        "input-noise": hp["input_noise"],
        "label-smoothing": hp["label_smoothing"],
        "augment-time-shift": hp["time_shift"],
        "augment-time-masks": hp["masks"],
        "augment-freq-masks": hp["masks"],
        "early-stopping-patience": hp["patience"],
        "lr-patience": max(3, hp["patience"] // 3),
    }
    if _dendritic(hp):
        form = DS_DENDRITES[hp["ds_dendrites"]] if _ds(hp) else CONVFC_DENDRITES[hp["fc_dendrites"]]
        names = {"pointwise": ",".join(f"blocks.{i}.pw.0" for i in range(hp.get("ds_blocks", 0))),
                 "last": f"convs.{hp.get('fc_conv_layers', 1) - 1}"}
        flags |= {k: v.format(**names) if isinstance(v, str) else v for k, v in form.items()}
    return flags


def _paper_flags(hp: HParams) -> dict[str, Any]:
    m = hp["width_mult"]
    flags: dict[str, Any] = {
        "model-preset": "custom",
        "model-format": hp["model_format"],
        "conv-type": hp["conv_type"],
        "conv-layers": hp["conv_layers"],
        "linear-layers": hp["linear_layers"],
        "width-growth": hp["growth"],
        "conv-width": max(1, round(BASE_CONV_WIDTH * m)),
        "linear-width": max(1, round(BASE_LINEAR_WIDTH * m)),
        "dropout": hp["dropout"],
        "input-noise": hp["input_noise"],
        "learning-rate": BASE_LEARNING_RATE * hp["lr_mult"],
        "switch-patience": hp["patience"],
        "early-stopping-patience": hp["patience"],
    }
    if _dendritic(hp):
        flags |= {
            "improvement-threshold": hp.get("improvement_threshold", 0.0),
            "init-multiplier": hp["init_multiplier"],
            "dendrite-activation": hp["dendrite_activation"],
            "perforate": hp["perforate"],
        }
        if "dendrite_update" in hp:
            flags["dendrite-update"] = hp["dendrite_update"]
    return flags


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def frontier_point(net, train, model_format: str = "traditional") -> HParams | None:
    """The frontier-space point of a sized preset's network (a kws.nets config) trained with `train` (a
    kws.trainer.TrainConfig): how the frontier's per-budget picks are enqueued. Recipe values off the
    space's lists take the nearest listed one; None for a network outside the space (e.g. conv2d)."""
    from kws.nets.dstcn import DSConfig

    if isinstance(net, DSConfig):
        if net.stem_kernel != 3 or net.kernel not in (5, 7, 9) or not 1 <= net.blocks <= 4:
            return None
        hp: HParams = {"family": "dstcn", "ds_blocks": net.blocks, "ds_width": min(max(net.width, 4), 64),
                       "ds_kernel": net.kernel, "ds_multikernel": bool(net.branch_kernels)}
    else:
        uniform = net.growth == "uniform" or net.conv_layers == 1
        if net.conv_type != "conv1d" or not uniform or net.conv_layers not in (2, 3) or net.linear_layers != 1 \
                or net.kernel_size != 3 or net.channels is not None:
            return None
        hp = {"family": "convfc", "fc_conv_layers": net.conv_layers, "fc_width": min(max(net.width, 4), 48)}
    aug = train.augment
    values = {"learning_rate": train.learning_rate, "dropout": net.dropout, "input_noise": net.noise_std,
              "label_smoothing": train.label_smoothing, "time_shift": aug.time_shift, "masks": aug.time_masks,
              "patience": None}
    for knob in FRONTIER_KNOBS:
        if knob.name in values:
            value = values[knob.name]
            hp[knob.name] = knob.choices[-1] if value is None else min(knob.choices, key=lambda c: abs(c - value))
    return {"model_format": model_format, **hp}


def describe(hp: HParams) -> str:
    """A short one-line label for logs, e.g. `traditional dstcn 2x25 k9 lr0.005 drop0 ...`."""
    if hp.get(DEFAULT_TRIAL):
        return "the default (your settings, sized to the budget)"
    if "family" in hp:
        if _ds(hp):
            arch = f"dstcn {hp['ds_blocks']}x{hp['ds_width']} k{hp['ds_kernel']}" + (" multi" if hp["ds_multikernel"] else "")
        else:
            arch = f"conv1d {hp['fc_conv_layers']}x{hp['fc_width']}"
        text = (f"{hp['model_format']} {arch} lr{hp['learning_rate']:g} drop{hp['dropout']:g} noise{hp['input_noise']:g} "
                f"ls{hp['label_smoothing']:g} shift{hp['time_shift']} masks{hp['masks']} pat{hp['patience']}")
        if _dendritic(hp):
            text += f" k<={hp['max_dendrites']} {hp.get('ds_dendrites') or hp.get('fc_dendrites')}"
        return text
    arch = (
        f"{hp['conv_type']} {hp['conv_layers']}c/{hp['linear_layers']}l x{hp['width_mult']:g} {hp['growth']}"
    )
    text = (
        f"{hp['model_format']} {arch} drop{hp['dropout']:g} noise{hp['input_noise']:g} lr x{hp['lr_mult']} "
        f"pat{hp['patience']}"
    )
    if _dendritic(hp):
        text += f" k<={hp['max_dendrites']} {hp['perforate']} {hp['dendrite_activation']}"
        text += f" init{hp['init_multiplier']:g}"
    return text


def arch_grid(space: str = DEFAULT_SPACE) -> list[HParams]:
    """The smallest architectures of the space (traditional, block-default recipe): used to find the smallest
    model, so an impossible budget fails at once instead of skipping forever."""
    from itertools import product

    if space == "frontier":
        recipe = {"model_format": "traditional", "learning_rate": 0.005, "dropout": 0.0, "input_noise": 0.3,
                  "label_smoothing": 0.1, "time_shift": 4, "masks": 1, "patience": 30}
        ds = [{"family": "dstcn", "ds_blocks": b, "ds_width": 4, "ds_kernel": 5, "ds_multikernel": False} | recipe
              for b in (1, 2)]
        return ds + [{"family": "convfc", "fc_conv_layers": 2, "fc_width": 4} | recipe]
    knobs = [k for k in PAPER_KNOBS if k.name in ARCH_KNOBS["paper"]]
    rest = {"model_format": "traditional", "dropout": 0.3, "input_noise": 0.0, "lr_mult": 1, "patience": 10}
    return [
        dict(zip([k.name for k in knobs], values)) | rest for values in product(*(k.choices for k in knobs))
    ]
