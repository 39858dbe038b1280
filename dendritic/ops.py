"""Fused training-time ops: the same maths as layer.py and the KWS net (kws/nets/convfc.py), in far fewer
(and no autograd) ops.

Why (issue 8, bench/profile_notes.md): at batch 32 these nets are bound by per-op dispatch and autograd
bookkeeping, not FLOPs. A dendritic Conv1d/Linear with k dendrites is 1 + k layer calls plus ~5k small ops
and as many backward nodes; here it is ONE matmul over the stacked weights [W_M; W_D0; ...] (the same
stacking the export's fold does) with a hand-written backward. Everything works channels-last: a Conv1d
input is [B, L, C] (Edge Impulse's own frame-major order) and its im2col matrix is [B*L, C*k] (Conv2d:
[B, H, W, C] and [B*H*W, C*k*k]), so every layer is `rows @ W.T` and the dendrite maths below is written
once for [rows, channels]. ReLU -> max pool -> dropout is one op too. `Tape` runs a whole training pass through these without the autograd engine;
`dendritic_forward` wraps the layer op as an autograd Function for ordinary PyTorch loops; CC candidates
run beside it through `candidate_forward`. Eval, export and folding (and candidates in an ordinary autograd
loop) use the plain ops in layer.py and kws/nets/convfc.py; tests/test_ops.py checks that both give the same
outputs and gradients.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    kernel: int = 1
    padding: int = 0


LayerArgs = tuple[LayerSpec, list[torch.Tensor]]


def fusable(main: nn.Module) -> LayerSpec | None:
    """The spec for a Linear, or a Conv1d/Conv2d with stride and dilation 1, zero padding, a square kernel
    and equal padding on every side; None for anything else."""
    if getattr(main, "bias", None) is None:
        return None
    if isinstance(main, nn.Linear):
        return LayerSpec("linear", main.out_features, 0, "relu", False)
    if not isinstance(main, (nn.Conv1d, nn.Conv2d)) or isinstance(main.padding, str):
        return None
    plain = (set(main.stride) == {1} and set(main.dilation) == {1} and main.groups == 1
             and main.padding_mode == "zeros" and len(set(main.kernel_size)) == 1 and len(set(main.padding)) == 1)
    if not plain:
        return None
    kind = "conv1d" if isinstance(main, nn.Conv1d) else "conv2d"
    return LayerSpec(kind, main.out_channels, 0, "relu", False, main.kernel_size[0], main.padding[0])


def module_args(m: nn.Module) -> LayerArgs | None:
    """(spec, params) of a DendriticLayer (its `fused_args`) or a plain Linear/Conv1d; None: no fused op."""
    if hasattr(m, "fused_args"):
        return m.fused_args()
    spec = fusable(m)
    return None if spec is None else (spec, [m.weight, m.bias])


# ---- the layer op: rows @ W.T on the stacked weights ----------------------------------------------------
def _spatial(spec: LayerSpec) -> int:
    """Spatial axes of the layer's channels-last input: 0 (Linear), 1 (Conv1d [B, L, C]), 2 (Conv2d [B, H, W, C])."""
    return {"linear": 0, "conv1d": 1, "conv2d": 2}[spec.kind]


def _rows(spec: LayerSpec, x: torch.Tensor) -> torch.Tensor:
    """The matrix the layer multiplies: Linear input rows, or a convolution's im2col of its channels-last
    input: for Conv1d [B, L, C] row (b, l) holds x[b, l + t - pad, c] at column c*k + t, for Conv2d
    [B, H, W, C] row (b, h, w) holds x[b, h + t - pad, w + u - pad, c] at column (c*k + t)*k + u (the
    weight's own [C_out, C_in, k(, k)] order). A leading model axis (a batch of same-shaped networks,
    kws/lockstep.py) stays in front."""
    s = _spatial(spec)
    lead = x.shape[:x.dim() - 2 - s]
    if s == 0:
        return x.reshape(*lead, -1, x.shape[-1])
    cols = F.pad(x, (0, 0) + (spec.padding, spec.padding) * s)
    for _ in range(s):  # each unfold appends a window axis: [.., Lp, C] -> [.., Lo, C, k];
        cols = cols.unfold(-1 - s, spec.kernel, 1)  # [.., Hp, Wp, C] -> [.., Ho, Wp, C, k] -> [.., Ho, Wo, C, k, k]
    return cols.reshape(*lead, -1, x.shape[-1] * spec.kernel ** s)


def _grad_input(spec: LayerSpec, g: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dL/dx from g = dL/d(rows @ W.T): g @ W, then col2im (a sum of k (or k*k) shifted windows)."""
    lead = g.shape[:-2]
    grows = g @ w.reshape(*lead, w.shape[len(lead)], -1)
    s = _spatial(spec)
    if s == 0:
        return grows.view_as(x)
    k, pad = spec.kernel, spec.padding
    sizes = x.shape[-1 - s:-1]  # L, or H and W
    outs = [n + 2 * pad - k + 1 for n in sizes]
    c = x.shape[-1]
    gcols = grows.view(*lead, x.shape[-2 - s], *outs, c, *[k] * s)
    gx = torch.zeros(*lead, x.shape[-2 - s], *[n + 2 * pad for n in sizes], c, dtype=g.dtype, device=g.device)
    if s == 1:
        for t in range(k):
            gx[..., t:t + outs[0], :] += gcols[..., t]
        return gx[..., pad:pad + sizes[0], :]
    for t in range(k):
        for u in range(k):
            gx[..., t:t + outs[0], u:u + outs[1], :] += gcols[..., t, u]
    return gx[..., pad:pad + sizes[0], pad:pad + sizes[1], :]


def _affine(bias: torch.Tensor, rows: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """rows @ W.T + b: one addmm, or one baddbmm over a leading model axis."""
    if rows.dim() == 2:
        return torch.addmm(bias, rows, w.reshape(w.shape[0], -1).t())
    return torch.baddbmm(bias.unsqueeze(-2), rows, w.reshape(*w.shape[:2], -1).transpose(-1, -2))


def _act_(name: str, q: torch.Tensor) -> torch.Tensor:
    if name == "linear":
        return q
    return q.relu_() if name == "relu" else q.tanh_() if name == "tanh" else q.sigmoid_()


def _act_grad(name: str, a: torch.Tensor) -> torch.Tensor:
    """f'(q) from the activation's output a = f(q)."""
    if name == "linear":
        return a.new_ones(())
    if name == "relu":
        return a > 0  # bool: multiplies like 0/1 without a conversion op
    return 1 - a * a if name == "tanh" else a * (1 - a)


def _needs(spec: LayerSpec, params: list[torch.Tensor]) -> tuple[bool, bool, list[bool], list[bool]]:
    """Which gradients to compute: main W/b, dendrite copies, each T_j, each U_j."""
    k = spec.dendrites
    rg = [p.requires_grad for p in params]
    return rg[0] or rg[1], any(rg[2:2 * k + 2]), rg[2 * k + 2:3 * k + 2], rg[3 * k + 2:]


def layer_forward(spec: LayerSpec, x: torch.Tensor, params: list[torch.Tensor]) -> tuple[torch.Tensor, tuple]:
    """y = M(x) + sum_j T_j * a_j,  a_j = f(D_j(x) + sum_{i<j} U_j[i] * a_i)  (layer.py's docstring).
    params = W_M, b_M, W_D0, b_D0, ..., T_0..T_{k-1}, U_1..U_{k-1}. Returns y and what backward needs."""
    k, c = spec.dendrites, spec.neurons
    ws, bs = params[0:2 * k + 2:2], params[1:2 * k + 2:2]
    ts, us = params[2 * k + 2:3 * k + 2], params[3 * k + 2:]
    w = ws[0] if k == 0 else torch.cat(ws)
    rows = _rows(spec, x)
    if k and rows.dim() > 2:
        raise ValueError("a leading model axis is only supported for layers without dendrites")
    z = _affine(bs[0] if k == 0 else torch.cat(bs), rows, w)
    acts: list[torch.Tensor] = []
    if k:
        zs = z.chunk(k + 1, dim=1)  # (chunk: no Python wrapper, unlike split)
        for j in range(k):
            q = zs[j + 1]
            for i in range(j):
                q = q + us[j - 1][i] * acts[i]
            acts.append(_act_(spec.activation, q))  # in place on z's (or q's own) storage
        y = torch.addcmul(zs[0], ts[0], acts[0])
        for j in range(1, k):
            y.addcmul_(ts[j], acts[j])
    else:
        y = z
    sp = _spatial(spec)
    out_shape = (*x.shape[:x.dim() - 1 - sp], *[n + 2 * spec.padding - spec.kernel + 1 for n in x.shape[-1 - sp:-1]], c)
    return y.view(out_shape), (x, rows, w, ts, us, acts)


def layer_backward(spec: LayerSpec, gy: torch.Tensor, saved: tuple, params: list[torch.Tensor],
                   input_grad: bool) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
    """(dL/dx or None, [dL/dp or None for p in params]) for layer_forward's output gradient gy."""
    k, c = spec.dendrites, spec.neurons
    x, rows, w, ts, us, acts = saved
    need_main, need_dend, need_t, need_u = _needs(spec, params)
    gy = gy.reshape(*rows.shape[:-2], -1, c)
    gts: list[torch.Tensor | None] = [None] * k
    gus: list[torch.Tensor | None] = [None] * max(k - 1, 0)
    gqs: list[torch.Tensor] = [gy] * k
    for j in reversed(range(k)):  # a_j feeds y through T_j and later dendrites through U_l[j]
        ga = gy * ts[j]
        for m in range(j + 1, k):
            ga = ga + gqs[m] * us[m - 1][j]
        gqs[j] = ga * _act_grad(spec.activation, acts[j])
        if need_t[j]:
            gts[j] = (gy * acts[j]).sum(0)
        if j and need_u[j - 1]:
            gus[j - 1] = torch.stack([(gqs[j] * acts[i]).sum(0) for i in range(j)])
    # Stacked output gradient: the main rows get gy, dendrite j's rows get dL/dq_j.
    gz = gy if k == 0 else torch.cat([gy, *gqs], 1)
    main_w = w if k == 0 else w[:c]  # (k == 0 with a leading model axis: w[:c] would slice the models)
    wb: list[torch.Tensor | None] = [None] * (2 * k + 2)
    if need_dend:  # dendrite copies train (GD, or CC with dendrite updates)
        wb[0::2] = (gz.t() @ rows).view_as(w).chunk(k + 1)
        wb[1::2] = gz.sum(0).chunk(k + 1)
    elif need_main:
        wb[0], wb[1] = (gy.transpose(-1, -2) @ rows).view_as(main_w), gy.sum(-2)
    gx = None
    if input_grad:  # perforated dendrites send no error into x
        gx = _grad_input(spec, gy, main_w, x) if spec.perforated or k == 0 else _grad_input(spec, gz, w, x)
    return gx, [*wb, *gts, *gus]


def candidate_forward(spec: LayerSpec, saved: tuple, cand: nn.Module, cascade: torch.Tensor) -> tuple:
    """A CC candidate beside the layer op, reusing its input rows: v = f(rows @ W_c.T + b_c + sum_i V[i] * a_i).
    Returns v ([rows, C]) and a function that turns dL/dv into the candidate's .grad (no autograd)."""
    _, rows, _, _, _, acts = saved
    w, b = cand.weight, cand.bias
    pool = w.shape[0] // spec.neurons  # a pool of candidates per neuron: each reads its neuron's a_i
    acts = [a if pool == 1 else a.repeat(1, pool) for a in acts]
    q = torch.addmm(b, rows, w.reshape(w.shape[0], -1).t())
    for i, a in enumerate(acts):
        q = q + cascade[i] * a
    v = _act_(spec.activation, q)

    def backward(gv: torch.Tensor) -> None:
        gq = gv * _act_grad(spec.activation, v)
        w.grad, b.grad = (gq.t() @ rows).view_as(w), gq.sum(0)
        cascade.grad = torch.stack([(gq * a).sum(0) for a in acts]) if acts else torch.zeros_like(cascade)

    return v, backward


class _DendriticOp(torch.autograd.Function):
    """The layer op as one autograd node (channels-last input, like the Tape)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, spec: LayerSpec, *params: torch.Tensor) -> torch.Tensor:
        y, saved = layer_forward(spec, x, list(params))
        ctx.spec, ctx.saved, ctx.params = spec, saved, params
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        gx, grads = layer_backward(ctx.spec, gy, ctx.saved, list(ctx.params), ctx.needs_input_grad[0])
        return (gx, None, *grads)


def dendritic_forward(x: torch.Tensor, args: LayerArgs) -> torch.Tensor:
    """A dendritic (or plain) layer's forward as one autograd node, in the layer's own layout."""
    spec, params = args
    if spec.kind != "linear":  # [B, C, ...] <-> channels-last
        return _DendriticOp.apply(x.movedim(1, -1), spec, *params).movedim(-1, 1)
    return _DendriticOp.apply(x, spec, *params)


# ---- ReLU -> 2x (or 2x2) max pool -> dropout, channels-last ------------------------------------------
Random = Callable[[torch.Size], torch.Tensor]  # shape -> uniform [0, 1) draws (the Tape's generator)


def per_model(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-model vector [M] viewed to broadcast over x's leading model axis [M, ...]."""
    return v.view(-1, *[1] * (x.dim() - 1))


def block_forward(x: torch.Tensor, pads: tuple[int, ...] | None, p: float | torch.Tensor,
                  rand: Random | None = None) -> tuple[torch.Tensor, tuple]:
    """dropout(maxpool_2(pad(relu(x)))) of a channels-last [..., B, L, C] or [..., B, H, W, C] input, or
    dropout(relu(x)) without pooling (`pads` None). `pads` holds each spatial axis's right padding: 'same'
    pooling pads odd sizes with a zero, 'floor' pooling drops the odd last step. ReLU commutes with max, so
    it runs on the pooled tensor; ReLU and dropout become one multiplier. `p` may be a per-model tensor [M]
    (leading model axis); `rand` draws the dropout noise (default: the global generator)."""
    pool = None
    if pads and len(pads) == 1:
        pool = ("1d", x.shape[-2])
        if pads[0]:
            x = F.pad(x, (0, 0, 0, pads[0]))
        if x.shape[-2] % 2:
            x = x[..., :-1, :]
        pool += (x,)
        x = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    elif pads:
        # ATen's max_pool2d_with_indices on the channels-last NCHW view (no copy): its channels-last kernels
        # beat strided slicing 1.2x on Conv2d maps (on 1-D maps the slices win). 'same' is its ceil mode: the
        # last one-step window's max and the zero pad's differ only where both are <= 0, which ReLU zeroes.
        shape, nchw = x.shape, x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)
        y, idx = torch.ops.aten.max_pool2d_with_indices(nchw, [2, 2], [2, 2], [0, 0], [1, 1], any(pads))
        x = y.permute(0, 2, 3, 1).reshape(*shape[:-3], *y.shape[2:], shape[-1])
        pool = ("2d", shape, nchw, idx, any(pads))
    keep = x > 0
    if isinstance(p, torch.Tensor):
        p = per_model(p, x)
    if isinstance(p, torch.Tensor) or p > 0:
        keep &= (torch.rand_like(x) if rand is None else rand(x.shape)) >= p
    mult = keep.to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * mult, (mult, pool)


def block_backward(g: torch.Tensor, saved: tuple) -> torch.Tensor:
    mult, pool = saved
    g = g * mult
    if pool is None:
        return g
    if pool[0] == "1d":
        _, length, x = pool
        second = x[..., 1::2, :] > x[..., 0::2, :]  # which of each pair was the max (ties: the first, as max_pool)
        full = torch.empty(*g.shape[:-1], 2, g.shape[-1], dtype=g.dtype, device=g.device)
        torch.mul(g, second, out=full[..., 1, :])
        torch.sub(g, full[..., 1, :], out=full[..., 0, :])
        g = full.flatten(-3, -2)
        n = g.shape[-2]
        return g[..., :length, :] if n >= length else F.pad(g, (0, 0, 0, length - n))
    _, shape, nchw, idx, ceil = pool
    g = g.contiguous()  # (after the flatten's backward it is a transposed view; ATen's pool backward then
    # takes its slow contiguous-NCHW path: a zero fill and two full copies)
    g_nchw = g.reshape(idx.shape[0], *idx.shape[2:], idx.shape[1]).permute(0, 3, 1, 2)
    gx = torch.ops.aten.max_pool2d_with_indices_backward(g_nchw, nchw, [2, 2], [2, 2], [0, 0], [1, 1], ceil, idx)
    return gx.permute(0, 2, 3, 1).reshape(shape)


# ---- a whole training pass without autograd --------------------------------------------------------------
LossGrad = Callable[[torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]  # (logits, target) -> (loss, dL/dz)


def cross_entropy_grad(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and its gradient w.r.t. the logits, (softmax - onehot) / B."""
    logp = torch.log_softmax(logits, 1)
    g = logp.exp()
    g.scatter_add_(1, y[:, None], torch.full((len(y), 1), -1.0, dtype=g.dtype, device=g.device))
    return F.nll_loss(logp, y), g.div_(len(y))


class Tape:
    """Runs a network's training pass with the fused ops and no autograd, then replays their backward in
    reverse and *sets* each trainable parameter's .grad (every module runs once per pass; the effect is
    zero_grad(set_to_none=True) + backward). Why: at batch 32 the autograd engine, AccumulateGrad nodes
    and Function.apply cost as much as the kernels (bench/profile_notes.md). KWSNet drives it through the
    same conv_input/layer/block/flatten calls as its ordinary forward (model.KWSNet._run).

    With a leading model axis (kws/lockstep.py) the same pass trains M same-shaped networks at once:
    every tensor is [M, ...], `dropout` and `noise_std` are per-model tensors, and `rand`/`randn` draw each
    model's noise from its own generator, so each model sees exactly the numbers it would see alone."""

    def __init__(self, dropout: float | torch.Tensor, args: dict[int, LayerArgs],
                 noise_std: float | torch.Tensor = 0.0, rand: Random | None = None, randn: Random | None = None,
                 conv2d: bool = False):
        self.dropout, self.noise_std, self.conv2d = dropout, noise_std, conv2d
        self.rand, self.randn = rand, randn
        self.args = args  # module_args of every layer the network will call, by id(module)
        self.backwards: list = []

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian input noise (training only); no gradient is needed through it (the input is data)."""
        if not isinstance(self.noise_std, torch.Tensor) and not self.noise_std > 0:
            return x
        std = per_model(self.noise_std, x) if isinstance(self.noise_std, torch.Tensor) else self.noise_std
        return x + (torch.randn_like(x) if self.randn is None else self.randn(x.shape)) * std

    def layer(self, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        spec, params = self.args[id(m)]
        y, saved = layer_forward(spec, x, params)
        first = not self.backwards  # the first layer reads the data: no input gradient
        # A CC candidate (dendrite phase) runs beside the op; cc.py sees its output and dL/dy in the
        # layer's own layout (what the reference path's hook captures) and hands back dL/dv.
        as_module = None
        cand = getattr(m, "candidate", None)  # cc.Candidate
        if cand is not None:
            conv = spec.kind != "linear"
            as_module = (lambda t: t.view(*y.shape[:-1], -1).movedim(-1, 1)) if conv else (lambda t: t)
            v, cand_backward = candidate_forward(spec, saved, cand.module, cand.cascade)
            cand.out = as_module(v)
            cand.out_backward = lambda gv: cand_backward(gv.movedim(1, -1).reshape(v.shape) if conv else gv)

        def backward(g: torch.Tensor) -> torch.Tensor | None:
            if as_module is not None:
                cand.error = as_module(g)
            gx, grads = layer_backward(spec, g, saved, params, not first)
            for p, gp in zip(params, grads):
                if gp is not None:
                    p.grad = gp
            return gx

        self.backwards.append(backward)
        return y

    def block(self, x: torch.Tensor, pool: nn.Module | None) -> torch.Tensor:
        """ReLU -> (2x max pool over time, or 2x2 for Conv2d; padding as the Pool module) -> dropout."""
        pads = None if pool is None else tuple(pool.pad[1::2][::-1])  # Pool.pad lists the last axis first
        y, saved = block_forward(x, pads, self.dropout, self.rand)
        self.backwards.append(lambda g: block_backward(g, saved))
        return y

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """[..., B, L, C] or [..., B, H, W, C] -> the reference's channel-major [..., B, C*L] / [..., B, C*H*W]."""
        s = 2 if self.conv2d else 1  # spatial axes
        moved = x.movedim(-1, -1 - s)
        self.backwards.append(lambda g, shape=moved.shape: g.view(shape).movedim(-1 - s, -1))
        return moved.flatten(-1 - s)

    def conv_input(self, x: torch.Tensor) -> torch.Tensor:
        """EI's [..., B, frames, coeffs] is already channels-last for Conv1d; Conv2d gets one channel."""
        return x.unsqueeze(-1) if self.conv2d else x

    def backward(self, g: torch.Tensor) -> None:
        for backward in reversed(self.backwards):
            g = backward(g)
