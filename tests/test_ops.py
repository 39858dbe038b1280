"""The fused training ops (dendritic/ops.py) must match the reference ops they replace, gradients included."""
import itertools

import pytest
import torch
from torch import nn

from dendritic.layer import DendriticLayer
from dendritic.ops import block_backward, block_forward
from kws.nets.convfc import KWSNet, preset

LAYERS = {
    "linear": lambda: nn.Linear(7, 5),
    "conv1d": lambda: nn.Conv1d(4, 5, 3, padding=1),
    "conv1d-k5-valid": lambda: nn.Conv1d(4, 5, 5, padding=0),
    "conv2d": lambda: nn.Conv2d(2, 5, 3, padding=1),
}
INPUTS = {"linear": (6, 7), "conv1d": (6, 4, 11), "conv1d-k5-valid": (6, 4, 11), "conv2d": (6, 2, 7, 5)}


def _layer(kind: str, k: int, activation: str, perforated: bool) -> DendriticLayer:
    torch.manual_seed(k)
    layer = DendriticLayer(LAYERS[kind](), activation=activation, init_mult=0.5).double()
    for _ in range(k):
        layer.add_dendrite()
    with torch.no_grad():  # non-zero T and U so every gradient path is exercised
        for p in [*layer.out_weights, *layer.cascade]:
            p.copy_(torch.randn_like(p))
    layer.perforated = perforated
    return layer


def _grads(layer: DendriticLayer, x: torch.Tensor, fused: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    layer.train(fused)
    y = layer(x) if fused else layer.reference_forward(x)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    return torch.cat([y.flatten(), x.grad.flatten()]), [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("kind,k,activation,perforated", [
    *itertools.product(LAYERS, [0, 1, 3], ["relu", "tanh", "sigmoid", "linear"], [False, True])])
def test_fused_layer_matches_reference(kind, k, activation, perforated):
    layer = _layer(kind, k, activation, perforated)
    x = torch.randn(*INPUTS[kind], dtype=torch.float64)
    out_f, grads_f = _grads(layer, x, fused=True)
    out_r, grads_r = _grads(layer, x, fused=False)
    torch.testing.assert_close(out_f, out_r, rtol=1e-10, atol=1e-12)
    assert len(grads_f) == len(grads_r) == 2 * (k + 1) + k + k
    for gf, gr in zip(grads_f, grads_r):
        torch.testing.assert_close(gf, gr, rtol=1e-10, atol=1e-12)


def test_frozen_dendrites_get_no_gradient():
    """CC neuron phase without dendrite updates: only the neurons and T train."""
    layer = _layer("conv1d", 2, "relu", True)
    for p in [p for d in layer.dendrites for p in d.parameters()] + list(layer.cascade):
        p.requires_grad_(False)
    layer.train()
    layer(torch.randn(3, 4, 11, dtype=torch.float64)).sum().backward()
    assert all(p.grad is None for d in layer.dendrites for p in d.parameters())
    assert layer.main.weight.grad is not None and all(t.grad is not None for t in layer.out_weights)


@pytest.mark.parametrize("pad_right,length", [(0, 10), (1, 11), (0, 11)])
def test_relu_pool_block_matches_reference(pad_right, length):
    """'same' pads odd lengths with a zero, 'floor' drops the last step; no dropout. The block works
    channels-last ([B, L, C]), the reference on [B, C, L]."""
    x = torch.randn(4, 3, length, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, (length + pad_right) // 2, dtype=torch.float64)
    ref = nn.functional.max_pool1d(nn.functional.pad(torch.relu(x), (0, pad_right)), 2)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    out, saved = block_forward(x.detach().transpose(1, 2), (pad_right,), 0.0)
    g_out = block_backward(w.transpose(1, 2), saved)
    torch.testing.assert_close(out.transpose(1, 2), ref.detach())
    torch.testing.assert_close(g_out.transpose(1, 2), g_ref)


def test_dropout_drops_and_rescales_consistently():
    torch.manual_seed(0)
    x = torch.rand(200, 50) + 0.1  # all positive: ReLU keeps everything
    out, saved = block_forward(x, None, 0.25)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(out[kept], x[kept] / 0.75)
    torch.testing.assert_close(block_backward(torch.ones_like(x), saved), kept.float() / 0.75)


def test_kwsnet_training_forward_matches_eval_without_noise_or_dropout():
    """With dropout and noise off, train mode and eval mode are one function (plain layers)."""
    torch.manual_seed(0)
    net = KWSNet(preset("ei-default", 650, 3, dropout=0.0)).double()
    x = torch.randn(5, 650, dtype=torch.float64)
    outs = []
    for train in (True, False):
        net.train(train)
        net.zero_grad()
        y = net(x)
        y.square().sum().backward()
        outs.append((y, [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("overrides,activation,perforated", [
    ({}, "relu", False),
    ({"conv_layers": 3, "pool": "floor", "linear_layers": 2}, "tanh", True),
    ({"conv_layers": 3, "pool": "same", "linear_layers": 3, "kernel_size": 5}, "sigmoid", False),
    ({"conv_type": "conv2d", "conv_layers": 2, "pool": "same", "linear_layers": 2}, "tanh", True),
    ({"conv_type": "conv2d", "conv_layers": 3, "pool": "floor", "kernel_size": 5}, "relu", False),
])
def test_tape_step_matches_autograd(overrides, activation, perforated):
    """KWSNet.cross_entropy_step (no autograd) gives autograd's loss and gradients on the reference ops."""
    from dendritic.layer import DendriticLayer as DL
    from dendritic.pb import wrap_layers

    torch.manual_seed(1)
    net = KWSNet(preset("ei-default", 650, 4, dropout=0.0, **overrides)).double()
    layers = wrap_layers(net, "all", activation, 0.5)
    for layer in layers.values():
        for _ in range(2):
            layer.add_dendrite()
        layer.perforated = perforated
        with torch.no_grad():
            for p in [*layer.out_weights, *layer.cascade]:
                p.copy_(torch.randn_like(p))
    assert all(isinstance(m, DL) for m in layers.values())
    x, y = torch.randn(9, 650, dtype=torch.float64), torch.randint(0, 4, (9,))
    net.eval()  # reference ops; with dropout and noise off the function is the same
    net.zero_grad(set_to_none=True)
    ref_loss = nn.functional.cross_entropy(net(x), y)
    ref_loss.backward()
    ref = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.train()  # no zero_grad: the pass sets .grad, it does not add to the reference run's gradients
    loss, _ = net.cross_entropy_step(x, y)
    got = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    torch.testing.assert_close(loss, ref_loss.detach())
    assert got.keys() == ref.keys()
    for name, expected in ref.items():
        torch.testing.assert_close(got[name], expected, msg=name)


@pytest.mark.parametrize("pad", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_2x2_pool_block_matches_max_pool2d(pad):
    """Conv2d's block: two 2x pools (H, then W) equal max_pool2d after the same zero padding, both ways."""
    h, w = 6 + pad[0], 5 + pad[1]
    x = torch.randn(3, 2, h, w, dtype=torch.float64, requires_grad=True)
    pads = (1 if h % 2 else 0, 1 if w % 2 else 0)  # 'same': pad odd sizes
    ref = nn.functional.max_pool2d(nn.functional.pad(torch.relu(x), (0, pads[1], 0, pads[0])), 2)
    weights = torch.randn_like(ref)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), x)
    out, saved = block_forward(x.detach().movedim(1, -1), pads, 0.0)
    torch.testing.assert_close(out.movedim(-1, 1), ref.detach())
    torch.testing.assert_close(block_backward(weights.movedim(1, -1), saved).movedim(-1, 1), g_ref)


@pytest.mark.parametrize("pool", [1, 3])
def test_tape_feeds_cc_candidates_like_the_autograd_path(pool: int):
    """Dendrite phase: the Tape's pass gives every candidate (a pool of them per neuron too) the same output,
    neuron error and hence the same correlation gradient as the reference path's hooks."""
    from dendritic import cc
    from dendritic.pb import wrap_layers

    torch.manual_seed(2)
    net = KWSNet(preset("ei-default", 650, 3, dropout=0.0, linear_layers=2)).double()
    layers = list(wrap_layers(net, "all", "tanh", 0.5).values())
    for layer in layers:
        layer.add_dendrite()
        layer.perforated = True
        with torch.no_grad():
            layer.out_weights[0].normal_()
    for p in net.parameters():
        p.requires_grad_(False)
    for layer in layers:
        for p in cc.begin_candidates(layer, pool):
            with torch.no_grad():
                p.normal_()
    x, y = torch.randn(7, 650, dtype=torch.float64), torch.randint(0, 3, (7,))
    net.train()

    def candidate_grads() -> list[torch.Tensor]:
        cands = [p for layer in layers for p in layer.candidate.parameters()]
        for p in cands:
            p.grad = None
        cc.candidate_backward(layers)
        for layer in layers:
            layer.candidate.batches = 0
        return [p.grad.clone() for p in cands]

    nn.functional.cross_entropy(net(x), y).backward()  # reference ops (a candidate is present)
    ref = candidate_grads()
    assert net.cross_entropy_step(x, y) is not None
    got = candidate_grads()
    assert len(got) == len(ref) == 4 * 3
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)
    # a Tape pass whose candidates were never stepped must not capture a later autograd pass's gradient
    assert net.cross_entropy_step(torch.randn_like(x), y) is not None
    nn.functional.cross_entropy(net(x), y).backward()
    for a, b in zip(candidate_grads(), ref):
        torch.testing.assert_close(a, b)
