"""`--max-params`: size the network to a deployed-parameter budget, without a search.

    budget = resolve_budget(args.max_params, n_features, n_classes, n_coeffs)   # "auto" -> EI's default net
    run, choice = size_to_budget(run, budget)

The width is the knob: every conv layer scales with it (explicit channel lists scale by the same factor), the
rest of the architecture stays as configured. For a dendritic format the shipped model can grow to
`max_dendrites` per neuron, so the budget must hold P(max_dendrites) (pb-algorithm §6.2); we keep the
requested dendrite count and take the widest base under the budget, lowering the count only when not even
width 1 fits (a wide base beats extra dendrites on a starved one: bench/why_dendrites.py). "auto" is the
size of Edge Impulse's own default network for the same features and classes (1,347 params at 3 classes,
3,228 at 12 with 650 features), so a user who changes nothing never gets a bigger model than EI's.
"""
from __future__ import annotations

from dataclasses import replace

from kws.errors import ConfigError
from kws.nets.convfc import NetConfig, conv_channels
from kws.trainer import RunConfig, build_model

AUTO = "auto"
SIZED_PRESETS = ("auto", "ei-default")  # the presets "auto" sizes; an explicit architecture is kept as is
MAX_WIDTH = 512


def resolve_budget(text: str | int, n_features: int, n_classes: int, n_coeffs: int,
                   preset: str = "ei-default") -> tuple[int, str]:
    """(budget in params, where it came from); 0 means no budget. "auto" sizes only the default preset:
    a user who picked a custom or paper-baseline architecture gets exactly that architecture."""
    word = str(text).strip().lower()
    if word == AUTO and preset not in SIZED_PRESETS:
        return 0, f"none (auto sizes only the ei-default preset; {preset} is kept as configured)"
    if word == AUTO:
        from kws.nets.convfc import KWSNet, count_params, preset

        return count_params(KWSNet(preset("ei-default", n_features, n_classes, n_coeffs))), \
            "auto: Edge Impulse's default network for these features and classes"
    if word in ("0", "none", "off", ""):
        return 0, "none"
    try:
        value = int(word)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"max params must be 'auto', 0 (no budget) or a positive number of parameters, "
                          f"got {text!r}")
    return value, "max-params"


def with_width(net: NetConfig, width: int) -> NetConfig:
    if net.channels is not None:
        scale = width / net.channels[0]
        return replace(net, width=width, channels=tuple(max(1, round(c * scale)) for c in net.channels))
    return replace(net, width=width)


def deployed(run: RunConfig, k: int) -> int:
    """Deployed params of `run`'s model at k dendrites per neuron (k = 0 for traditional)."""
    return build_model(run, "cpu").deployed_params(k if run.mode != "traditional" else 0)


def _widest(run: RunConfig, k: int, budget: int) -> int | None:
    """Largest width whose model at k dendrites fits the budget (params grow with width), or None."""
    def fits(w: int) -> bool:
        return deployed(replace(run, net=with_width(run.net, w)), k) <= budget

    if not fits(1):
        return None
    lo, hi = 1, MAX_WIDTH
    while lo < hi:  # binary search for the last width that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def size_to_budget(run: RunConfig, budget: int) -> tuple[RunConfig, dict]:
    """The run resized to fit `budget` deployed params (dendrites included), and what was chosen."""
    k_max = run.schedule.max_dendrites if run.mode != "traditional" else 0
    for k in range(k_max, -1, -1):
        if k == 0 and run.mode != "traditional":
            break  # a dendritic format needs room for at least one dendrite
        width = _widest(run, k, budget)
        if width is not None:
            sized = replace(run, net=with_width(run.net, width), schedule=replace(run.schedule, max_dendrites=k))
            return sized, {"budget": budget, "width": width, "channels": conv_channels(sized.net),
                           "max_dendrites": k if run.mode != "traditional" else 0,
                           "scope": (",".join(run.pb.layers) or run.pb.scope) if run.mode != "traditional" else None,
                           "base_params": deployed(sized, 0), "bound_params": deployed(sized, k)}
    smallest = deployed(replace(run, net=with_width(run.net, 1)), min(1, k_max))
    what = "this network" if run.mode == "traditional" else "this network with one dendrite per neuron"
    raise ConfigError(f"a budget of {budget:,} params is too small for {what}: the narrowest (width 1) has "
                      f"{smallest:,}; raise --max-params or use fewer layers")
