"""`DendriticModel`: drop Perforated Backpropagation into your own PyTorch loop.

    dm = DendriticModel(net, PBConfig(mode="cc", max_dendrites=2), lambda ps: torch.optim.Adam(ps, 1e-3))
    while not dm.done:
        dm.train()
        for x, y in batches:
            dm.training_step(x, y, nn.functional.cross_entropy)
        dm.end_epoch(val_score=evaluate(dm))     # may restructure; the optimizer is rebuilt inside

It wraps the chosen Linear/Conv layers in `DendriticLayer`, follows a `PhaseSchedule`, keeps the best
checkpoint (whatever its dendrite count), and owns the optimizer and LR scheduler so that no user code has
to rebuild them after a restructure. No globals, no patched optimizer: the CC candidate update is an
ordinary second backward pass on the surrogate loss from `dendritic.cc`.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from . import cc, ops
from .errors import ConfigError
from .layer import WRAPPABLE, Activation, DendriticLayer, deployed_params
from .schedule import MODES, Action, Decision, Mode, Phase, PhaseSchedule, ScheduleConfig

Scope = Literal["linear", "conv", "all"]
SCOPES: dict[str, tuple[type[nn.Module], ...]] = {
    "linear": (nn.Linear,), "conv": (nn.Conv1d, nn.Conv2d), "all": WRAPPABLE}
OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], "torch.optim.lr_scheduler.ReduceLROnPlateau | None"]


@dataclass(frozen=True)
class PBConfig:
    """How dendrites are added and trained. Schedule knobs live in `ScheduleConfig`."""

    mode: Mode = "cc"
    scope: Scope = "all"  # which layers get dendrites: Linear only, Conv only (no classifier copy), or both
    activation: Activation = "tanh"
    init_mult: float = 0.01
    dendrite_update: bool = True  # cc: fine-tune installed dendrites in neuron phases (False = frozen)
    candidate_pool: int = 1  # cc: candidates trained per neuron; each neuron installs its best-correlated one
    # cc: install a neuron's dendrite only if its candidate's correlation >= this x the measured noise level
    # (0: every neuron, the paper's rule); the others deploy no dendrite channel (dendritic/cc.py)
    install_noise_ratio: float = 0.0
    # a per-layer choice: exactly these wrappable layers (names as in net.named_modules(), e.g. "convs.2");
    # empty: `scope` decides
    layers: tuple[str, ...] = ()
    dilation: int = 1  # conv dendrites read the input with this dilation (a wider receptive field, same params)
    kernel: int = 0  # conv dendrites' kernel size (0: the neuron's own; 1: pointwise, cheaper; longer: more context)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"model format must be {', '.join(MODES)}, got {self.mode!r}")
        if self.scope not in SCOPES:
            raise ConfigError(f"layers to perforate must be {', '.join(SCOPES)}, got {self.scope!r}")
        if self.init_mult <= 0:
            raise ConfigError("init multiplier must be > 0")
        if self.candidate_pool < 1:
            raise ConfigError(f"candidate pool must be >= 1, got {self.candidate_pool}")
        if self.install_noise_ratio < 0:
            raise ConfigError(f"install noise ratio must be >= 0, got {self.install_noise_ratio}")
        if self.dilation < 1:
            raise ConfigError(f"dendrite dilation must be >= 1, got {self.dilation}")
        if self.kernel < 0 or self.kernel % 2 == 0 and self.kernel:
            raise ConfigError(f"dendrite kernel must be 0 (the neuron's own) or odd, got {self.kernel}")
        if (self.dilation > 1 or self.kernel) and self.activation == "linear":
            raise ConfigError("linear dendrites fold into the neuron's own kernel, so they cannot be dilated or "
                              "resized: use tanh or relu with a dendrite dilation or kernel")
        if self.install_noise_ratio > 0 and self.activation == "sigmoid":
            raise ConfigError("selective installation needs a dendrite activation with f(0) = 0 (tanh or relu), "
                              "not sigmoid")


def wrap_layers(net: nn.Module, scope: Scope, activation: Activation, init_mult: float,
                layers: tuple[str, ...] = (), dilation: int = 1, kernel: int = 0) -> dict[str, DendriticLayer]:
    """Replace the Linear and/or Conv submodules of `net` (by `scope`, or exactly the named `layers`) by
    DendriticLayers, in place. 'conv' exists because a dendrite is a full copy of its layer: on the
    classifier that copy adds params but no features (bench/why_dendrites.py); `layers` lets a user (or the
    frontier) grow e.g. only the last convolution, whose neurons' errors the candidates correlate with best.
    A module with `no_dendrites = True` keeps its layers unwrapped (parallel branches that the export merges
    into one conv: a dendrite inside one would stop the merge, even at one channel, where a depthwise conv
    looks like a plain one)."""
    targets = [(name, m) for name, m in net.named_modules() if isinstance(m, SCOPES["all" if layers else scope])
               and getattr(m, "groups", 1) == 1  # a depthwise/grouped conv's dendrites could not fold
               and not any(isinstance(p, DendriticLayer) or getattr(p, "no_dendrites", False)
                           for p in _parents(net, name))]
    if layers:
        unknown = [n for n in layers if n not in dict(targets)]
        if unknown:
            raise ConfigError(f"cannot perforate layer {unknown[0]!r}: this network's layers are "
                              f"{', '.join(n for n, _ in targets)}")
        targets = [(n, m) for n, m in targets if n in layers]
    wrapped = {}
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        layer = DendriticLayer(module, activation, init_mult, dilation, kernel)
        setattr(parent, attr, layer)
        wrapped[name] = layer
    return wrapped


def _parents(net: nn.Module, name: str) -> list[nn.Module]:
    parts = name.split(".")
    return [net.get_submodule(".".join(parts[:i])) for i in range(1, len(parts))]


class DendriticModel(nn.Module):
    """A network plus its dendrites, phase schedule, best checkpoint, optimizer and LR scheduler."""

    def __init__(self, net: nn.Module, cfg: PBConfig = PBConfig(), make_optimizer: OptimizerFactory | None = None,
                 schedule: ScheduleConfig | None = None, make_scheduler: SchedulerFactory | None = None,
                 fused: bool = True):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.net = net
        self.schedule = PhaseSchedule(schedule or ScheduleConfig(), cfg.mode)  # the mode lives in PBConfig
        self.make_optimizer = make_optimizer or (lambda ps: torch.optim.Adam(ps, lr=1e-3))
        self.make_scheduler = make_scheduler
        self.layers: dict[str, DendriticLayer] = {} if cfg.mode == "traditional" else wrap_layers(
            net, cfg.scope, cfg.activation, cfg.init_mult, cfg.layers, cfg.dilation, cfg.kernel)
        # fused: train with ops.py's hand-written backward (Tape and fused layer op); False: plain autograd
        self.fused = fused
        for layer in self.layers.values():
            layer.perforated = cfg.mode == "cc"
            layer.fused = fused
        self.best_state: dict[str, torch.Tensor] = copy.deepcopy(self.state_dict())
        # best checkpoint per dendrite count, so the same net without (or with fewer) dendrites can be
        # exported and compared: {k: (validation score, state_dict)}
        self.best_by_dendrites: dict[int, tuple[float, dict[str, torch.Tensor]]] = {}
        self.optimizer: torch.optim.Optimizer
        self.lr_scheduler = None
        self._rebuild_optimizer()

    # ---- the user's loop calls these -------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def phase(self) -> Phase:
        return self.schedule.phase

    @property
    def done(self) -> bool:
        return self.schedule.done

    @property
    def num_dendrites(self) -> int:
        """Dendrites per neuron in the current architecture (all wrapped layers grow together)."""
        return max((layer.num_dendrites for layer in self.layers.values()), default=0)

    def training_step(self, x: torch.Tensor, y, loss_fn: Callable[[torch.Tensor, Any], torch.Tensor],
                      loss_grad: ops.LossGrad | None = None, rand: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch. Neuron phase: ordinary backprop. Dendrite phase: the task loss's backward only
        captures each neuron's error; the candidates then step on the correlation surrogate loss.
        `y` is whatever loss_fn takes (labels, or e.g. soft targets); `loss_grad`, the same loss's
        closed-form (loss, dL/dlogits), lets a KWSNet train without autograd (cross-entropy has one built in).
        `rand` draws the fused pass's dropout and input noise (default: the global generator).
        Returns the detached task loss and logits (no host sync), e.g. for training accuracy."""
        if loss_grad is None and loss_fn is nn.functional.cross_entropy:
            loss_grad = ops.cross_entropy_grad
        fused = getattr(self.net, "cross_entropy_step", None) if self.fused and loss_grad else None
        done = fused(x, y, loss_grad, rand) if fused is not None else None  # KWSNet's autograd-free pass
        if done is None or self.phase is Phase.DENDRITE:  # (the fused pass sets the network's grads itself)
            self.optimizer.zero_grad(set_to_none=True)
        if done is not None:
            loss, out = done
        else:
            out = self.net(x)
            loss = loss_fn(out, y)
            loss.backward()  # dendrite phase: every network weight is frozen, so this only fills the error hooks
        if self.phase is Phase.DENDRITE:
            cc.candidate_backward(list(self.layers.values()))
        self.optimizer.step()
        return loss.detach(), out.detach()

    def end_epoch(self, val_score: float | None = None) -> Decision:
        """Advance the schedule: pass the validation score (higher is better) after a neuron-phase
        epoch; in a dendrite phase the score is ignored (neurons are frozen) and correlation decides."""
        if self.phase is Phase.DENDRITE:
            decision = self.schedule.dendrite_epoch(cc.end_candidate_epoch(list(self.layers.values())))
        else:
            if val_score is None:
                raise ValueError("end_epoch needs the validation score in a neuron phase")
            decision = self.schedule.neuron_epoch(float(val_score))
            k = self.num_dendrites
            if decision.cycle_best and val_score > self.best_by_dendrites.get(k, (-math.inf,))[0]:
                self.best_by_dendrites[k] = (float(val_score), copy.deepcopy(self.state_dict()))
            if decision.new_best:
                self.best_state = copy.deepcopy(self.state_dict())
            if decision.action is Action.CONTINUE and self.lr_scheduler is not None:
                self.lr_scheduler.step(val_score)
        self._restructure(decision.action)
        return decision

    # ---- restructuring ---------------------------------------------------------------------------
    def _restructure(self, action: Action) -> None:
        layers = list(self.layers.values())
        if action is Action.CONTINUE:
            return
        if action in (Action.ADD_DENDRITES, Action.START_DENDRITE_PHASE, Action.STOP):
            self.load_state_dict(self.best_state)  # grow from (or end at) the best architecture
        if action is Action.ADD_DENDRITES:
            for layer in layers:
                layer.add_dendrite()
        elif action is Action.START_DENDRITE_PHASE:
            self._set_trainable(neurons=False, dendrites=False)
            noise = self.cfg.install_noise_ratio > 0  # selective installation measures each noise level
            params = [p for layer in layers for p in cc.begin_candidates(layer, self.cfg.candidate_pool, noise)]
            self._rebuild_optimizer(params)
            return
        elif action is Action.INSTALL_DENDRITES:
            cc.install_candidates(layers, self.cfg.install_noise_ratio)
        self._set_trainable(neurons=True, dendrites=self.cfg.mode == "gd" or self.cfg.dendrite_update)
        self._rebuild_optimizer()

    def _set_trainable(self, neurons: bool, dendrites: bool) -> None:
        for p in self.net.parameters():
            p.requires_grad_(neurons)
        for layer in self.layers.values():
            for p in layer.dendrite_parameters():
                p.requires_grad_(dendrites)

    def _rebuild_optimizer(self, params: list[nn.Parameter] | None = None) -> None:
        """Fresh optimizer (and LR scheduler in neuron phases) after every restructure."""
        if params is None:  # (empty tensors, e.g. the first dendrite's [0, C] cascade, only cost Adam time)
            params = [p for p in self.net.parameters() if p.requires_grad and p.numel()]
        self.optimizer = self.make_optimizer(params)
        in_neuron_phase = self.phase is Phase.NEURON
        self.lr_scheduler = self.make_scheduler(self.optimizer) if self.make_scheduler and in_neuron_phase else None

    def finish(self) -> None:
        """End training now (e.g. the epoch budget ran out): drop candidates, restore the best checkpoint."""
        cc.drop_candidates(list(self.layers.values()))
        self.schedule.stop()
        self.load_state_dict(self.best_state)
        self._set_trainable(neurons=True, dendrites=True)

    # ---- checkpoints and reporting ---------------------------------------------------------------
    def architecture(self) -> dict[str, int]:
        return {name: layer.num_dendrites for name, layer in self.layers.items()}

    def installed_neurons(self) -> dict[str, dict[str, int | list[int]]]:
        """Per wrapped layer: its neuron count and, per dendrite, how many neurons carry it (all of them
        unless selective installation left some out)."""
        return {name: {"neurons": layer.num_neurons, "per_dendrite": [int(m.sum()) for m in layer.installed_channels()]}
                for name, layer in self.layers.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Load a checkpoint with any dendrite count: wrapped layers grow or shrink to match it first."""
        for name, layer in self.layers.items():
            pattern = re.compile(rf"^net\.{re.escape(name)}\.out_weights\.(\d+)$")
            k = sum(1 for key in state if pattern.match(key))
            while layer.num_dendrites > k:
                layer.remove_last_dendrite()
            while layer.num_dendrites < k:
                layer.add_dendrite()
        return super().load_state_dict(state, strict=strict, assign=assign)

    def deployed_params(self, dendrites: int | None = None) -> int:
        """Parameters of the deployed (folded) model: pb-algorithm §6.2 per wrapped layer, plus the rest.
        `dendrites` gives the count for that many dendrites on every neuron (default: the current model, whose
        dendrites may sit on some neurons only: selective installation)."""
        wrapped = {id(p) for layer in self.layers.values() for p in layer.parameters()}
        rest = sum(p.numel() for p in self.net.parameters() if id(p) not in wrapped)
        # a network that re-parameterises at export (BatchNorm, parallel branches) says what folds away
        rest -= self.net.training_only_params() if hasattr(self.net, "training_only_params") else 0
        return rest + sum(deployed_params(layer, dendrites) for layer in self.layers.values())
