"""The hard size budget, checked before any training.

A trial's base parameter count is known as soon as its architecture is: we build the very model `fit` would
build (`kws.trainer.build_model`) and ask it for its deployment count at k dendrites per neuron
(pb-algorithm §6.2, P(k) = (k+1)·P_M + k·C + C·k(k−1)/2 per wrapped layer). Since the schedule can only
grow up to `max_dendrites`, P(max_dendrites) bounds the trained model. If that bound exceeds the budget we
lower max_dendrites to the largest k that fits (the trial still runs, and its retrain can never exceed the
budget); if not even the base network fits, the trial is pruned without training.

Flash: estimated from the same count. The int8 `.tflite` file is about one byte per weight plus four per
int32 bias and a fixed cost per tensor/op, and every dendrite adds ops (SPLIT, activation, MUL/ADD per T
and cascade U) to each wrapped layer. FLASH_COEFS was fitted by least squares to real int8 files written by
`export.export_all` (bench/sweep/calibrate_flash.py, table in bench/sweep/flash_calibration.csv); the
estimate adds the worst under-estimate seen there (FLASH_MARGIN) so the budget errs on the safe side. It
covers the model file only: the TFLite Micro runtime code is extra on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

# bytes = c . (1, params, biases, conv channels, layers, wrapped layers x k, wrapped layers x k(k-1)/2)
# Fit on 32 exports (bench/sweep/flash_calibration.csv, 175-37,285 params, k 0-4): median |error| 2.5 %,
# worst 17 % (the smallest models, where fixed per-op overhead dominates).
FLASH_COEFS = (1053.0, 0.9462, -4.747, 45.21, 1323.0, 962.2, 482.3)
FLASH_MARGIN = 1231.0  # bytes: the fit's largest under-estimate on that set, added so the budget errs safe


def flash_features(model, k: int) -> tuple[float, ...]:
    """Regressors of the flash model for a (not yet grown) DendriticModel at k dendrites per neuron.

    Beside the weights: int32 biases (3 bytes more than an int8 weight) and per-channel conv quantisation
    parameters grow with the output channels of every copy; each layer and each dendrite adds ops and tensors.
    """
    from dendritic import DendriticLayer

    biases = conv_channels = 0
    for is_conv, modules in ((True, model.net.convs), (False, model.net.linears)):
        for m in modules:
            wrapped = isinstance(m, DendriticLayer)
            channels = (m.main if wrapped else m).weight.shape[0] * (k + 1 if wrapped else 1)
            biases += channels
            conv_channels += channels if is_conv else 0
    layers, wrapped = len(model.net.convs) + len(model.net.linears), len(model.layers)
    return (
        1.0,
        float(model.deployed_params(k)),
        float(biases),
        float(conv_channels),
        float(layers),
        float(wrapped * k),
        float(wrapped * k * (k - 1) // 2),
    )


def flash_bytes(model, k: int) -> float:
    """Estimated int8 .tflite size in bytes, including the safety margin."""
    return sum(c * f for c, f in zip(FLASH_COEFS, flash_features(model, k))) + FLASH_MARGIN


@dataclass(frozen=True)
class Budget:
    """Size limits for the deployed model; 0 means no limit."""

    max_params: int = 0
    max_flash_kb: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.max_params or self.max_flash_kb)

    def fits(self, params: int, flash: float) -> bool:
        return (not self.max_params or params <= self.max_params) and (
            not self.max_flash_kb or flash <= self.max_flash_kb * 1024
        )

    def __str__(self) -> str:
        parts = ([f"{self.max_params:,} params"] if self.max_params else []) + (
            [f"{self.max_flash_kb:g} KB flash (estimated)"] if self.max_flash_kb else []
        )
        return " and ".join(parts) or "none"


@dataclass(frozen=True)
class SizePlan:
    """What the budget allows for one trial's configs."""

    base_params: int  # deployed params with no dendrites
    max_dendrites: int | None  # largest dendrite count that fits (<= requested); None: the base does not fit
    bound_params: int  # deployed params at that dendrite count (upper bound for the trained model)
    flash_kb: float  # estimated int8 file size at that dendrite count


def plan(run, budget: Budget) -> SizePlan:
    """Size bound of the model `fit` would train from this RunConfig, capped to the budget."""
    from kws.trainer import build_model

    model = build_model(run, "cpu")
    k_max = run.schedule.max_dendrites if run.mode != "traditional" else 0

    def size(k: int) -> tuple[int, float]:
        return model.deployed_params(k), flash_bytes(model, k) / 1024

    base, base_kb = size(0)
    for k in range(k_max, -1, -1):
        params, kb = size(k)
        if budget.fits(params, kb * 1024):
            return SizePlan(base, k, params, kb)
    return SizePlan(base, None, base, base_kb)
