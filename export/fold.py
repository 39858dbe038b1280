"""Exact algebraic folding of dendritic layers (pb-algorithm §7.2) and of BatchNorm, for export.

A dendritic layer computes y = M(x) + sum_j T_j * f(D_j(x) + sum_{i<j} U_j[i] * a_i). Its k dendrite copies
and M share the input and hyper-parameters, so they become ONE Conv/Linear with (k+1)*C outputs, a split,
the activations and per-channel Mul/Add: one kernel instead of k+1 for the MCU, and a graph made only of
torch built-ins, so nothing from the training library reaches ONNX. Dendritic layers are recognised by
duck typing (attributes `main`, `dendrites`, `out_weights`, `cascade`, `activation`) so this package does
not depend on dendritic/.

Dilated or resized dendrites (a wider, pointwise or longer window than their neurons') cannot share the
neurons' kernel: they stack into a second Conv beside it, with the same split/f/Mul/Add after.

Selective installation (dendritic/cc.py) leaves dendrite channels that are exactly zero: a dendritic layer
reports them with `installed_channels()` and `channel_order()`, and the fold deploys dendrite j on its n_j
installed channels only. The stacked layer computes the neurons in `channel_order` (those with more
dendrites first), so each dendrite adds onto a prefix (split, add, concat), and one GATHER with int32
indices (counted as C params) puts the neurons back in their order.

`drop_negligible_dendrites` runs first, on the export's calibration and check rows: a dendrite whose
contribution there is below what int8 can represent at its layer's output (under half an output step; a ReLU
dendrite that never fires is the extreme case) would get a ~zero int8 range that TFLite's kernels reject.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}
_DENDRITIC_ATTRS = ("main", "dendrites", "out_weights", "cascade", "activation")


def is_dendritic(m: nn.Module) -> bool:
    return all(hasattr(m, a) for a in _DENDRITIC_ATTRS)


def has_dendrites(model: nn.Module) -> bool:
    """True when any dendritic layer in the model carries at least one dendrite."""
    return any(is_dendritic(m) and len(m.dendrites) for m in model.modules())


def fold_bn(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of Conv/Linear `layer` with the following BatchNorm's eval statistics folded in:
    W' = W * g / sqrt(var + eps) per output channel, b' = (b - mean) * g / sqrt(var + eps) + beta."""
    if not isinstance(layer, LAYER_TYPES) or not isinstance(bn, BN_TYPES):
        raise TypeError(f"cannot fold {type(bn).__name__} into {type(layer).__name__}")
    if bn.running_mean is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    fused = copy.deepcopy(layer)
    with torch.no_grad():
        fused.weight = nn.Parameter(layer.weight * scale.view(-1, *[1] * (layer.weight.dim() - 1)))
        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
    return fused


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """In place: every Conv/Linear directly followed by a BatchNorm inside an nn.Sequential absorbs it and the
    BatchNorm becomes Identity (keeps indices stable). Returns the model."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], LAYER_TYPES) and isinstance(seq[i + 1], BN_TYPES):
                seq[i] = fold_bn(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


@torch.no_grad()
def _absorb_bn(d: nn.Module, bn: nn.Module) -> None:
    """In place: a BatchNorm after a dendritic layer is s * y + b per output channel, and with
    y = M(x) + sum_j T_j * a_j that is (s*M + b)(x) + sum_j (s*T_j) * a_j: the BN folds into the neurons
    (fold_bn) and scales every T_j; the dendrites and cascades are unchanged. Exact for every activation."""
    scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
    d.main = fold_bn(_plain(d.main), bn)
    for t in d.out_weights:
        t.mul_(scale)


def absorb_batchnorms(model: nn.Module) -> nn.Module:
    """In place: every dendritic layer directly followed by a BatchNorm inside an nn.Sequential absorbs it
    (`_absorb_bn`) and the BatchNorm becomes Identity. Returns the model."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if is_dendritic(seq[i]) and isinstance(seq[i + 1], BN_TYPES):
                _absorb_bn(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


def is_multi_branch(m: nn.Module) -> bool:
    """A module whose output is the plain sum of its `branches` (each a Conv, or Conv + BatchNorm)."""
    return isinstance(getattr(m, "branches", None), nn.ModuleList)


@torch.no_grad()
def merge_branches(m: nn.Module) -> nn.Module:
    """One conv equal to the sum of parallel convs (TENet's multi-kernel depthwise, each BN folded first)
    that differ only in their odd, 'same'-padded kernel length along the first spatial axis: every kernel is
    zero-padded at both ends of that axis to the longest. With padding k // 2 an odd kernel's centre tap
    reads the same input position at any stride, so the padded kernels line up; weights and biases add.
    Exact, and only the longest kernel is deployed."""
    convs = [_plain(b) for b in m.branches]
    big = max(convs, key=lambda c: c.kernel_size[0])

    def shape(c: nn.Module) -> tuple:
        return (type(c), c.stride, c.groups, c.dilation, c.in_channels, c.out_channels, c.kernel_size[1:],
                c.padding[1:])

    if not all(shape(c) == shape(big) and c.kernel_size[0] % 2 and c.padding[0] == c.kernel_size[0] // 2
               and set(c.dilation) == {1} for c in convs):
        raise ValueError("only convs differing in their odd, 'same'-padded first kernel length can merge")
    out = copy.deepcopy(big)
    weight, bias = torch.zeros_like(big.weight), torch.zeros(big.out_channels, dtype=big.weight.dtype)
    n = big.kernel_size[0]
    for c in convs:
        pad = (n - c.kernel_size[0]) // 2
        weight[:, :, pad:n - pad] += c.weight
        if c.bias is not None:
            bias += c.bias
    out.weight, out.bias = nn.Parameter(weight), nn.Parameter(bias)
    return out


def _plain(m: nn.Module) -> nn.Module:
    """A Conv/Linear, or a Sequential(Conv/Linear, BatchNorm) (PB's wrapped conv+BN unit) folded into one."""
    if isinstance(m, nn.Sequential) and len(m) == 2:
        return fold_bn(m[0], m[1])
    if isinstance(m, LAYER_TYPES):
        return m
    raise TypeError(f"cannot fold a dendritic layer around {type(m).__name__}")


def _stack(layers: list[nn.Module]) -> nn.Module:
    """One layer whose output channels are the given same-shaped layers' outputs, concatenated in order."""
    first = layers[0]
    if getattr(first, "groups", 1) != 1:
        raise ValueError("grouped convolutions cannot be stacked along the output channels")
    stacked = copy.deepcopy(first)
    zero_bias = torch.zeros(first.weight.shape[0], dtype=first.weight.dtype)
    with torch.no_grad():
        stacked.weight = nn.Parameter(torch.cat([m.weight for m in layers]))
        stacked.bias = nn.Parameter(torch.cat([zero_bias if m.bias is None else m.bias for m in layers]))
    if isinstance(stacked, nn.Linear):
        stacked.out_features = stacked.weight.shape[0]
    else:
        stacked.out_channels = stacked.weight.shape[0]
    return stacked


def _rows(layer: nn.Module, idx: torch.Tensor) -> nn.Module:
    """A copy of `layer` with only the output channels `idx`, in that order."""
    out = copy.deepcopy(layer)
    with torch.no_grad():
        out.weight = nn.Parameter(layer.weight[idx].clone())
        if layer.bias is not None:
            out.bias = nn.Parameter(layer.bias[idx].clone())
    if isinstance(out, nn.Linear):
        out.out_features = len(idx)
    else:
        out.out_channels = len(idx)
    return out


def _scaled(layer: nn.Module, s: torch.Tensor) -> nn.Module:
    """A copy of `layer` with every output channel c multiplied by s[c] (weights and bias)."""
    out = copy.deepcopy(layer)
    with torch.no_grad():
        out.weight.mul_(s.view(-1, *[1] * (out.weight.dim() - 1)))
        if out.bias is not None:
            out.bias.mul_(s)
    return out


class FoldedDendriticLayer(nn.Module):
    """Export form of a dendritic layer: Conv/Linear with n_1 + ... + n_k + C outputs -> split -> f ->
    per-channel Mul/Add (-> Gather back into the neurons' order).

    Chunks 0..k-1 are the dendrites (n_j channels each, a prefix of the neurons in `order`; n_j = C without
    selective installation), chunk k the neurons. `cascade_src[j]` lists the earlier dendrites i whose
    cascade weight into dendrite j is non-zero (zero ones are dropped: x + 0*a == x exactly); `out_weights[j]`
    is None when it is all ones (ReLU fold with positive T), so no Mul is emitted, and all zeros when the
    dendrite only feeds later dendrites' cascades: then no Mul/Add either (that product would be a constant
    zero tensor, whose ~zero int8 range TFLite's kernels reject).
    """

    def __init__(self, layer: nn.Module, k: int, activation: str, out_weights: list[torch.Tensor | None],
                 cascade: list[list[tuple[int, torch.Tensor]]], widths: list[int] | None = None,
                 order: torch.Tensor | None = None, dendrite_layer: nn.Module | None = None):
        super().__init__()
        self.layer, self.k, self.activation = layer, k, activation
        # dendrites that read the input differently (dilated, resized) are their own stacked layer beside it
        self.dendrite_layer = dendrite_layer
        rows = layer.weight.shape[0]
        if dendrite_layer is not None:
            self.channels = rows
        else:
            self.channels = rows - sum(widths) if widths else rows // (k + 1)
        self.widths = widths or [self.channels] * k
        # int32 indices (TFLite Micro's GATHER takes no int64), a constant counted as params
        self.order = None if order is None else nn.Parameter(order.to(torch.int32), requires_grad=False)
        view = (1, -1, *[1] * (layer.weight.dim() - 2))  # broadcast [C] over [B, C, ...]
        self.adds = [t is None or bool((t != 0).any()) for t in out_weights]  # False: T_j == 0, no term
        self.has_out = [t is not None and add for t, add in zip(out_weights, self.adds)]

        def const(v: torch.Tensor) -> nn.Parameter:
            return nn.Parameter(v.reshape(view).clone(), requires_grad=False)

        self.out_weights = nn.ParameterList([const(t) for t, has in zip(out_weights, self.has_out) if has])
        self.cascade_src = [[i for i, _ in terms] for terms in cascade]
        self.cascade = nn.ParameterList([const(u) for terms in cascade for _, u in terms])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = ACTIVATIONS[self.activation]
        if self.dendrite_layer is None:
            z = torch.split(self.layer(x), [*self.widths, self.channels], dim=1)
        else:
            z = [*torch.split(self.dendrite_layer(x), self.widths, dim=1), self.layer(x)]
        y, acts, n = z[self.k], [], self.widths
        outs, casc = iter(self.out_weights), iter(self.cascade)
        for j in range(self.k):
            p = z[j]
            for i in self.cascade_src[j]:
                p = p + next(casc) * (acts[i] if n[i] == n[j] else torch.split(acts[i], [n[j], n[i] - n[j]], 1)[0])
            acts.append(f(p))
            if self.adds[j]:
                term = next(outs) * acts[j] if self.has_out[j] else acts[j]
                if n[j] == self.channels:
                    y = y + term
                else:  # the dendrite's channels are the first n_j (in `order`)
                    head, tail = torch.split(y, [n[j], self.channels - n[j]], 1)
                    y = torch.cat([head + term, tail], 1)
        return y if self.order is None else torch.index_select(y, 1, self.order)

    def extra_repr(self) -> str:
        return f"dendrites={self.k}, activation={self.activation}"


@torch.no_grad()
def _merged_linear(main: nn.Module, dendrites: list[nn.Module], t: list[torch.Tensor],
                   u: list[torch.Tensor]) -> nn.Module:
    """Linear (identity) dendrites are affine maps of the layer's input: a_j = D_j x + sum_i U_j[i] a_i has the
    weights A_j = D_j + sum_i U_j[i] * A_i (per output channel), and y = M x + sum_j T_j a_j is one layer with
    M + sum_j T_j * A_j. Exact, and nothing of the dendrites is left to deploy."""
    merged = [_scaled(dendrites[0], torch.ones_like(t[0]))]
    for j in range(1, len(dendrites)):
        w, b = dendrites[j].weight.clone(), dendrites[j].bias.clone()
        for i in range(j):
            w += u[j][i].view(-1, *[1] * (w.dim() - 1)) * merged[i].weight
            b += u[j][i] * merged[i].bias
        merged.append(copy.deepcopy(dendrites[j]))
        merged[-1].weight, merged[-1].bias = nn.Parameter(w), nn.Parameter(b)
    out = copy.deepcopy(main)
    for tj, aj in zip(t, merged):
        out.weight += tj.view(-1, *[1] * (out.weight.dim() - 1)) * aj.weight
        out.bias += tj * aj.bias
    return out


def fold_dendritic(d: nn.Module) -> nn.Module:
    """The folded equivalent of one dendritic layer (its plain main layer when it has no dendrites)."""
    main = _plain(d.main)
    k = len(d.dendrites)
    if k == 0:
        return copy.deepcopy(main)
    if d.activation == "linear":
        return _merged_linear(main, [_plain(m) for m in d.dendrites], [w.detach() for w in d.out_weights],
                              [w.detach() for w in d.cascade])
    if d.activation not in ACTIVATIONS:
        raise ValueError(f"cannot fold dendrite activation {d.activation!r}")
    dendrites = [_plain(m) for m in d.dendrites]
    t = [w.detach().clone() for w in d.out_weights]
    u = [w.detach().clone() for w in d.cascade]  # u[j] has shape [j, C]
    if d.activation == "relu":
        # t * relu(p) = (t/s) * relu(s*p) for s > 0: scale dendrite j by s_j = |t_j| (1 where t_j == 0), so
        # only a sign (or zero) stays on the output; a cascade weight from i into j becomes
        # U_j[i] * s_j / s_i.
        s = [torch.where(tj != 0, tj.abs(), torch.ones_like(tj)) for tj in t]
        dendrites = [_scaled(m, sj) for m, sj in zip(dendrites, s)]
        u = [uj * s[j] / torch.stack(s[:j]) if j else uj for j, uj in enumerate(u)]
        t = [tj / sj for tj, sj in zip(t, s)]
    widths, order = None, None
    if hasattr(d, "installed_channels"):  # selective installation: deploy the installed channels only
        masks = d.installed_channels()
        widths = [n for n in (int(m.sum()) for m in masks) if n]  # (nested: empty dendrites are the last)
        k = len(widths)
        if k == 0:  # installed on no neuron at all: nothing to deploy
            return copy.deepcopy(main)
        perm = d.channel_order(masks)
        if perm is not None:
            main = _rows(main, perm)
            order = torch.argsort(perm)
        idx = torch.arange(main.weight.shape[0]) if perm is None else perm
        dendrites = [_rows(m, idx[:n]) for m, n in zip(dendrites, widths)]
        t = [tj[idx[:n]] for tj, n in zip(t, widths)]
        u = [uj[:, idx[:n]] for uj, n in zip(u, widths)]
    out = [None if bool((tj == 1).all()) else tj for tj in t]
    cascade = [[(i, uj[i]) for i in range(j) if bool((uj[i] != 0).any())] for j, uj in enumerate(u)]
    if _reads_like(dendrites[0], main):
        return FoldedDendriticLayer(_stack(dendrites + [main]), k, d.activation, out, cascade, widths, order)
    return FoldedDendriticLayer(main, k, d.activation, out, cascade, widths, order, dendrite_layer=_stack(dendrites))


def _reads_like(a: nn.Module, b: nn.Module) -> bool:
    """Whether two layers read their input the same way (so they stack into one): not so for a dilated
    dendrite beside its neurons."""
    return all(getattr(a, n, None) == getattr(b, n, None) for n in ("kernel_size", "dilation", "padding", "stride"))


def _replace(module: nn.Module, match, fold) -> None:
    """In place: every submodule `match`es (outermost first) becomes `fold(submodule)`."""
    for name, child in module.named_children():
        if match(child):
            setattr(module, name, fold(child))
        else:
            _replace(child, match, fold)


@torch.no_grad()
def fold_model(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy with every dendritic layer folded (plain layer when it has 0 dendrites), every
    Sequential Conv/Linear+BatchNorm pair fused (also a BatchNorm after a dendritic layer) and every
    multi-branch conv merged into one. The original model is left untouched."""
    folded = copy.deepcopy(model).eval()
    absorb_batchnorms(folded)
    _replace(folded, is_multi_branch, merge_branches)
    if is_dendritic(folded):
        folded = fold_dendritic(folded).eval()
    _replace(folded, is_dendritic, fold_dendritic)
    fold_batchnorms(folded)
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


def _without(d: nn.Module, x: torch.Tensor, skips: list[set[int]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(y, [y with the dendrites in skips[i] removed, for each i]) of one dendritic layer on its input x: the
    layer's own maths (y = M(x) + sum_j T_j * a_j, a_j = f(D_j(x) + sum_{i<j} U_j[i] * a_i)); removing j
    drops its term and its cascade inputs into the later dendrites, so a later dendrite's change counts too."""
    f = ACTIVATIONS[d.activation]
    main = d.main(x)
    view = (1, -1, *[1] * (main.dim() - 2))
    z = [m(x) for m in d.dendrites]

    def run(skip: set[int]) -> torch.Tensor:
        y, acts = main, []
        for j, zj in enumerate(z):
            if j in skip:
                acts.append(None)
                continue
            p = zj
            for i in range(j):
                if acts[i] is not None:
                    p = p + d.cascade[j][i].view(view) * acts[i]
            acts.append(f(p))
            y = y + d.out_weights[j].view(view) * acts[j]
        return y

    return run(set()), [run(s) for s in skips]


def _remove_dendrites(d: nn.Module, dead: set[int]) -> None:
    """In place: drop dendrites `dead` with their T, and their columns in the later dendrites' cascades U."""
    keep = [j for j in range(len(d.dendrites)) if j not in dead]
    cascade = []
    for j in keep:
        cols = torch.as_tensor([i for i in keep if i < j], dtype=torch.long, device=d.cascade[j].device)
        u = d.cascade[j]
        cascade.append(nn.Parameter(u.detach()[cols].clone(), requires_grad=u.requires_grad))
    d.dendrites = nn.ModuleList([d.dendrites[j] for j in keep])
    d.out_weights = nn.ParameterList([d.out_weights[j] for j in keep])
    d.cascade = nn.ParameterList(cascade)


@torch.no_grad()
def _changes(model: nn.Module, layers: dict[str, nn.Module], skips: dict[str, list[set[int]]],
             rows: list[torch.Tensor], chunk: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per dendritic layer: the int8 step of its output (its calibrated range [min(y, 0), max(y, 0)] / 255)
    and, for each set in skips[layer], the largest |change| of its output when that set is removed, over
    all the rows, channels and positions."""
    lo, hi = dict.fromkeys(layers, 0.0), dict.fromkeys(layers, 0.0)
    change = {n: [0.0] * len(skips[n]) for n in layers}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
            y, without = _without(module, inputs[0], skips[name])
            lo[name], hi[name] = min(lo[name], y.min().item()), max(hi[name], y.max().item())
            change[name] = [max(c, (y - w).abs().max().item()) for c, w in zip(change[name], without)]
        return record

    handles = [layer.register_forward_hook(hook(n)) for n, layer in layers.items()]
    try:
        for x in rows:
            for part in torch.split(x, chunk):
                model(part)
    finally:
        for h in handles:
            h.remove()
    return {n: (hi[n] - lo[n]) / 255 for n in layers}, change


@torch.no_grad()
def drop_negligible_dendrites(model: nn.Module, rows: list[torch.Tensor], steps: float = 0.5,
                              chunk: int = 256) -> tuple[nn.Module, dict[str, int]]:
    """(model without its negligible dendrites, {dendritic layer name: dendrites dropped}).

    The dendrites dropped from a layer are, together, worth less than `steps` int8 steps of that layer's
    output on the given rows (its int8 step: the output's range over the rows, with 0, / 255): removing them
    (their terms T_j * a_j and their cascade inputs into later dendrites) moves no output value by more
    than that, on any row, channel or position. A dendrite that never fires or has T = 0 is the extreme
    case. The int8 model cannot represent such a contribution, and the converter calibrates its tensors to
    a ~zero range whose requantisation (the next ADD's output multiplier) TFLite's kernels reject: LiteRT
    and TFLite Micro abort the process in allocate_tensors. The smallest contributions go first; the set is
    checked as a whole (cascades make removals interact) and shrunk until it fits.

    The caller's model is never changed: a model without dendritic layers is returned as is, any other as an
    eval-mode deep copy (also when nothing is dropped), with any BatchNorm after a dendritic layer absorbed
    into it (exact), so the int8 steps are those of the output the export quantizes. Layers with an
    activation the fold does not know are left for fold_model to reject.
    """
    names = [n for n, m in model.named_modules() if is_dendritic(m) and len(m.dendrites)
             and m.activation in ACTIVATIONS]
    if not names:
        return model, {}
    pruned = absorb_batchnorms(copy.deepcopy(model).eval())  # measure what int8 sees: the output after BN
    layers = {n: pruned.get_submodule(n) for n in names}
    step, alone = _changes(pruned, layers, {n: [{j} for j in range(len(layers[n].dendrites))] for n in names},
                           rows, chunk)
    chosen: dict[str, set[int]] = {}
    for n in names:
        budget, total, pick = steps * step[n], 0.0, set()
        for j in sorted(range(len(alone[n])), key=lambda j: alone[n][j]):
            if total + alone[n][j] > budget:
                break
            total += alone[n][j]
            pick.add(j)
        chosen[n] = pick
    # Two or more chosen in a layer: check them together (the sum of single changes is only a guide); one
    # alone was measured already.
    while any(len(c) > 1 for c in chosen.values()):
        _, joint = _changes(pruned, layers, {n: [chosen[n]] for n in names}, rows, chunk)
        over = [n for n in names if len(chosen[n]) > 1 and joint[n][0] > steps * step[n]]
        if not over:
            break
        for n in over:
            chosen[n].discard(max(chosen[n], key=lambda j: alone[n][j]))
    for n in names:
        if chosen[n]:
            _remove_dendrites(layers[n], chosen[n])
    return pruned, {n: len(chosen[n]) for n in names}
