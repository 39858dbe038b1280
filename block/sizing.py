"""`--max-params`: size the network to a deployed-parameter budget, without a search.

    budget = resolve_budget(args.max_params, n_features, n_classes, n_coeffs)   # "auto" -> EI's default net
    run, choice = size_to_budget(run, budget)

The width is the knob: every conv layer scales with it (explicit channel lists scale by the same factor), the
rest of the architecture stays as configured. The DS-TCN family (kws/nets/dstcn.py) first takes its depth
(and, for `auto`, its multi-kernel training branches) from the budget (`dstcn.shape_for_budget`), then the
widest width that fits. For a dendritic format the shipped model can grow to
`max_dendrites` per neuron, so the budget must hold P(max_dendrites) (pb-algorithm §6.2); we keep the
requested dendrite count and take the widest base under the budget, but never a base narrower than
MIN_BASE_WIDTH channels (or the plain net's width, when the budget is that small): when the requested count
only fits on a narrower base, fewer dendrites are grown, down to none (a wide base beats extra dendrites on
a starved one: bench/why_dendrites.py, bench/sizing_floor.py). "auto" is the
size of Edge Impulse's own default network for the same features and classes (1,347 params at 3 classes,
3,228 at 12 with 650 features), so a user who changes nothing never gets a bigger model than EI's.
"""
from __future__ import annotations

from dataclasses import replace

from kws.errors import ConfigError
from kws.nets import AnyNetConfig, dstcn
from kws.nets.convfc import conv_channels
from kws.trainer import RunConfig, build_model

AUTO = "auto"
SIZED_PRESETS = ("conv3", "ei-default", *dstcn.PRESETS)  # "auto" sizes these; an explicit architecture is kept
MAX_WIDTH = 512
# The narrowest base (first conv layer's channels) sizing builds to make room for dendrites. Measured at the
# automatic budget (bench/sizing_floor.py, RESULTS.md "Sizing floor"): CC on 3-4 channels per layer lost to
# CC with fewer dendrites on 6+; Edge Impulse's own first layer has 8.
MIN_BASE_WIDTH = 8


def resolve_budget(text: str | int, n_features: int, n_classes: int, n_coeffs: int,
                   preset: str = "ei-default") -> tuple[int, str]:
    """(budget in params, where it came from); 0 means no budget. "auto" sizes only the presets in SIZED_PRESETS:
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


def with_width(net: AnyNetConfig, width: int) -> AnyNetConfig:
    if getattr(net, "channels", None) is not None:
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
    """The run resized to fit `budget` deployed params (dendrites included), and what was chosen: "width",
    "channels", "max_dendrites" (lowered from the request when only a base under the floor had room),
    "requested_dendrites", "min_width" (the floor applied), "note" (why fewer dendrites, else None), ..."""
    if isinstance(run.net, dstcn.DSConfig):
        run = replace(run, net=dstcn.shape_for_budget(run.net, budget))
    dendritic = run.mode != "traditional"
    k_max = run.schedule.max_dendrites if dendritic else 0
    plain = _widest(run, 0, budget)
    if plain is None:
        smallest = deployed(replace(run, net=with_width(run.net, 1)), 0)
        raise ConfigError(f"a budget of {budget:,} params is too small for this network: the narrowest (width 1) "
                          f"has {smallest:,}; raise --max-params or use fewer layers")
    floor = min(MIN_BASE_WIDTH, plain)  # a budget too small for the floor keeps what the plain net gets
    k, width = 0, plain
    for k_try in range(k_max, 0, -1):
        w = _widest(run, k_try, budget)
        if w is not None and w >= floor:
            k, width = k_try, w
            break
    note = None
    if k < k_max:
        note = (f"{k_max} dendrite(s) per neuron fit only on a base under {floor} channels; growing "
                + (f"up to {k}" if k else "none") + f" on {width} channels instead")
    sized = replace(run, net=with_width(run.net, width), schedule=replace(run.schedule, max_dendrites=k))
    ds = isinstance(sized.net, dstcn.DSConfig)
    channels = [width] * (sized.net.blocks + 1) if ds else conv_channels(sized.net)
    return sized, {"budget": budget, "width": width, "channels": channels,
                   "max_dendrites": k, "requested_dendrites": k_max, "min_width": floor, "note": note,
                   "scope": (",".join(run.pb.layers) or run.pb.scope) if dendritic else None,
                   "base_params": deployed(sized, 0), "bound_params": deployed(sized, k)}
