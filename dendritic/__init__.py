"""Dendritic NN: artificial Dendrite Nodes trained by Perforated Backpropagation, as a plain PyTorch API.

Pipeline reading order: model.py (the KWS network) -> layer.py (a dendritic layer) -> cc.py (the CC
correlation rule) -> schedule.py (the phase schedule) -> pb.py (DendriticModel, for your own loop) ->
trainer.py (the block's training loop). ops.py holds the fused, autograd-free training ops that make
layer.py's and model.py's maths fast; they are checked against those reference ops.
"""
from .layer import ACTIVATIONS, DendriticLayer, deployed_params
from .model import PRESETS, KWSNet, NetConfig, count_params, preset
from .pb import DendriticModel, PBConfig, wrap_layers
from .schedule import Action, Decision, Phase, PhaseSchedule, ScheduleConfig

__all__ = [
    "ACTIVATIONS",
    "PRESETS",
    "Action",
    "Decision",
    "DendriticLayer",
    "DendriticModel",
    "KWSNet",
    "NetConfig",
    "PBConfig",
    "Phase",
    "PhaseSchedule",
    "ScheduleConfig",
    "count_params",
    "deployed_params",
    "preset",
    "wrap_layers",
]
