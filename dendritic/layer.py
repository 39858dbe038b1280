"""The Dendrite Node layer: one wrapped Linear/Conv1d/Conv2d plus k dendrites per neuron (pb-algorithm §2).

    y   = M(x) + sum_j T_j * a_j
    a_j = f(D_j(x) + sum_{i<j} U_j[i] * a_i)

M is the original layer ("the neurons"), each D_j a same-shaped copy with its own bias, T_j (per neuron)
the dendrite output weights and U_j the per-neuron cascade weights from earlier dendrites. The network's
own activation after the layer stays outside. A new dendrite's T row starts at zero, so adding one never
changes the function. During a CC dendrite phase a *candidate* dendrite runs beside the others: it sees
gradient-killed inputs, is not wired into y, and its output plus the neuron error dL/dy (captured by a
backward hook here, or handed over by ops.Tape) feed the correlation rule in dendritic/cc.py. Training
normally runs the fused op in ops.py; `reference_forward` spells out the same maths with plain modules.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import skip_init

from . import ops

Activation = Literal["tanh", "sigmoid", "relu", "linear"]
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    # identity: a linear dendrite adds training-time capacity only (re-parameterisation, as RepVGG and
    # ExpandNets): it folds into the neuron's own weights at export, zero deployed params
    "linear": torch.nn.Identity(),
}
WRAPPABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass(eq=False)
class Candidate:
    """One layer's CC candidate dendrite during a dendrite phase: its weights, its statistics, and the
    per-batch hand-over between the forward pass and `candidate_backward`. Lives on `layer.candidate`;
    created by `begin_candidates` and cleared by `install_candidates` / `drop_candidates` only."""

    module: nn.Module  # copy of the layer with pool x C outputs (the candidate dendrites' weights)
    cascade: nn.Parameter  # V, shape [k, pool*C]: weights from the installed dendrites' activations
    running: torch.Tensor  # EMA of per-neuron correlation rho_c (signed)
    epoch_sum: torch.Tensor  # sum of batch rho_c this epoch, for the epoch score
    best_score: torch.Tensor  # best |epoch-mean rho_c| so far
    best_params: list[torch.Tensor]  # per-channel snapshot of candidate parameters (row p*C + c: neuron c)
    best_cascade: torch.Tensor  # per-channel snapshot of V, shape [k, C]
    null_sum: torch.Tensor | None = None  # the same against another clip's error (the noise level)
    null_best: torch.Tensor | None = None  # best |epoch-mean null rho| so far
    batches: int = 0
    best_mean: float = 0.0  # best mean |epoch rho| over the layer's channels (drives the phase's patience)
    # Per batch: the candidate's output v, the neuron error dL/dy (same layout), and, when ops.Tape ran the
    # forward, a hand-written backward taking dL/dv (None: autograd carries v's gradient).
    out: torch.Tensor | None = None
    error: torch.Tensor | None = None
    out_backward: Callable[[torch.Tensor], None] | None = None
    pool: int = 1  # candidates per neuron

    def parameters(self) -> list[nn.Parameter]:
        return [*self.module.parameters(), self.cascade]


class DendriticLayer(nn.Module):
    """A Linear/Conv layer with k dendrites per output neuron (channel)."""

    def __init__(self, main: nn.Module, activation: Activation = "tanh", init_mult: float = 0.01, dilation: int = 1,
                 kernel: int = 0):
        super().__init__()
        if not isinstance(main, WRAPPABLE):
            raise TypeError(f"can only wrap Linear/Conv1d/Conv2d, got {type(main).__name__}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown dendrite activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
        if main.bias is None:
            raise ValueError("dendritic layers need a bias on the wrapped layer")
        self.main = main
        self.dendrites = nn.ModuleList()
        self.out_weights = nn.ParameterList()  # T_j, shape [C]
        self.cascade = nn.ParameterList()  # U_j, shape [j, C]
        self.activation: Activation = activation
        self.init_mult = init_mult
        # Conv dendrites may read the input differently from their neurons: with a dilation (a wider receptive
        # field at the same parameter cost: context the neuron did not have) or another kernel size (1:
        # pointwise, cheaper; longer: more context). 'Same'-padded convolutions only; such dendrites cannot
        # share the neuron's im2col rows, so training takes the reference path, and they deploy as a second
        # convolution (export/fold.py).
        conv = isinstance(main, (nn.Conv1d, nn.Conv2d))
        self.dilation = dilation if conv else 1
        self.kernel = kernel if conv and kernel and kernel != main.kernel_size[0] else 0  # 0: the neuron's own
        self.distinct = self.dilation > 1 or self.kernel > 0
        if self.distinct and any(2 * p != k - 1 for p, k in zip(main.padding, main.kernel_size)):
            raise ValueError("dilated or resized dendrites need a 'same'-padded convolution "
                             "(padding = (kernel - 1) / 2)")
        if self.kernel and self.kernel % 2 == 0:
            raise ValueError(f"a dendrite kernel must be odd ('same' padding), got {self.kernel}")
        if self.distinct and activation == "linear":
            raise ValueError("linear dendrites fold into the neuron's own kernel, so they cannot be dilated or resized")
        # "Perforation": dendrites read a gradient-killed input, so no error flows through them into
        # earlier layers (CC mode). GD mode leaves this off and trains everything jointly.
        self.perforated = False
        # The CC candidate of a dendrite phase (Candidate), created and cleared by dendritic/cc.py only.
        self.candidate: Candidate | None = None
        # Train with the fused op and its hand-written backward (ops.py); False: the reference modules and
        # autograd, e.g. to debug the maths. DendriticModel sets it from TrainConfig.fused.
        self.fused = True
        self._fused = ops.fusable(main)  # None: unusual conv options, always take the reference path
        self._specs: dict[tuple, ops.LayerSpec] = {}

    @property
    def num_dendrites(self) -> int:
        return len(self.dendrites)

    @property
    def num_neurons(self) -> int:
        return self.main.weight.shape[0]

    def per_neuron(self, v: torch.Tensor) -> torch.Tensor:
        """View a per-neuron vector [C] so it broadcasts over this layer's output [B, C, ...]."""
        return v.view(1, -1, *([1] * (self.main.weight.dim() - 2)))

    def dendrite_shell(self) -> nn.Module:
        """An uninitialised dendrite module: the neuron layer's shape, or for `distinct` dendrites a conv
        with this layer's dendrite kernel and dilation (same input and output channels, 'same' padding)."""
        m = self.main
        if not self.distinct:
            return copy.deepcopy(m)
        k = self.kernel or m.kernel_size[0]
        return skip_init(type(m), m.in_channels, m.out_channels, k, padding=self.dilation * (k - 1) // 2,
                         dilation=self.dilation, device=m.weight.device, dtype=m.weight.dtype)

    def dendrite_params(self) -> int:
        """Parameters of one dendrite module (the neuron layer's own count unless `distinct`)."""
        m = self.main
        if not self.kernel:
            return sum(p.numel() for p in m.parameters())
        return m.out_channels * (m.in_channels * self.kernel ** len(m.kernel_size) + 1)

    def fresh_copy(self, pool: int = 1) -> nn.Module:
        """A dendrite module (`dendrite_shell`) with every parameter drawn as randn * init_mult; `pool` > 1
        gives it pool x C output channels (a CC candidate pool: channel p*C + c is candidate p of neuron c)."""
        d = self.dendrite_shell()
        with torch.no_grad():
            for name, p in list(d.named_parameters()):
                setattr(d, name, nn.Parameter(torch.randn(pool * p.shape[0], *p.shape[1:], dtype=p.dtype,
                                                          device=p.device) * self.init_mult))
        if pool > 1:
            setattr(d, "out_features" if isinstance(d, nn.Linear) else "out_channels", pool * self.num_neurons)
        return d

    def add_dendrite(self, module: nn.Module | None = None, cascade: torch.Tensor | None = None) -> None:
        """Install one dendrite per neuron with a zero output weight (function-preserving).

        GD passes nothing (a random copy, zero cascade); CC passes the trained candidate and its V.
        """
        k, like = self.num_dendrites, {"device": self.main.weight.device, "dtype": self.main.weight.dtype}
        module = self.fresh_copy() if module is None else module
        cascade = torch.zeros(k, self.num_neurons, **like) if cascade is None else cascade.detach().clone()
        self.dendrites.append(module.to(**like))
        self.cascade.append(nn.Parameter(cascade.to(**like)))
        self.out_weights.append(nn.Parameter(torch.zeros(self.num_neurons, **like)))

    def remove_last_dendrite(self) -> None:
        """Undo add_dendrite (used when the schedule reverts to a smaller architecture)."""
        del self.dendrites[len(self.dendrites) - 1]
        self.cascade = nn.ParameterList(list(self.cascade)[:-1])  # ParameterList has no __delitem__
        self.out_weights = nn.ParameterList(list(self.out_weights)[:-1])

    def installed_channels(self) -> list[torch.Tensor]:
        """Bool [C] per dendrite: the neurons it is installed on. A channel whose weights, bias, cascade
        weights and T are all exactly zero computes f(0) = 0 and adds nothing (selective installation leaves
        such channels; cc.py); export/fold.py deploys only the installed ones. A sigmoid (f(0) != 0) or
        linear dendrite counts every channel."""
        c = self.num_neurons
        if self.activation not in ("tanh", "relu"):
            return [torch.ones(c, dtype=torch.bool, device=self.main.weight.device)] * self.num_dendrites
        masks = [(d.weight.detach().reshape(c, -1) != 0).any(1) | (d.bias.detach() != 0) | (t.detach() != 0)
                 | (u.detach() != 0).any(0) for d, t, u in zip(self.dendrites, self.out_weights, self.cascade)]
        for j in reversed(range(len(masks) - 1)):  # nested: a neuron with dendrite j+1 keeps dendrite j
            masks[j] = masks[j] | masks[j + 1]
        return masks

    def channel_order(self, masks: list[torch.Tensor] | None = None) -> torch.Tensor | None:
        """The neuron order that makes every dendrite's installed channels a prefix (neurons with more
        dendrites first, stable), or None when the natural order already does (e.g. all neurons have all).
        `masks`: this layer's `installed_channels()`, when the caller has them already."""
        if not self.num_dendrites:
            return None
        count = torch.stack(self.installed_channels() if masks is None else masks).sum(0)
        order = torch.sort(count, descending=True, stable=True).indices
        return None if bool((order == torch.arange(len(order), device=order.device)).all()) else order

    def dendrite_parameters(self) -> list[nn.Parameter]:
        """Installed dendrite copies and their cascade weights (not T, which always trains with neurons)."""
        return [p for d in self.dendrites for p in d.parameters()] + list(self.cascade)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training uses the fused op (dendritic/ops.py: one stacked conv, one autograd node); eval, export
        and CC candidate phases use the reference ops below, which spell out the maths."""
        args = self.fused_args() if self.fused and self.training and self.candidate is None else None
        return self.reference_forward(x) if args is None else ops.dendritic_forward(x, args)

    def fused_args(self) -> ops.LayerArgs | None:
        """The fused op's spec and parameter list (cascade U_0 is empty and left out); None for layers
        ops.py does not cover (Conv2d, unusual conv options). A CC candidate is not part of y: the Tape
        runs it beside the op (ops.candidate_forward) and hands cc.py its output and the neuron error."""
        if self._fused is None or self.distinct and (self.dendrites or self.candidate is not None):
            return None
        key = (self.num_dendrites, self.activation, self.perforated)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = replace(self._fused, dendrites=key[0], activation=key[1], perforated=key[2])
        params = [self.main.weight, self.main.bias]
        for d in self.dendrites:
            params += [d.weight, d.bias]
        return spec, [*params, *self.out_weights, *list(self.cascade)[1:]]

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        if not self.dendrites and self.candidate is None:
            return y
        f = ACTIVATIONS[self.activation]
        xd = x.detach() if self.perforated else x
        acts: list[torch.Tensor] = []
        for j, dendrite in enumerate(self.dendrites):
            p = dendrite(xd)
            for i in range(j):
                p = p + self.per_neuron(self.cascade[j][i]) * acts[i]
            acts.append(f(p))
            y = y + self.per_neuron(self.out_weights[j]) * acts[j]
        if self.candidate is not None and self.training:
            y = self._run_candidate(x, acts, y, f)
        return y

    def _run_candidate(self, x: torch.Tensor, acts: list[torch.Tensor], y: torch.Tensor,
                       f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Candidate forward on gradient-killed inputs; stash its output and hook y for the neuron error."""
        cand = self.candidate
        q = cand.module(x.detach())
        for i, a in enumerate(acts):  # (a pool of P candidates per neuron reads its neuron's a_i P times)
            q = q + self.per_neuron(cand.cascade[i]) * a.detach().repeat(1, cand.pool, *[1] * (a.dim() - 2))
        cand.out = f(q)
        cand.out_backward = None  # autograd carries this output's gradient (not a Tape's)
        if not y.requires_grad:  # neurons frozen and nothing upstream trains: make y a leaf to get dL/dy
            y = y.detach().requires_grad_(True)
        y.register_hook(self._capture_error)
        return y

    def _capture_error(self, grad: torch.Tensor) -> None:
        if self.candidate is not None:
            self.candidate.error = grad.detach()

    def extra_repr(self) -> str:
        reads = f", kernel={self.kernel}" if self.kernel else ""
        reads += f", dilation={self.dilation}" if self.dilation > 1 else ""
        return f"dendrites={self.num_dendrites}, activation={self.activation}{reads}, perforated={self.perforated}"


def deployed_params(layer: DendriticLayer, dendrites: int | None = None) -> int:
    """Deployment parameter count of one wrapped layer (pb-algorithm §6.2): copies + T + U.

    P(k) = P_M + k*P_D + k*C + C*k(k-1)/2 when every neuron has its k dendrites (P_D = P_M for a copy);
    candidates are training scaffolding and are not counted. `dendrites` gives the count for k dendrites on
    every neuron (default: the installed model, counted from `installed_channels`). With selective
    installation dendrite j is deployed on n_j nested channels: n_j * (P_D/C + 1 + j), plus C channel-order
    indices (int32) to put the neurons back in order.
    Linear dendrites fold into the neuron's own weights (export/fold.py), so they deploy at P_M whatever k.
    """
    c = layer.num_neurons
    p_main, p_dend = sum(p.numel() for p in layer.main.parameters()), layer.dendrite_params()
    if layer.activation == "linear":
        return p_main
    if dendrites is not None:  # a bound for k dendrites on every neuron (block/sizing.py's)
        k = dendrites
        return p_main + k * p_dend + k * c + c * k * (k - 1) // 2
    masks = layer.installed_channels()
    widths = [int(m.sum()) for m in masks]
    order = 0 if layer.channel_order(masks) is None else c
    return p_main + sum(n * (p_dend // c + 1 + j) for j, n in enumerate(widths)) + order
