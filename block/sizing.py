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

Device budgets (`--max-flash-kb`, `--max-ram-kb`, `--max-macs`) are counted as the device counts them: the
candidate net is built, exported the shipping way and measured (export.costs.measure: the int8 file's bytes,
the TFLite Micro arena, the graph's MACs), about a second per width, cached per architecture. They size the
width the same way, on top of the parameter budget.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

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
# A DS-TCN preset under device limits only (no parameter budget) takes the shape the frontier picked at
# Edge Impulse's default size (12 classes): the device limits then set the width.
DEVICE_ONLY_SHAPE_PARAMS = 3228


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


# One architecture's int8 file varies with the conversion and the weights: 13,216-13,352 B over 7 builds of
# one random-weight DS-TCN, and a trained 3-class DS-TCN's file was 10,048 B where its random-weight measure
# said 9,872-9,928 (1.8 % more). A flash budget keeps FLASH_SLACK of the measure in reserve.
FLASH_SLACK = 0.03


@dataclass(frozen=True)
class Budget:
    """Limits of the shipped model; 0 = no limit. Params count as pb-algorithm §6.2 counts them; flash (the
    int8 .tflite's bytes), RAM (its TFLite Micro arena) and MACs are measured on the built model."""

    params: int = 0
    flash_bytes: int = 0
    ram_bytes: int = 0
    macs: int = 0

    @classmethod
    def from_kb(cls, params: int = 0, flash_kb: float = 0.0, ram_kb: float = 0.0, macs: int = 0) -> Budget:
        return cls(int(params), int(flash_kb * 1024), int(ram_kb * 1024), int(macs))

    def __bool__(self) -> bool:
        return bool(self.params or self.device)

    @property
    def device(self) -> bool:
        """Whether a limit needs the built model (flash, RAM or MACs)."""
        return bool(self.flash_bytes or self.ram_bytes or self.macs)

    def over(self, params: int, costs: dict | None = None, slack: bool = True) -> list[str]:
        """The limits a model of `params` params and measured `costs` (export.costs.measure) exceeds; `slack`
        keeps FLASH_SLACK of the file in reserve (a candidate's measure; not for the shipped file itself)."""
        out = [f"{params:,} params > {self.params:,}"] if self.params and params > self.params else []
        if costs is not None:
            reserve = round(FLASH_SLACK * costs["flash_bytes"]) if slack else 0
            for key, limit, word, room in (("flash_bytes", self.flash_bytes, "B flash", reserve),
                                           ("arena_bytes", self.ram_bytes, "B RAM", 0),
                                           ("macs", self.macs, "MACs", 0)):
                if limit and costs[key] + room > limit:
                    out.append(f"{costs[key]:,} {word} > {limit:,}" + (f" less {room} B slack" if room else ""))
        return out

    def __str__(self) -> str:
        parts = [f"{self.params:,} params"] if self.params else []
        parts += [f"{self.flash_bytes / 1024:g} KB flash"] if self.flash_bytes else []
        parts += [f"{self.ram_bytes / 1024:g} KB RAM"] if self.ram_bytes else []
        parts += [f"{self.macs:,} MACs"] if self.macs else []
        return " and ".join(parts) or "none"


def as_budget(budget: int | Budget) -> Budget:
    return budget if isinstance(budget, Budget) else Budget(params=int(budget))


_COSTS: dict[str, dict] = {}


def device_costs(run: RunConfig, k: int = 0) -> dict[str, int]:
    """Flash, arena and MACs of `run`'s model with k dendrites on every wrapped neuron, measured on the built
    model (export.costs.measure) and cached per architecture: a sizing search measures each width once."""
    key = json.dumps([run.net.to_dict(), asdict(run.pb), run.mode, k], sort_keys=True, default=str)
    if key not in _COSTS:
        from export.costs import measure

        model = build_model(run, "cpu")
        for layer in model.layers.values():
            for _ in range(k if run.mode != "traditional" else 0):
                layer.add_dendrite()
        _COSTS[key] = measure(model.net, run.net.n_features)
    return dict(_COSTS[key])


def over_budget(run: RunConfig, k: int, budget: int | Budget) -> list[str]:
    """What `run`'s model at k dendrites exceeds (empty: it fits); measures only when params fit and the
    budget has device limits."""
    budget = as_budget(budget)
    over = budget.over(deployed(run, k))
    if over or not budget.device:
        return over
    return budget.over(0, device_costs(run, k))


def with_width(net: AnyNetConfig, width: int) -> AnyNetConfig:
    if getattr(net, "channels", None) is not None:
        scale = width / net.channels[0]
        return replace(net, width=width, channels=tuple(max(1, round(c * scale)) for c in net.channels))
    return replace(net, width=width)


def deployed(run: RunConfig, k: int) -> int:
    """Deployed params of `run`'s model at k dendrites per neuron (k = 0 for traditional)."""
    return build_model(run, "cpu").deployed_params(k if run.mode != "traditional" else 0)


def widest(run: RunConfig, k: int, budget: int | Budget) -> int | None:
    """Largest width whose model at k dendrites fits the budget (params, flash, RAM and MACs grow with the
    width), or None. The params bound the search first; the device limits are measured only below it."""
    budget = as_budget(budget)

    def last_fitting(hi: int, fits) -> int | None:
        if not fits(1):
            return None
        lo = 1
        while lo < hi:  # binary search for the last width that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo

    def sized(w: int) -> RunConfig:
        return replace(run, net=with_width(run.net, w))

    widest = last_fitting(MAX_WIDTH, lambda w: not budget.params or deployed(sized(w), k) <= budget.params)
    if widest is None or not budget.device:
        return widest
    return last_fitting(widest, lambda w: not over_budget(sized(w), k, budget))


def size_to_budget(run: RunConfig, budget: int | Budget, reshape: bool = True) -> tuple[RunConfig, dict]:
    """The run resized to fit `budget` (deployed params, dendrites included, and any device limits), and what
    was chosen: "width", "channels", "max_dendrites" (lowered from the request when only a base under the
    floor had room), "requested_dendrites", "min_width" (the floor applied), "note" (why fewer dendrites,
    else None), "device" (the measured flash, RAM and MACs, under device limits), ... `reshape`: a DS-TCN
    preset also takes its depth from the budget; a custom DS-TCN keeps its own. Under device limits a DS-TCN
    preset may also lose blocks: each block costs ~0.4 KB of TFLite Micro bookkeeping (ops, tensors), so
    under a tight RAM budget one block fits three times the width of two; the depth whose widest net has
    the most params wins (the same rule as the width: the most capacity the budget holds)."""
    budget = as_budget(budget)
    if isinstance(run.net, dstcn.DSConfig) and reshape:
        run = replace(run, net=dstcn.shape_for_budget(run.net, budget.params or DEVICE_ONLY_SHAPE_PARAMS))
        if budget.device and run.net.blocks > 1:
            fits = []
            for blocks in range(run.net.blocks, 0, -1):
                shallower = replace(run, net=replace(run.net, blocks=blocks, downsample=min(blocks, 2)))
                try:
                    fits.append(_size(shallower, budget))
                except ConfigError:
                    continue
            if fits:
                return max(fits, key=lambda sized_chosen: sized_chosen[1]["bound_params"])
    return _size(run, budget)


def _size(run: RunConfig, budget: Budget) -> tuple[RunConfig, dict]:
    """size_to_budget for a fixed depth."""
    dendritic = run.mode != "traditional"
    k_max = run.schedule.max_dendrites if dendritic else 0
    plain = widest(run, 0, budget)
    if plain is None:
        narrowest = replace(run, net=with_width(run.net, 1))
        raise ConfigError(f"a budget of {budget} is too small for this network: the narrowest (width 1) has "
                          f"{'; '.join(over_budget(narrowest, 0, budget))}; raise the budget or use fewer layers")
    floor = min(MIN_BASE_WIDTH, plain)  # a budget too small for the floor keeps what the plain net gets
    k, width = 0, plain
    for k_try in range(k_max, 0, -1):
        w = widest(run, k_try, budget)
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
    return sized, {"budget": budget.params, "width": width, "channels": channels,
                   "max_dendrites": k, "requested_dendrites": k_max, "min_width": floor, "note": note,
                   "scope": (",".join(run.pb.layers) or run.pb.scope) if dendritic else None,
                   "base_params": deployed(sized, 0), "bound_params": deployed(sized, k),
                   **({"device": device_costs(sized, k)} if budget.device else {})}


def device_limits(budget: Budget) -> dict:
    """The device limits for metrics.json's sizing block (0 = none)."""
    return {"flash_bytes": budget.flash_bytes, "ram_bytes": budget.ram_bytes, "macs": budget.macs}
