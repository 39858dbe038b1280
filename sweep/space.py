"""The search space: the paper's 800-trial KWS sweep (pb-algorithm §8.1) mapped onto this block's knobs.

Every knob is categorical, as in the paper's random search over value lists, so trials are comparable with
it and TPE/random sampling treat them alike. A trial's values become ordinary block flags (`to_argv`), so a
trial trains exactly what `train.py` would train with those flags.

Mapping (paper -> block), and where it deviates:
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


@dataclass(frozen=True)
class Knob:
    """One searched hyper-parameter: Optuna name, value list, and when it applies (conditional knobs)."""

    name: str
    choices: tuple
    when: Callable[[HParams], bool] = _always


KNOBS: tuple[Knob, ...] = (
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
ARCH_KNOBS = ("conv_type", "conv_layers", "linear_layers", "width_mult", "growth")


def suggest(trial, formats: tuple[str, ...]) -> HParams:
    """Draw one point of the space from an Optuna trial (fixed values of a retried trial come back as is)."""
    hp: HParams = {"model_format": trial.suggest_categorical("model_format", list(formats))}
    for knob in KNOBS:
        if knob.when(hp):
            hp[knob.name] = trial.suggest_categorical(knob.name, list(knob.choices))
    return hp


def to_argv(hp: HParams, max_dendrites: int | None = None) -> list[str]:
    """Block flags (parameters.json names) for a point of the space; `max_dendrites` caps the dendrite
    count below the sampled one when the parameter budget only fits fewer."""
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
            "max-dendrites": hp["max_dendrites"] if max_dendrites is None else max_dendrites,
            "improvement-threshold": hp.get("improvement_threshold", 0.0),
            "init-multiplier": hp["init_multiplier"],
            "dendrite-activation": hp["dendrite_activation"],
            "perforate": hp["perforate"],
        }
        if "dendrite_update" in hp:
            flags["dendrite-update"] = hp["dendrite_update"]
    return [item for name, value in flags.items() for item in (f"--{name}", _flag_value(value))]


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def arch_grid() -> list[HParams]:
    """Every architecture in the space (traditional, mid-range regularisation): used to find the smallest
    model, so an impossible parameter budget fails at once instead of pruning forever."""
    from itertools import product

    knobs = [k for k in KNOBS if k.name in ARCH_KNOBS]
    rest = {"model_format": "traditional", "dropout": 0.3, "input_noise": 0.0, "lr_mult": 1, "patience": 10}
    return [
        dict(zip([k.name for k in knobs], values)) | rest for values in product(*(k.choices for k in knobs))
    ]


def describe(hp: HParams) -> str:
    """A short one-line label for logs, e.g. `cc conv1d 2c/1l x1 doubling k<=2 all tanh`."""
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
