"""Several same-shaped runs trained as one network along a leading model axis (issue 16: sweep speed).

Why: at batch 32 a KWS net's training step is bound by per-op dispatch, not FLOPs (bench/profile_notes.md),
so M networks of one shape stacked as [M, ...] weights (one `baddbmm` per layer instead of M `addmm`s) cost
little more than one. A sweep's trials that differ only in seed, learning rate, dropout, input noise,
augmentation or schedule train together this way.

Each run still gets exactly its own numbers: its weights live in the stack as views (its checkpoints and
schedule see ordinary parameters), its dropout and noise come from its own generator, its learning rate
(and ReduceLROnPlateau's changes to it) from its own optimizer, and Adam runs here per model with the same
maths as torch's. A lone run trains in a stack of one, so its numbers are bit for bit the same alone or
beside others (tests/test_lockstep.py). A run trains in the stack during its first neuron phase, while it
has no dendrites; at its first restructure (a dendrite phase, new dendrites, its early stop) it leaves and goes on alone with the
fresh optimizer `DendriticModel` builds at every restructure anyway, so no optimizer state moves.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import torch
from torch import nn

from dendritic import ops
from dendritic.pb import DendriticModel
from dendritic.schedule import Phase


class _Epoch(Protocol):
    """What a stack reads of a run's epoch (kws.trainer's `_Epoch`): its inputs, targets and loss gradient.
    Spelled out here rather than imported because kws.trainer imports this module."""

    x: torch.Tensor
    targets: tuple
    loss_grad: Callable
    batch_size: int


class _Run(Protocol):
    """What a stack reads of a run (kws.trainer's `_Run`), for the same reason."""

    model: DendriticModel
    run: Any  # kws.trainer.RunConfig
    teacher: nn.Module | None
    device: torch.device
    rand: torch.Generator

    def batches(self, ep: Any) -> Iterator[tuple[int, tuple]]: ...


def _stack(ts: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack, as a view when there is one tensor (a lone run's stack of one costs no copies)."""
    return ts[0].unsqueeze(0) if len(ts) == 1 else torch.stack(ts)


def _layers(net: nn.Module) -> list[nn.Module]:
    return [*net.convs, *net.linears]


def _layer_params(net: nn.Module) -> list[torch.Tensor]:
    """The fused ops' parameters of every layer, in the order the stacks hold them."""
    return [p for m in _layers(net) for p in ops.module_args(m)[1]]


def signature(r: _Run) -> tuple | None:
    """What must match for runs to share a stack (None: this run cannot be stacked)."""
    model, cfg = r.model, r.run
    net = model.net
    if (not model.fused or model.phase is not Phase.NEURON or model.num_dendrites or r.teacher is not None
            or not hasattr(net, "cross_entropy_step")):
        return None
    args = [ops.module_args(m) for m in _layers(net)]
    if any(a is None for a in args):
        return None
    opt = model.optimizer.param_groups[0]
    layers = tuple((spec.kind, spec.neurons, spec.kernel, spec.padding, tuple(tuple(p.shape) for p in ps))
                   for spec, ps in args)
    pools = tuple(tuple(p.pad) for p in net.pools)
    return (layers, pools, cfg.net.conv_type, cfg.net.frames, cfg.net.n_coeffs, cfg.train.batch_size, r.device.type,
            tuple(opt["betas"]), opt["eps"], opt["weight_decay"], opt.get("amsgrad", False))


class Lockstep:
    """One stack of runs: their layer weights as [M, ...] tensors, Adam's moments, and a batched step."""

    def __init__(self, members: list[_Run]):
        self.members = members
        self.net0 = members[0].model.net
        per_model = [self._params_of(r.model.net) for r in members]
        self.params = [nn.Parameter(torch.stack([pm[j].detach() for pm in per_model]))
                       for j in range(len(per_model[0]))]
        per_model = [self._buffers_of(r.model.net) for r in members]
        self.buffers = [torch.stack([pm[j] for pm in per_model]) for j in range(len(per_model[0]))]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0
        self._attach()

    @classmethod
    def form(cls, runs: Iterable[_Run]) -> list[Lockstep]:
        """One stack per signature. A lone run gets a stack of one too: a run then takes the same kernels
        (baddbmm, this Adam) alone as beside others, so its numbers do not depend on its company (over 100
        epochs float-rounding differences grow into different models, so "to rounding" is not enough)."""
        by_sig: dict[tuple, list[_Run]] = {}
        for r in runs:
            for kind in (cls, DSStack):
                sig = kind.signature(r)
                if sig is not None:
                    by_sig.setdefault((kind, sig), []).append(r)
        return [kind(rs) for (kind, _), rs in by_sig.items() if len(rs) >= kind.MIN_MEMBERS]

    MIN_MEMBERS = 1  # a lone conv+FC run trains in a stack of one: the same kernels alone as together
    signature = staticmethod(signature)

    @staticmethod
    def _params_of(net: nn.Module) -> list[torch.Tensor]:
        return _layer_params(net)

    @staticmethod
    def _buffers_of(net: nn.Module) -> list[torch.Tensor]:
        return []

    def _bind(self) -> None:
        """Point every member's stacked parameters and buffers at its row of the stacks."""
        for i, r in enumerate(self.members):
            for p, stack in zip(self._params_of(r.model.net), self.params):
                p.data = stack.data[i]
            for b, stack in zip(self._buffers_of(r.model.net), self.buffers):
                b.data = stack[i]

    def _attach(self) -> None:
        """Point every member's layer parameters at its row of the stacks; build the batched layer args."""
        self._bind()
        self.args, j = {}, 0
        for m in _layers(self.net0):
            spec, ps = ops.module_args(m)
            self.args[id(m)] = (spec, self.params[j:j + len(ps)])
            j += len(ps)
        self._draws()

    def _draws(self) -> None:
        """Each member's dropout and noise rates, and draws of their masks from each member's own generator."""
        like = self.params[0]
        self.dropout = torch.tensor([r.run.net.dropout for r in self.members], dtype=like.dtype, device=like.device)
        self.noise = torch.tensor([r.run.net.noise_std for r in self.members], dtype=like.dtype, device=like.device)
        # A model with no dropout (or noise) draws nothing alone, so it draws nothing here either: its stream
        # stays in step with its solo run. Its row gets zeros (kept by `>= 0`, added times a zero std).
        kw = {"dtype": like.dtype, "device": like.device}

        def draws(fn, rates: torch.Tensor):
            gens = [r.rand if rate > 0 else None for r, rate in zip(self.members, rates.tolist())]
            return lambda shape: _stack([torch.zeros(shape[1:], **kw) if g is None else
                                         fn(shape[1:], generator=g, **kw) for g in gens])

        self.rand, self.randn = draws(torch.rand, self.dropout), draws(torch.randn, self.noise)

    def release(self, leaving: list[_Run]) -> None:
        """Members that restructured or finished leave: their parameters get storage of their own, and the
        stacks (weights and Adam moments) keep only the rows of those who stay."""
        if not leaving:
            return
        gone = {id(r) for r in leaving}
        for r in leaving:  # (every parameter: a restructured layer may have no fused op any more, e.g. dilated)
            for p in r.model.net.parameters():
                p.data = p.data.clone()
            for b in r.model.net.buffers():
                b.data = b.data.clone()
        keep = [i for i, r in enumerate(self.members) if id(r) not in gone]
        self.members = [self.members[i] for i in keep]
        if not keep:
            return
        idx = torch.tensor(keep, device=self.params[0].device)
        self.params = [nn.Parameter(p.data.index_select(0, idx)) for p in self.params]
        self.buffers = [b.index_select(0, idx) for b in self.buffers]
        self.exp_avg = [t.index_select(0, idx) for t in self.exp_avg]
        self.exp_avg_sq = [t.index_select(0, idx) for t in self.exp_avg_sq]
        self.net0 = self.members[0].model.net
        self._attach()

    def train_epoch(self, eps: list[_Epoch]) -> dict[int, tuple[list, list]]:
        """Every member's epoch, batch by batch together: {id(run): (batch losses, batch logits)}."""
        like = self.params[0]
        lrs = torch.tensor([r.model.optimizer.param_groups[0]["lr"] for r in self.members], dtype=like.dtype,
                           device=like.device)
        lr_views = [ops.per_model(lrs, p) for p in self.params]
        results: dict[int, tuple[list, list]] = {id(r): ([], []) for r in self.members}
        bs = eps[0].batch_size
        for i, _ in self.members[0].batches(eps[0]):
            x = _stack([ep.x[i:i + bs] for ep in eps])
            targets = [tuple(None if t is None else t[i:i + bs] for t in ep.targets) for ep in eps]
            losses, logits = self._step(x, targets, [ep.loss_grad for ep in eps], lr_views)
            for r, loss, out in zip(self.members, losses, logits):
                results[id(r)][0].append(loss)
                results[id(r)][1].append(out)
        return results

    def _step(self, x: torch.Tensor, targets: list[tuple], loss_grads: list, lr_views: list[torch.Tensor]):
        with torch.inference_mode():
            tape = ops.Tape(self.dropout, self.args, self.noise, self.rand, self.randn,
                            conv2d=self.members[0].run.net.conv_type == "conv2d")
            logits = self.net0._run(x, tape)
            pairs = [lg(z, t) for lg, z, t in zip(loss_grads, logits, targets)]
            tape.backward(_stack([g for _, g in pairs]))
        self._adam(lr_views)
        return [loss for loss, _ in pairs], logits

    def _adam(self, lr_views: list[torch.Tensor]) -> None:
        """torch.optim.Adam's update (no weight decay, no amsgrad) with one learning rate per model row."""
        b1, b2 = self.members[0].model.optimizer.param_groups[0]["betas"]
        eps = self.members[0].model.optimizer.param_groups[0]["eps"]
        self.steps += 1
        grads = [p.grad for p in self.params]
        params = [p.data for p in self.params]
        bc1, bc2 = 1 - b1 ** self.steps, 1 - b2 ** self.steps
        torch._foreach_lerp_(self.exp_avg, grads, 1 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - b2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, eps)
        update = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(update, lr_views)
        torch._foreach_add_(params, update, alpha=-1 / bc1)


class _Depthwise(torch.autograd.Function):
    """A depthwise temporal conv on a padded channels-last stack [M, B, T_pad, C] with taps [M, C, k] and
    bias [M, C]: one multiply-add per tap, forward and backward. (As autograd ops, every tap's slice
    costs its backward a zero-filled input-sized gradient; an unfolded product's backward is slower still.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, stride: int, t: int) -> torch.Tensor:
        m, b, _, c = x.shape
        out = bias.view(m, 1, 1, c).expand(m, b, t, c).clone()
        for j in range(w.shape[-1]):
            out.addcmul_(x[:, :, j:j + stride * (t - 1) + 1:stride], w[:, None, None, :, j])
        ctx.save_for_backward(x, w)
        ctx.stride = stride
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        s, t = ctx.stride, g.shape[2]
        gx, gw = torch.zeros_like(x), torch.empty_like(w)
        for j in range(w.shape[-1]):
            window = slice(j, j + s * (t - 1) + 1, s)
            gx[:, :, window].addcmul_(g, w[:, None, None, :, j])
            gw[..., j] = (x[:, :, window] * g).sum((1, 2))
        return gx, gw, g.sum((1, 2)), None, None


def _ds_signature(r: _Run) -> tuple | None:
    """What must match for DS-TCN runs to share a stack (None: not a plain DS-TCN run in its neuron phase)."""
    from kws.nets.dstcn import DSTCN

    model, cfg = r.model, r.run
    if (not isinstance(model.net, DSTCN) or model.layers or model.phase is not Phase.NEURON or r.teacher is not None
            or r.device.type != "cpu"):
        return None
    opt = model.optimizer.param_groups[0]
    shape = {k: v for k, v in cfg.net.to_dict().items() if k not in ("dropout", "noise_std")}
    return (tuple(sorted((k, str(v)) for k, v in shape.items())), cfg.train.batch_size, tuple(opt["betas"]),
            opt["eps"], opt["weight_decay"], opt.get("amsgrad", False))


class DSStack(Lockstep):
    """DS-TCN runs of one shape trained as one network along a leading model axis (issue 24: search speed).

    The DS-TCN's convolutions are written as batched matrix products on a channels-last [M, B, T, C] stack
    (a temporal conv: the input unfolded over its kernel, times the [M, C_in*k, C_out] weights; a depthwise
    conv: unfolded input times per-channel taps; the stride-2 skip: every second frame) and its batch norms
    per (model, channel), so 8 models cost little more than one: the grouped convolutions torch offers for
    the same stack were only 1.5x faster than 8 separate models on one core (bench/sweep_speed.py).
    Autograd differentiates it; Adam runs per model row (Lockstep._adam). Unlike the conv+FC stack it sums
    in another order than the module's own convolutions, so a run's numbers here match its solo run to
    rounding, not bit for bit; a lone DS-TCN run therefore trains as the plain module (MIN_MEMBERS = 2).
    """

    MIN_MEMBERS = 2
    signature = staticmethod(_ds_signature)

    @staticmethod
    def _params_of(net: nn.Module) -> list[torch.Tensor]:
        return list(net.parameters())

    @staticmethod
    def _buffers_of(net: nn.Module) -> list[torch.Tensor]:
        return list(net.buffers())

    def _attach(self) -> None:
        self._bind()
        self.p = dict(zip((n for n, _ in self.net0.named_parameters()), self.params))
        self.b = dict(zip((n for n, _ in self.net0.named_buffers()), self.buffers))
        self._draws()

    def _bn(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """BatchNorm2d in training mode on [M, B, T, C], per (model, channel): torch's own batch_norm on the
        [B*T, M*C] view, whose running statistics are the members' (their buffers are rows of the stack)."""
        bn = self.net0.get_submodule(name)
        m, b, t, c = x.shape
        flat = x.reshape(m, b * t, c).transpose(0, 1).reshape(b * t, m * c)
        self.b[f"{name}.num_batches_tracked"].add_(1)
        out = nn.functional.batch_norm(flat, self.b[f"{name}.running_mean"].view(-1),
                                       self.b[f"{name}.running_var"].view(-1), self.p[f"{name}.weight"].reshape(-1),
                                       self.p[f"{name}.bias"].reshape(-1), True, bn.momentum, bn.eps)
        return out.view(b * t, m, c).transpose(0, 1).reshape(m, b, t, c)

    def _conv(self, x: torch.Tensor, name: str, stride: int = 1) -> torch.Tensor:
        """The 'same'-padded temporal Conv2d `name` (kernel (k, 1); dense or depthwise) on [M, B, T, C]."""
        conv = self.net0.get_submodule(name)
        w, bias = self.p[f"{name}.weight"], self.p[f"{name}.bias"]  # [M, C_out, C_in/groups, k, 1], [M, C_out]
        m, c_out, c_in, k = w.shape[:4]
        b, t = x.shape[1], (x.shape[2] - 1) // stride + 1
        if k > 1:
            x = nn.functional.pad(x, (0, 0, k // 2, k // 2))
        if conv.groups > 1:
            return _Depthwise.apply(x, w.view(m, c_out, k), bias, stride, t)
        if k > 1 or stride > 1:
            x = x.unfold(2, k, stride)  # [M, B, T', C, k]: the input's patches (for the stem: no gradient)
        out = torch.baddbmm(bias.unsqueeze(1), x.reshape(m, b * t, c_in * k), w.reshape(m, c_out, c_in * k).mT)
        return out.view(m, b, t, c_out)

    def _step(self, x: torch.Tensor, targets: list[tuple], loss_grads: list, lr_views: list[torch.Tensor]):
        cfg = self.net0.cfg
        for p in self.params:
            p.grad = None
        if cfg.noise_std > 0 or bool(self.noise.any()):
            x = x + self.randn(x.shape) * ops.per_model(self.noise, x)
        h = x.view(x.shape[0], x.shape[1], cfg.frames, cfg.n_coeffs)  # EI's frame-major rows: [M, B, T, C]
        h = torch.relu(self._bn(self._conv(h, "stem.0"), "stem.1"))
        for i, block in enumerate(self.net0.blocks):
            stride = 2 if i < cfg.downsample else 1
            if hasattr(block.dw, "branches"):
                z = sum(self._bn(self._conv(h, f"blocks.{i}.dw.branches.{j}.0", stride), f"blocks.{i}.dw.branches.{j}.1")
                        for j in range(len(block.dw.branches)))
            else:
                z = self._bn(self._conv(h, f"blocks.{i}.dw.0", stride), f"blocks.{i}.dw.1")
            z = self._bn(self._conv(torch.relu(z), f"blocks.{i}.pw.0"), f"blocks.{i}.pw.1")
            h = torch.relu(z + (h[:, :, ::stride] if stride > 1 else h))
        h = h.mean(2)  # [M, B, C]
        if bool(self.dropout.any()):
            keep = 1 - ops.per_model(self.dropout, h)
            h = h * (self.rand(h.shape) < keep) / keep
        logits = torch.baddbmm(self.p["classifier.bias"].unsqueeze(1), h, self.p["classifier.weight"].mT)
        pairs = [lg(z, t) for lg, z, t in zip(loss_grads, logits.detach(), targets)]
        logits.backward(_stack([g for _, g in pairs]))
        self._adam(lr_views)
        return [loss for loss, _ in pairs], logits.detach()
