"""Fused training-time ops: the same maths as layer.py and model.py, in far fewer autograd nodes.

Why (issue 8, bench/profile_notes.md): at batch 32 these nets are bound by per-op dispatch and autograd
bookkeeping, not FLOPs. A dendritic conv with k dendrites is 1 + k convolutions plus ~5k small ops and
as many backward nodes; here it is one convolution over the stacked weights [W_M; W_D0; ...] (the same
stacking the export's fold does) and one autograd node with a hand-written backward. ReLU -> max pool ->
dropout likewise becomes one node. Eval, export and folding keep the plain ops in layer.py/model.py;
tests/test_ops.py checks that both give the same outputs and gradients.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LayerSpec:
    """What the fused op needs to know about the wrapped layer (static per call)."""

    kind: str  # "linear" | "conv1d" | "conv2d"
    neurons: int  # C: output channels of one copy
    dendrites: int  # k
    activation: str  # "tanh" | "sigmoid" | "relu"
    perforated: bool  # dendrites send no error into the layer's input (CC)
    padding: tuple[int, ...] = ()


def fusable(main: nn.Module) -> LayerSpec | None:
    """The spec kind/padding for `main`, or None when it uses conv options the fused op does not cover."""
    if getattr(main, "bias", None) is None:
        return None
    if isinstance(main, nn.Linear):
        return LayerSpec("linear", main.out_features, 0, "relu", False)
    if isinstance(main, (nn.Conv1d, nn.Conv2d)):
        plain = (all(s == 1 for s in main.stride) and all(d == 1 for d in main.dilation) and main.groups == 1
                 and main.padding_mode == "zeros" and not isinstance(main.padding, str))
        if plain:
            kind = "conv1d" if isinstance(main, nn.Conv1d) else "conv2d"
            return LayerSpec(kind, main.out_channels, 0, "relu", False, tuple(main.padding))
    return None


def _linear_in(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _im2col(x: torch.Tensor, k: int, pad: int) -> torch.Tensor:
    """[B, C, L] -> [B, C*k, L_out]: row c*k + t holds x[c, l + t - pad] (the conv weight's layout)."""
    cols = F.pad(x, (pad, pad)).unfold(2, k, 1)  # [B, C, L_out, k], a view
    return cols.permute(0, 1, 3, 2).reshape(x.shape[0], -1, cols.shape[2])


def _layer_input(spec: LayerSpec, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """What the op keeps of its input: Conv1d keeps the im2col matrix, reused by the weight gradient."""
    return _im2col(x, w.shape[-1], spec.padding[0]) if spec.kind == "conv1d" else x


def _apply(spec: LayerSpec, xs: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The stacked layer on `_layer_input`'s form. Conv1d is one matmul on the im2col matrix: at these
    sizes oneDNN's convolution spends more time reordering than computing (bench/profile_notes.md)."""
    if spec.kind == "linear":
        return F.linear(xs, w, b)
    if spec.kind == "conv1d":
        return torch.matmul(w.view(w.shape[0], -1), xs).add_(b.view(1, -1, 1))
    return F.conv2d(xs, w, b, padding=spec.padding)


def _grad_weight(spec: LayerSpec, g: torch.Tensor, xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """dL/dW for output gradient g, with xs from `_layer_input`."""
    if spec.kind == "linear":
        return _linear_in(g).t() @ _linear_in(xs)
    if spec.kind == "conv1d":
        return torch.bmm(g, xs.transpose(1, 2)).sum(0).view_as(w)
    return torch.ops.aten.convolution_backward(
        g, xs, w, None, [1, 1], list(spec.padding), [1, 1], False, [0, 0], 1, [False, True, False])[1]


def _grad_input(spec: LayerSpec, g: torch.Tensor, xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if spec.kind == "linear":
        return (_linear_in(g) @ w).view_as(xs)
    if spec.kind == "conv1d":  # a 'full' convolution of g with the flipped, transposed kernel
        k = w.shape[-1]
        w_full = w.flip(-1).transpose(0, 1).reshape(w.shape[1], -1)
        return torch.matmul(w_full, _im2col(g, k, k - 1 - spec.padding[0]))
    return torch.ops.aten.convolution_backward(
        g, xs, w, None, [1, 1], list(spec.padding), [1, 1], False, [0, 0], 1, [True, False, False])[0]


def _act(name: str, q: torch.Tensor) -> torch.Tensor:
    return torch.relu(q) if name == "relu" else torch.tanh(q) if name == "tanh" else torch.sigmoid(q)


def _act_grad(name: str, a: torch.Tensor) -> torch.Tensor:
    """f'(q) from the activation's output a = f(q)."""
    if name == "relu":
        return a > 0  # bool: multiplies like 0/1 without a conversion op
    return 1 - a * a if name == "tanh" else a * (1 - a)


def _sum_per_neuron(spec: LayerSpec, t: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the neuron axis (the last for linear, dim 1 for convs)."""
    return _linear_in(t).sum(0) if spec.kind == "linear" else t.sum([0, *range(2, t.dim())])


class _DendriticOp(torch.autograd.Function):
    """y = M(x) + sum_j T_j * a_j,  a_j = f(D_j(x) + sum_{i<j} U_j[i] * a_i)  (layer.py's docstring),
    as one stacked matmul/conv. params = W_M, b_M, W_D0, b_D0, ..., T_0..T_{k-1}, U_1..U_{k-1}."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, spec: LayerSpec, *params: torch.Tensor) -> torch.Tensor:
        k, c = spec.dendrites, spec.neurons
        ws, bs = params[0:2 * k + 2:2], params[1:2 * k + 2:2]
        ts, us = params[2 * k + 2:3 * k + 2], params[3 * k + 2:]
        w = ws[0] if k == 0 else torch.cat(ws)
        x = _layer_input(spec, x, w)
        z = _apply(spec, x, w, bs[0] if k == 0 else torch.cat(bs))
        if k == 0:
            ctx.save_for_backward(x, w)
            ctx.spec = spec
            return z
        zs = z.chunk(k + 1, dim=1 if spec.kind != "linear" else -1)  # (chunk: no Python wrapper, unlike split)
        shape = (1, c, *([1] * (z.dim() - 2))) if spec.kind != "linear" else (c,)
        y = zs[0].clone()
        acts: list[torch.Tensor] = []
        for j in range(k):
            q = zs[j + 1]
            for i in range(j):
                q = q + us[j - 1][i].view(shape) * acts[i]
            acts.append(_act(spec.activation, q))
            y.addcmul_(ts[j].view(shape), acts[j])
        ctx.save_for_backward(x, w, *ts, *us, *acts)
        ctx.spec, ctx.shape = spec, shape
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        spec: LayerSpec = ctx.spec
        k, c = spec.dendrites, spec.neurons
        x, w, *rest = ctx.saved_tensors
        ts, us, acts = rest[:k], rest[k:2 * k - 1], rest[2 * k - 1:]
        need = ctx.needs_input_grad
        gts: list[torch.Tensor | None] = [None] * k
        gus: list[torch.Tensor | None] = [None] * max(k - 1, 0)
        gqs: list[torch.Tensor] = [torch.empty(0)] * k
        if k:
            shape = ctx.shape
            for j in reversed(range(k)):  # a_j feeds y through T_j and later dendrites through U_l[j]
                ga = gy * ts[j].view(shape)
                for m in range(j + 1, k):
                    ga = ga + gqs[m] * us[m - 1][j].view(shape)
                gqs[j] = ga * _act_grad(spec.activation, acts[j])
                if need[2 + 2 * k + 2 + j]:
                    gts[j] = _sum_per_neuron(spec, gy * acts[j])
                if j and need[2 + 3 * k + 2 + j - 1]:
                    gus[j - 1] = torch.stack([_sum_per_neuron(spec, gqs[j] * acts[i]) for i in range(j)])
        # Stacked output gradient: the main rows get gy, dendrite j's rows get dL/dq_j.
        gz = gy if k == 0 else torch.cat([gy, *gqs], 1 if spec.kind != "linear" else -1)
        wb: list[torch.Tensor | None] = [None] * (2 * k + 2)
        if any(need[4:2 * k + 4]):  # dendrite copies train (GD, or CC with dendrite updates)
            gw = _grad_weight(spec, gz, x, w)
            wb[0::2], wb[1::2] = gw.chunk(k + 1), _sum_per_neuron(spec, gz).chunk(k + 1)
        elif need[2] or need[3]:
            wb[0], wb[1] = _grad_weight(spec, gy, x, w[:c]), _sum_per_neuron(spec, gy)
        gx = None
        if need[0]:
            gx = _grad_input(spec, gy, x, w[:c]) if spec.perforated or k == 0 else _grad_input(spec, gz, x, w)
        return (gx, None, *wb, *gts, *gus)


LayerArgs = tuple[LayerSpec, list[torch.Tensor]]


def module_args(m: nn.Module) -> LayerArgs | None:
    """(spec, params) of a DendriticLayer (its `fused_args`) or a plain Linear/Conv; None: no fused op."""
    if hasattr(m, "fused_args"):
        return m.fused_args()
    spec = fusable(m)
    return None if spec is None else (spec, [m.weight, m.bias])


def dendritic_forward(x: torch.Tensor, args: LayerArgs) -> torch.Tensor:
    """A dendritic (or plain) layer's training forward as one autograd node."""
    return _DendriticOp.apply(x, args[0], *args[1])


class _ReluPoolDropout(torch.autograd.Function):
    """dropout(maxpool1d_2(pad(relu(x)))) along the last axis, or dropout(relu(x)) when pool is False.

    ReLU commutes with max, so it runs on the pooled half; dropout and ReLU become one multiplier."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pool: bool, pad_right: int, p: float) -> torch.Tensor:
        length = x.shape[-1]
        if pool:
            if pad_right:
                x = F.pad(x, (0, pad_right))
            if x.shape[-1] % 2:  # floor pooling drops the odd last column
                x = x[..., :-1]
            ctx.pooled_input = x
            x = F.max_pool1d(x, 2)  # values only: 6x cheaper than max with indices at these sizes
        keep = x > 0
        if p > 0:
            keep &= torch.rand_like(x) >= p
        mult = keep.to(x.dtype).mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(mult)
        ctx.pool, ctx.length = pool, length
        return x * mult

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (mult,) = ctx.saved_tensors
        g = g * mult
        if ctx.pool:
            x = ctx.pooled_input
            second = x[..., 1::2] > x[..., 0::2]  # which of each pair was the max (ties: the first)
            full = torch.empty(*g.shape, 2, dtype=g.dtype, device=g.device)
            torch.mul(g, second, out=full[..., 1])
            torch.sub(g, full[..., 1], out=full[..., 0])
            g = full.flatten(-2)
            n = g.shape[-1]
            g = g[..., :ctx.length] if n >= ctx.length else F.pad(g, (0, ctx.length - n))
        return g, None, None, None


def relu_pool_dropout(x: torch.Tensor, pool: bool, pad_right: int, p: float) -> torch.Tensor:
    """Training-time ReLU (-> 2x max pool over the last axis) -> dropout(p) in one autograd node."""
    return _ReluPoolDropout.apply(x, pool, pad_right, p)


def cross_entropy_grad(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and its gradient w.r.t. the logits, (softmax - onehot) / B."""
    logp = torch.log_softmax(logits, 1)
    g = logp.exp()
    g.scatter_add_(1, y[:, None], torch.full((len(y), 1), -1.0, dtype=g.dtype, device=g.device))
    return F.nll_loss(logp, y), g.div_(len(y))


class _Ctx:
    """Stands in for autograd's ctx, so the Functions above also run without building a graph."""

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self.saved_tensors = tensors


class Tape:
    """Runs a network's training pass with the fused ops and no autograd, then replays their backward in
    reverse and *sets* each trainable parameter's .grad (every module runs once per pass; the effect is
    zero_grad(set_to_none=True) + backward). Why: at batch 32 the autograd engine, AccumulateGrad
    nodes and Function.apply cost as much as the kernels (bench/profile_notes.md). KWSNet drives it
    through the same layer/block/flatten calls as its ordinary forward (model.KWSNet._run)."""

    def __init__(self, dropout: float, args: dict[int, LayerArgs]):
        self.dropout = dropout
        self.args = args  # module_args of every layer the network will call, by id(module)
        self.entries: list[tuple] = []

    def layer(self, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        spec, params = self.args[id(m)]
        ctx = _Ctx((bool(self.entries), False, *(p.requires_grad for p in params)))
        self.entries.append((_DendriticOp.backward, ctx, params))
        return _DendriticOp.forward(ctx, x.contiguous(), spec, *params)

    def block(self, x: torch.Tensor, pool: nn.Module | None) -> torch.Tensor:
        """ReLU -> (2x max pool, 'same' padding from the Pool module) -> dropout."""
        ctx = _Ctx((True, False, False, False))
        self.entries.append((_ReluPoolDropout.backward, ctx, []))
        pad = 0 if pool is None else pool.pad[1]
        return _ReluPoolDropout.forward(ctx, x, pool is not None, pad, self.dropout)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        self.entries.append((lambda _ctx, g, shape=x.shape: (g.view(shape),), None, []))
        return x.flatten(1)

    def backward(self, g: torch.Tensor) -> None:
        for backward, ctx, params in reversed(self.entries):
            grads = backward(ctx, g)
            g = grads[0]
            for p, gp in zip(params, grads[len(grads) - len(params):]):
                if gp is not None:
                    p.grad = gp
