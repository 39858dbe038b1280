"""Dendritic NN: artificial Dendrite Nodes trained by Perforated Backpropagation, as a plain PyTorch API.

This package is the PB library alone: it wraps the Linear/Conv layers of any PyTorch net and imports nothing
else of this project (the keyword-spotting network, its training recipe and the block's loop live in kws/).
Reading order: layer.py (a dendritic layer) -> cc.py (the CC correlation rule) -> schedule.py (the phase
schedule) -> pb.py (DendriticModel, for your own loop). ops.py holds the fused, autograd-free training ops
that make layer.py's maths fast; they are checked against those reference ops. errors.py holds the one
error class, ConfigError (a ValueError).

The names below load on first use (PEP 562), so `dendritic.errors` and `dendritic.schedule` stay
importable without torch, e.g. by the export runtime and the CLIs' argument parsing.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ACTIVATIONS": "layer", "DendriticLayer": "layer", "deployed_params": "layer",
    "DendriticModel": "pb", "PBConfig": "pb", "wrap_layers": "pb",
    "Action": "schedule", "Decision": "schedule", "Phase": "schedule", "PhaseSchedule": "schedule",
    "ScheduleConfig": "schedule",
}
__all__ = [  # noqa: RUF022 - grouped by module, as _EXPORTS
    "ACTIVATIONS", "DendriticLayer", "deployed_params", "DendriticModel", "PBConfig", "wrap_layers",
    "Action", "Decision", "Phase", "PhaseSchedule", "ScheduleConfig",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
