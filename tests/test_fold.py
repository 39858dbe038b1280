"""Folding is exact: folded vs unfolded torch outputs for every dendrite count, style, layer type and
activation, plus the BatchNorm fold on a toy model. Pure torch, fast."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dendritic.layer import DendriticLayer
from export.fold import fold_bn, fold_model, is_dendritic
from kws.nets.convfc import KWSNet, preset

N_FEATURES, N_CLASSES = 650, 3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These forwards are tiny: torch's thread pool only adds contention on a shared 2-core machine (15x
    slower measured under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def wrap_all(net: KWSNet, activation: str, k: int, style: str) -> KWSNet:
    """Wrap every conv and linear of `net` with k dendrites that have trained-looking weights (the scale of
    the neuron weights) and random non-zero T. GD: zero cascade; CC: random cascade. Uses the torch RNG."""
    for slots in (net.convs, net.linears):
        for idx, layer in enumerate(slots):
            d = DendriticLayer(layer, activation)
            for _ in range(k):
                d.add_dendrite()
            with torch.no_grad():
                for j in range(k):
                    d.out_weights[j].copy_(torch.randn_like(d.out_weights[j]) * 0.5)
                    if style == "cc":
                        d.cascade[j].copy_(torch.randn_like(d.cascade[j]) * 0.5)
                    for p in d.dendrites[j].parameters():
                        p.copy_(torch.randn_like(p) * layer.weight.std())
            slots[idx] = d
    return net.eval()


def dendritic_net(conv_type: str, activation: str, k: int, style: str, seed: int = 0,
                  linear_layers: int = 2) -> KWSNet:
    """An ei-default-shaped KWSNet with every layer wrapped (see wrap_all)."""
    torch.manual_seed(seed)
    cfg = preset("ei-default", N_FEATURES, N_CLASSES, conv_type=conv_type, linear_layers=linear_layers)
    return wrap_all(KWSNet(cfg), activation, k, style)


def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def without_dendrites(net: KWSNet) -> KWSNet:
    plain = copy.deepcopy(net)
    for slots in (plain.convs, plain.linears):
        for idx, layer in enumerate(slots):
            slots[idx] = getattr(layer, "main", layer)  # unwrapped layers (a narrower scope) stay
    return plain


def foreign_modules(model: nn.Module) -> list[str]:
    """Inner modules whose class comes from the dendritic package but not from the file that defines the
    outer network (KWSNet and its Pool are the architecture; the PB library must not reach the export)."""
    home = type(model).__module__
    return [f"{n}: {type(m).__module__}.{type(m).__name__}" for n, m in model.named_modules()
            if n and type(m).__module__.split(".")[0] == "dendritic" and type(m).__module__ != home]


def grown(cfg, k: int, conv_type: str = "conv1d", mixed_signs: bool = False):
    """A DendriticModel on an ei-default KWSNet with k dendrites on every wrapped layer and every dendrite
    parameter (T and U included) drawn N(0, 0.2). mixed_signs: T > 0 on neurons 0 and 5 only, < 0 elsewhere
    (a ReLU fold leaves out the Mul of an all-(+1) T row, which would change the count)."""
    from dendritic import DendriticModel

    dm = DendriticModel(KWSNet(preset("ei-default", N_FEATURES, N_CLASSES, conv_type=conv_type)), cfg)
    add_dendrites(dm, k)
    if mixed_signs:
        with torch.no_grad():
            for layer in dm.layers.values():
                sign = torch.tensor([1.0 if c in (0, 5) else -1.0 for c in range(layer.num_neurons)])
                for t in layer.out_weights:
                    t.abs_().mul_(sign)
    return dm


def add_dendrites(dm, k: int) -> None:
    """k dendrites on every wrapped layer of DendriticModel `dm`, every dendrite parameter (T, U and the
    copies) drawn N(0, 0.2) from the torch RNG."""
    for layer in dm.layers.values():
        for _ in range(k):
            layer.add_dendrite()
        with torch.no_grad():
            for p in [*layer.out_weights, *layer.cascade, *layer.dendrite_parameters()]:
                p.normal_(std=0.2)


@pytest.mark.parametrize("conv_type", ["conv1d", "conv2d"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("style", ["gd", "cc"])
def test_fold_is_exact(conv_type: str, activation: str, style: str) -> None:
    x = torch.randn(16, N_FEATURES)
    for k in range(1, 5):
        net = dendritic_net(conv_type, activation, k, style, seed=k)
        folded = fold_model(net)
        diff = max_diff(net, folded, x)
        assert diff <= 1e-5, f"k={k}: folded differs by {diff:.2e}"
        assert max_diff(folded, without_dendrites(net), x) > 1e-3, "dendrites too weak for a meaningful test"
        assert foreign_modules(folded) == []
        assert not any(is_dendritic(m) for m in folded.modules())
        # Conv1d, Conv2d and Linear are all folded: one stacked layer with (k+1)*C outputs per slot.
        assert folded.convs[0].layer.weight.shape[0] == (k + 1) * net.convs[0].main.weight.shape[0]
        assert folded.linears[-1].layer.weight.shape[0] == (k + 1) * N_CLASSES


def test_fold_leaves_original_untouched_and_zero_dendrites_become_plain() -> None:
    net = dendritic_net("conv1d", "tanh", 2, "cc")
    before = {n: p.clone() for n, p in net.state_dict().items()}
    net.linears[0] = DendriticLayer(net.linears[0].main, "tanh")  # wrapped, no dendrites
    folded = fold_model(net)
    assert type(folded.linears[0]) is nn.Linear
    assert all(torch.equal(before[n], p) for n, p in net.state_dict().items() if n in before)
    assert max_diff(net, folded, torch.randn(4, N_FEATURES)) <= 1e-5


def test_relu_fold_keeps_only_signs() -> None:
    net = dendritic_net("conv1d", "relu", 3, "cc")
    with torch.no_grad():
        net.convs[0].out_weights[1][0] = 0.0  # a zero T entry must survive the |T| fold
    folded = fold_model(net)
    for slot in list(folded.convs) + list(folded.linears):
        for t in slot.out_weights:
            assert set(t.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert max_diff(net, folded, torch.randn(8, N_FEATURES)) <= 1e-5


def test_gd_cascade_is_dropped() -> None:
    folded = fold_model(dendritic_net("conv1d", "tanh", 3, "gd"))
    assert all(src == [] for src in folded.convs[0].cascade_src)
    assert len(folded.convs[0].cascade) == 0


def _randomise_bn(bn: nn.Module) -> None:
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn_like(bn.running_mean))
        bn.running_var.copy_(torch.rand_like(bn.running_var) + 0.5)
        bn.weight.copy_(torch.randn_like(bn.weight))
        bn.bias.copy_(torch.randn_like(bn.bias))


def test_bn_fold_on_toy_model() -> None:
    torch.manual_seed(0)
    toy = nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.BatchNorm1d(6), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6 * 10, 5, bias=False), nn.BatchNorm1d(5))
    conv2 = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    for bn in (toy[1], toy[5], conv2[1]):
        _randomise_bn(bn)
    toy.eval(), conv2.eval()
    folded = fold_model(toy)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert max_diff(toy, folded, torch.randn(7, 4, 10)) <= 1e-5
    fused = fold_bn(conv2[0], conv2[1])
    assert max_diff(conv2, fused, torch.randn(3, 2, 8, 8)) <= 1e-5


def test_bn_inside_dendritic_unit_is_folded() -> None:
    """PB wraps conv+BN units; each copy's BN is folded into its own conv before stacking."""
    torch.manual_seed(1)

    class Unit(nn.Module):  # stand-in dendritic layer whose main/dendrites are conv+BN Sequentials
        def __init__(self) -> None:
            super().__init__()
            self.main = nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.BatchNorm1d(4))
            self.dendrites = nn.ModuleList([nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.BatchNorm1d(4))])
            self.out_weights = nn.ParameterList([nn.Parameter(torch.randn(4))])
            self.cascade = nn.ParameterList([nn.Parameter(torch.zeros(0, 4))])
            self.activation = "sigmoid"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.main(x) + self.out_weights[0].view(1, -1, 1) * torch.sigmoid(self.dendrites[0](x))

    unit = Unit()
    for m in unit.modules():
        if isinstance(m, nn.BatchNorm1d):
            _randomise_bn(m)
    unit.eval()
    folded = fold_model(nn.Sequential(unit))
    assert max_diff(unit, folded, torch.randn(5, 3, 9)) <= 1e-5


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_conv_scope_folds_exactly_and_counts_its_params(activation: str, k: int) -> None:
    """scope 'conv' (dendrites on the convolutions only): exact fold, the classifier stays one plain layer,
    and the deployment formula is the folded model's true parameter count."""
    from dendritic import DendriticModel, PBConfig

    torch.manual_seed(k)
    dm = DendriticModel(KWSNet(preset("ei-default", N_FEATURES, N_CLASSES)),
                        PBConfig(mode="gd", scope="conv", activation=activation))
    assert list(dm.layers) == ["convs.0", "convs.1"]
    for layer in dm.layers.values():
        for _ in range(k):
            layer.add_dendrite()
        with torch.no_grad():
            for t in [*layer.out_weights, *layer.cascade]:  # non-zero U too, as CC installs it
                t.normal_()
    net = dm.net.eval()
    folded = fold_model(net)
    x = torch.randn(16, N_FEATURES)
    assert max_diff(net, folded, x) <= 1e-5
    assert type(folded.linears[0]) is nn.Linear
    assert sum(p.numel() for p in folded.parameters()) == dm.deployed_params()


@pytest.mark.parametrize("scope", ["conv", "all"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_linear_dendrites_fold_into_the_neurons_at_zero_deployed_params(scope: str, k: int) -> None:
    """A linear (identity) dendrite is an affine map of the layer's input, cascades included: the fold
    merges it into the neuron's own weights, exactly, and the deployed model is the plain net's size."""
    from dendritic import PBConfig
    from kws.nets.convfc import count_params

    torch.manual_seed(10 + k)
    base = count_params(KWSNet(preset("ei-default", N_FEATURES, N_CLASSES)))
    dm = grown(PBConfig(mode="cc", scope=scope, activation="linear"), k)
    net = dm.net.eval()
    folded = fold_model(net)
    x = torch.randn(16, N_FEATURES)
    assert max_diff(net, folded, x) <= 1e-5
    assert max_diff(folded, without_dendrites(net), x) > 1e-3  # the dendrites did change the function
    assert not any(is_dendritic(m) for m in folded.modules())
    assert sum(p.numel() for p in folded.parameters()) == dm.deployed_params() == base


def select_channels(layers, keep_first: list[int], keep_more: list[int]) -> None:
    """Selective installation's result, by hand: dendrite 0 on the neurons in keep_first, later dendrites on
    keep_more (a subset: nested); every other dendrite channel exactly zero, as cc.install_candidates
    leaves it."""
    for layer in layers:
        c = layer.num_neurons
        for j in range(layer.num_dendrites):
            keep = torch.zeros(c, dtype=torch.bool)
            keep[[i for i in (keep_first if j == 0 else keep_more) if i < c]] = True
            with torch.no_grad():
                for p in layer.dendrites[j].parameters():
                    p.mul_(keep.view(-1, *[1] * (p.dim() - 1)))
                layer.out_weights[j].mul_(keep)
                layer.cascade[j].mul_(keep)


@pytest.mark.parametrize("conv_type", ["conv1d", "conv2d"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_selective_installation_folds_exactly_and_deploys_only_installed_channels(conv_type: str, activation: str,
                                                                                   k: int) -> None:
    """Dendrite channels left exactly zero (neurons that did not get a dendrite) are left out of the folded
    layer: the stacked layer has n_1 + ... + n_k + C outputs, a GATHER restores the neuron order, the fold is
    exact and the deployment formula (with the C order indices) is the folded model's true count."""
    from dendritic import PBConfig

    torch.manual_seed(20 + k)
    dm = grown(PBConfig(mode="cc", scope="all", activation=activation), k, conv_type, mixed_signs=True)
    full = dm.deployed_params(k)
    select_channels(dm.layers.values(), keep_first=[5, 0, 2, 7], keep_more=[2, 7])
    net = dm.net.eval()
    folded = fold_model(net)
    x = torch.randn(16, N_FEATURES)
    assert max_diff(net, folded, x) <= 1e-5
    assert max_diff(folded, without_dendrites(net), x) > 1e-3
    counted = sum(p.numel() for p in folded.parameters())
    assert counted == dm.deployed_params() < full
    conv0 = folded.convs[0]
    widths = [4] + [2] * (k - 1)
    assert conv0.widths == widths and conv0.layer.weight.shape[0] == sum(widths) + conv0.channels == 8 + sum(widths)
    assert conv0.order is not None and conv0.order.dtype == torch.int32  # TFLite Micro's GATHER: int32
    assert folded.linears[-1].widths == [2] + [1] * (k - 1)  # 3 classes: neurons 0 and 2, then 2 only


def test_a_dendrite_installed_on_no_neuron_is_not_deployed() -> None:
    from dendritic import PBConfig

    torch.manual_seed(3)
    dm = grown(PBConfig(mode="cc", scope="conv"), 2)
    select_channels(dm.layers.values(), keep_first=[1, 3], keep_more=[])
    net = dm.net.eval()
    folded = fold_model(net)
    assert max_diff(net, folded, torch.randn(8, N_FEATURES)) <= 1e-5
    assert [m.widths for m in folded.convs] == [[2], [2]]
    assert sum(p.numel() for p in folded.parameters()) == dm.deployed_params()


def test_selective_installation_with_every_neuron_is_the_plain_fold() -> None:
    """Nothing left out: no GATHER and the classic (k+1)*C stacked layer."""
    net = dendritic_net("conv1d", "tanh", 2, "cc")
    folded = fold_model(net)
    assert all(getattr(m, "order", 1) is None for m in folded.modules() if hasattr(m, "widths"))
    assert folded.convs[0].layer.weight.shape[0] == 3 * net.convs[0].main.weight.shape[0]


READS = {"dilation 2": {"dilation": 2}, "pointwise": {"kernel": 1}, "kernel 5": {"kernel": 5},
         "kernel 5, dilation 2": {"kernel": 5, "dilation": 2}}


@pytest.mark.parametrize("conv_type", ["conv1d", "conv2d"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("reads", READS)
def test_distinct_dendrites_fold_exactly_and_count_their_params(conv_type: str, activation: str, k: int,
                                                                reads: str) -> None:
    """Conv dendrites that read the input differently from their neurons (a dilation, a pointwise or a
    longer kernel): a second stacked convolution beside the neurons', exact, and the deployment formula
    (with the dendrite's own kernel) is the true count."""
    from dendritic import PBConfig

    torch.manual_seed(30 + k)
    dm = grown(PBConfig(mode="cc", scope="all", activation=activation, **READS[reads]), k, conv_type,
               mixed_signs=True)
    spatial = 1 if conv_type == "conv1d" else 2
    dendrite = dm.layers["convs.0"].dendrites[0]
    assert dendrite.dilation == (READS[reads].get("dilation", 1),) * spatial
    assert dendrite.kernel_size == (READS[reads].get("kernel", 3),) * spatial
    assert not dm.layers["linears.0"].distinct  # (a Linear has no receptive field to change)
    net = dm.net.eval()
    folded = fold_model(net)
    x = torch.randn(16, N_FEATURES)
    assert max_diff(net, folded, x) <= 1e-5
    assert max_diff(folded, without_dendrites(net), x) > 1e-3
    conv0 = folded.convs[0]
    assert conv0.dendrite_layer.dilation == dendrite.dilation
    assert conv0.dendrite_layer.kernel_size == dendrite.kernel_size
    assert conv0.dendrite_layer.weight.shape[0] == k * conv0.layer.weight.shape[0]
    assert folded.linears[-1].dendrite_layer is None  # the classifier's copies still stack with it
    assert sum(p.numel() for p in folded.parameters()) == dm.deployed_params()
