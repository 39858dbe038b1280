"""The hard size budget, checked before any training.

A trial's base parameter count is known as soon as its architecture is: we build the very model `fit` would
build (`kws.trainer.build_model`) and ask it for its deployment count at k dendrites per neuron
(pb-algorithm §6.2, P(k) = (k+1)·P_M + k·C + C·k(k−1)/2 per wrapped layer). Since the schedule can only
grow up to `max_dendrites`, P(max_dendrites) bounds the trained model. If that bound exceeds the budget we
lower max_dendrites to the largest k that fits (the trial still runs, and its retrain can never exceed the
budget); if not even the base network fits, the trial is skipped without training.

Device limits (flash: the int8 file's bytes, RAM: the TFLite Micro arena, MACs) are the device's own
counts: the trial's net is built with k dendrites, exported and measured (block.sizing.device_costs, about
a second, cached per architecture), and only when its params already fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from block.sizing import Budget, device_costs, over_budget

__all__ = ["Budget", "SizePlan", "plan"]


@dataclass(frozen=True)
class SizePlan:
    """What the budget allows for one trial's configs."""

    base_params: int  # deployed params with no dendrites
    max_dendrites: int | None  # largest dendrite count that fits (<= requested); None: the base does not fit
    bound_params: int  # deployed params at that dendrite count (upper bound for the trained model)
    device: dict | None  # measured flash, arena and MACs at that dendrite count (under device limits)
    over: str = ""  # what the base network exceeds, when it does not fit


def plan(run, budget: Budget) -> SizePlan:
    """Size bound of the model `fit` would train from this RunConfig, capped to the budget."""
    from kws.trainer import build_model

    model = build_model(run, "cpu")  # once: it counts params at any k (over_budget would rebuild it per k)
    k_max = run.schedule.max_dendrites if run.mode != "traditional" else 0
    base = model.deployed_params(0)
    for k in range(k_max, -1, -1):
        params = model.deployed_params(k)
        if budget.over(params):
            continue
        costs = device_costs(run, k) if budget.device else None
        if costs is None or not budget.over(params, costs):
            return SizePlan(base, k, params, costs)
    return SizePlan(base, None, base, None, "; ".join(over_budget(run, 0, budget)))
