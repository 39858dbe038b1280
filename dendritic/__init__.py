"""Dendritic NN: artificial Dendrite Nodes trained by Perforated Backpropagation, as a plain PyTorch API.

Pipeline reading order: model.py (the KWS network) -> layer.py (a dendritic layer) -> cc.py (the CC
correlation rule) -> schedule.py (the phase schedule) -> pb.py (DendriticModel, for your own loop) ->
trainer.py (the block's training loop). ops.py holds the fused, autograd-free training ops that make
layer.py's and model.py's maths fast; they are checked against those reference ops. errors.py holds the
error classes every entry point reports as one `ERR:` line.

The names below load on first use (PEP 562), so `dendritic.errors` and `dendritic.schedule` stay
importable without torch, e.g. by the export runtime and the CLIs' argument parsing.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ACTIVATIONS": "layer", "DendriticLayer": "layer", "deployed_params": "layer",
    "PRESETS": "model", "KWSNet": "model", "NetConfig": "model", "count_params": "model", "preset": "model",
    "DendriticModel": "pb", "PBConfig": "pb", "wrap_layers": "pb",
    "Action": "schedule", "Decision": "schedule", "Phase": "schedule", "PhaseSchedule": "schedule",
    "ScheduleConfig": "schedule",
}
__all__ = [  # noqa: RUF022 - grouped by module, as _EXPORTS
    "ACTIVATIONS", "DendriticLayer", "deployed_params", "PRESETS", "KWSNet", "NetConfig", "count_params", "preset",
    "DendriticModel", "PBConfig", "wrap_layers", "Action", "Decision", "Phase", "PhaseSchedule", "ScheduleConfig",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
