"""Perforated Backpropagation: dendritic layer, CC rule, phase schedule, checkpoints and param counts."""
from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from torch import nn

from dendritic import (
    Action,
    DendriticLayer,
    DendriticModel,
    PBConfig,
    Phase,
    PhaseSchedule,
    ScheduleConfig,
    cc,
    deployed_params,
)
from dendritic.errors import ConfigError
from kws.nets.convfc import KWSNet, preset

torch.set_num_threads(1)

LAYERS = {
    "linear": (lambda: nn.Linear(6, 4), (8, 6)),
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), (8, 3, 10)),
    "conv2d": (lambda: nn.Conv2d(2, 4, 3, padding=1), (8, 2, 6, 5)),
}


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_adding_a_dendrite_preserves_the_function(kind, activation):
    torch.manual_seed(0)
    make, shape = LAYERS[kind]
    layer = DendriticLayer(make(), activation, init_mult=0.5)
    x = torch.randn(shape)
    before = layer(x)
    for _ in range(3):
        layer.add_dendrite()
        assert torch.equal(layer(x), before)
        with torch.no_grad():  # later dendrites must not be neutral by accident
            layer.out_weights[-1].normal_()
            layer.cascade[-1].normal_()
        before = layer(x)
    assert layer.num_dendrites == 3
    assert [tuple(u.shape) for u in layer.cascade] == [(0, 4), (1, 4), (2, 4)]


def test_cc_install_preserves_the_function():
    torch.manual_seed(0)
    layer = DendriticLayer(nn.Linear(6, 4))
    layer.add_dendrite()
    with torch.no_grad():
        layer.out_weights[0].fill_(0.7)
    x = torch.randn(8, 6)
    before = layer(x)
    cc.begin_candidates([layer][0])
    with torch.no_grad():
        layer.candidate.cascade.fill_(0.3)
    layer.train()
    # a candidate is not wired into y (the candidate phase runs the reference ops, the rest the fused op:
    # equal up to float rounding)
    torch.testing.assert_close(layer(x), before, rtol=1e-6, atol=1e-6)
    cc.end_candidate_epoch([layer])
    cc.install_candidates([layer])
    assert layer.num_dendrites == 2 and layer.candidate is None
    torch.testing.assert_close(layer(x), before, rtol=1e-6, atol=1e-6)


def _net_grads(perforated_dendrites: int, seed: int = 0, **pb) -> dict[str, torch.Tensor]:
    """Gradients of the first conv's neuron weights, with k installed CC dendrites in every layer (`pb`:
    more PBConfig fields, e.g. a dilation)."""
    torch.manual_seed(seed)
    net = KWSNet(preset("ei-default", 650, 3, dropout=0.0))
    dm = DendriticModel(net, PBConfig(mode="cc", **pb), schedule=ScheduleConfig())
    torch.manual_seed(1)
    for layer in dm.layers.values():
        for _ in range(perforated_dendrites):
            layer.add_dendrite()
            with torch.no_grad():
                layer.dendrites[-1].weight.normal_()
                layer.out_weights[-1].zero_()
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 650, generator=g), torch.randint(0, 3, (16,), generator=g)
    nn.functional.cross_entropy(dm(x), y).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if "main" in n and p.grad is not None}


def test_perforation_blocks_dendrite_error_into_earlier_layers():
    """With T = 0 the forward is unchanged; perforation means the backward is unchanged too, even though
    the dendrites' own weights are wildly different: no error flows through them into earlier layers."""
    plain, perforated = _net_grads(0), _net_grads(2)
    assert plain.keys() == perforated.keys()
    for name in plain:  # equal up to the rounding of the stacked (main + dendrites) matmul
        torch.testing.assert_close(perforated[name], plain[name], rtol=1e-5, atol=1e-8)


def test_perforation_with_nonzero_output_weights_leaves_earlier_layers_on_the_neuron_path():
    torch.manual_seed(0)
    conv = nn.Conv1d(2, 3, 3, padding=1)
    layer = DendriticLayer(nn.Linear(30, 2))
    layer.perforated = True
    layer.add_dendrite()
    with torch.no_grad():
        layer.out_weights[0].fill_(2.0)
    x = torch.randn(4, 2, 10)
    h = torch.relu(conv(x)).flatten(1)
    h.retain_grad()
    layer(h).sum().backward()
    # dL/dh must be exactly the neuron path W^T (sum over outputs), independent of the dendrite
    torch.testing.assert_close(h.grad, layer.main.weight.sum(0).expand_as(h), rtol=0, atol=1e-6)


def test_cc_correlation_rises_on_a_learnable_residual():
    """Neurons fit y = w.x; the residual 2 tanh(3 (x0 - 0.5)) is learnable by a tanh dendrite. Candidate
    training must drive the correlation with the neuron error up from a random start."""
    torch.manual_seed(0)
    x = torch.randn(512, 4)
    target = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 2 * torch.tanh(3 * (x[:, :1] - 0.5))
    net = nn.Sequential(nn.Linear(4, 1))
    dm = DendriticModel(net, PBConfig(mode="cc", scope="linear", init_mult=0.1, install_noise_ratio=3.0),
                        lambda ps: torch.optim.Adam(ps, lr=0.05),
                        ScheduleConfig(switch_patience=1, dendrite_patience=100,
                                       max_dendrite_epochs=100, improvement_threshold=0.5))
    dm.train()
    for _ in range(200):  # neuron phase: fit the linear part
        dm.training_step(x, target, nn.functional.mse_loss)
    assert dm.end_epoch(1.0).action is Action.CONTINUE
    assert dm.end_epoch(1.0).action is Action.START_DENDRITE_PHASE
    assert dm.phase is Phase.DENDRITE
    layer = next(iter(dm.layers.values()))
    scores = []
    for epoch in range(30):
        for i in range(0, 512, 64):
            dm.training_step(x[i:i + 64], target[i:i + 64], nn.functional.mse_loss)
        scores.append(float((layer.candidate.epoch_sum / layer.candidate.batches).abs().mean()))
        dm.end_epoch()
    assert scores[0] < 0.1 and scores[-1] > 0.5, scores
    assert all(b >= a - 1e-3 for a, b in pairwise(scores)), scores  # rises steadily
    # the measured noise level (the output against another sample's error) stays far below the real score,
    # so selective installation (ratio 3) keeps the neuron
    st = layer.candidate
    assert float(st.null_best[0]) < 0.1 and float(st.best_score[0]) > 0.5
    # the installed dendrite then lets the neuron phase beat the linear fit
    dm.schedule.dendrite_epochs = dm.schedule.cfg.max_dendrite_epochs - 1
    assert dm.end_epoch().action is Action.INSTALL_DENDRITES
    assert layer.installed_channels()[0].tolist() == [True]
    linear_mse = nn.functional.mse_loss(dm(x), target).item()
    for _ in range(300):
        dm.training_step(x, target, nn.functional.mse_loss)
    assert nn.functional.mse_loss(dm(x), target).item() < 0.5 * linear_mse


@pytest.mark.parametrize("shape", [(6, 4, 9), (40, 3)])
def test_closed_form_correlation_gradient_matches_autograd(shape):
    """cc.correlation_and_grad gives autograd's gradient of the Pearson correlation, and 0 (not NaN) for
    a dead candidate channel whose output is constant."""
    torch.manual_seed(0)
    v = torch.randn(*shape, dtype=torch.float64)
    v[:, 0] = 0.25  # dead channel
    e = torch.randn(*shape, dtype=torch.float64)
    w = torch.randn(shape[1], dtype=torch.float64)
    vg = v.clone().requires_grad_(True)
    rho_ref = cc.neuron_correlation(vg, e)
    (w * rho_ref).sum().backward()
    rho, drho = cc.correlation_and_grad(v, e)
    torch.testing.assert_close(rho, rho_ref.detach())
    scaled = drho * w.view(1, -1, *([1] * (len(shape) - 2)))
    torch.testing.assert_close(scaled[:, 1:], vg.grad[:, 1:])
    assert torch.equal(scaled[:, 0], torch.zeros_like(scaled[:, 0]))


def run_script(mode: str, cfg: ScheduleConfig, scores: list[float], corr_gains: list[bool] | None = None) -> list[str]:
    """Drive a PhaseSchedule with scripted validation scores; dendrite phases consume corr_gains."""
    s = PhaseSchedule(cfg, mode)
    gains = iter(corr_gains or [])
    events, it = [], iter(scores)
    while not s.done:
        if s.phase is Phase.DENDRITE:
            d = s.dendrite_epoch(next(gains, False))
        else:
            try:
                d = s.neuron_epoch(next(it))
            except StopIteration:
                break
        if d.action is not Action.CONTINUE:
            events.append(f"{d.action.value}{'(retry)' if d.retry else ''}->{s.dendrites}")
    return events


def test_schedule_traditional_is_early_stopping():
    mode, cfg = "traditional", ScheduleConfig(early_stopping_patience=3)
    assert run_script(mode, cfg, [0.5, 0.6, 0.6, 0.6, 0.6, 0.9]) == ["stop->0"]


@pytest.mark.parametrize("mode", ["gd", "cc"])
def test_schedule_without_room_for_a_dendrite_is_early_stopping(mode: str):
    """Sizing may leave a dendritic run no dendrite (block/sizing.py's floor): it then trains exactly like a
    traditional run, with its early-stopping patience, not the shorter switch patience."""
    cfg = ScheduleConfig(max_dendrites=0, switch_patience=2, early_stopping_patience=3)
    assert run_script(mode, cfg, [0.5, 0.6, 0.6, 0.6]) == []  # 2 stale epochs: a switch, were one allowed
    assert run_script(mode, cfg, [0.5, 0.6, 0.6, 0.6, 0.6, 0.9]) == ["stop->0"]  # 3: early stop


def test_schedule_gd_adds_until_max_then_stops():
    mode, cfg = "gd", ScheduleConfig(max_dendrites=2, switch_patience=2)
    scores = [0.5, 0.6, 0.6, 0.6,  # k=0 plateaus -> add
              0.7, 0.7, 0.7,  # k=1 beats 0.6 -> add
              0.8, 0.8, 0.8]  # k=2 beats 0.7, at max -> stop
    assert run_script(mode, cfg, scores) == ["add_dendrites->1", "add_dendrites->2", "stop->2"]


def test_schedule_cc_dendrite_phase_ends_on_correlation_plateau():
    mode, cfg = "cc", ScheduleConfig(max_dendrites=1, switch_patience=2, dendrite_patience=2)
    events = run_script(mode, cfg, [0.5, 0.5, 0.5, 0.7, 0.7, 0.7], corr_gains=[True, True, False, False])
    assert events == ["start_dendrite_phase->0", "install_dendrites->1", "stop->1"]


def test_schedule_retries_then_reverts_to_best():
    mode, cfg = "gd", ScheduleConfig(max_dendrites=3, switch_patience=2, max_tries=2)
    scores = [0.8, 0.8, 0.8,  # k=0 best 0.8 -> add
              0.7, 0.7, 0.7,  # k=1 never beats 0.8 -> retry from k=0
              0.79, 0.79, 0.79,  # retry 1 fails
              0.75, 0.75, 0.75]  # retry 2 fails -> stop at best (k=0)
    events = run_script(mode, cfg, scores)
    assert events == ["add_dendrites->1", "add_dendrites(retry)->1", "add_dendrites(retry)->1", "stop->0"]


def test_schedule_successful_retry_resets_tries():
    mode, cfg = "gd", ScheduleConfig(max_dendrites=2, switch_patience=1, max_tries=1)
    scores = [0.8, 0.8,  # k=0 -> add
              0.7, 0.7,  # k=1 fails -> retry
              0.9, 0.9,  # retry beats -> add k=2
              0.85, 0.85]  # k=2 fails, tries reset so one more retry
    events = run_script(mode, cfg, scores + [0.95, 0.95])
    assert events == ["add_dendrites->1", "add_dendrites(retry)->1", "add_dendrites->2",
                      "add_dendrites(retry)->2", "stop->2"]


def test_schedule_improvement_threshold_is_relative():
    s = PhaseSchedule(ScheduleConfig(improvement_threshold=0.01), "gd")
    assert s.beats(0.5, -math.inf)
    assert not s.beats(0.504, 0.5) and s.beats(0.506, 0.5)


def _trained_dm(k: int) -> DendriticModel:
    torch.manual_seed(0)
    dm = DendriticModel(KWSNet(preset("ei-default", 650, 3)), PBConfig(mode="gd"),
                        schedule=ScheduleConfig())
    for layer in dm.layers.values():
        for _ in range(k):
            layer.add_dendrite()
    with torch.no_grad():
        for p in dm.parameters():
            p.normal_()
    return dm.eval()


@pytest.mark.parametrize("k", [0, 1, 3])
def test_state_dict_round_trip_with_k_dendrites(tmp_path, k):
    src = _trained_dm(k)
    torch.save(src.state_dict(), tmp_path / "m.pt")
    dst = DendriticModel(KWSNet(preset("ei-default", 650, 3)), PBConfig(mode="gd"),
                         schedule=ScheduleConfig()).eval()
    dst.load_state_dict(torch.load(tmp_path / "m.pt"))
    assert dst.num_dendrites == k
    x = torch.randn(5, 650)
    torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    assert dst.deployed_params() == src.deployed_params()


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_param_counts_match_the_deployment_formula(k):
    dm = _trained_dm(k)
    # ei-default at 3 classes: conv 13->8 k3 (320), conv 8->16 k3 (400), linear 208->3 (627)
    expected = sum((k + 1) * pm + k * c + c * k * (k - 1) // 2 for pm, c in [(320, 8), (400, 16), (627, 3)])
    assert dm.deployed_params() == expected
    # the formula is the true parameter count of the model without training scaffolding
    assert dm.deployed_params() == sum(p.numel() for p in dm.parameters())
    assert sum(deployed_params(layer) for layer in dm.layers.values()) == expected


def test_linear_scope_wraps_only_linear_layers():
    dm = DendriticModel(KWSNet(preset("ei-default", 650, 3)), PBConfig(mode="cc", scope="linear"),
                        schedule=ScheduleConfig())
    assert list(dm.layers) == ["linears.0"]
    assert all(isinstance(c, nn.Conv1d) for c in dm.net.convs)


def test_restructure_rebuilds_optimizer_and_reverts_to_best():
    torch.manual_seed(0)
    dm = DendriticModel(KWSNet(preset("ei-default", 650, 3)), PBConfig(mode="gd"),
                        lambda ps: torch.optim.SGD(ps, lr=0.1), ScheduleConfig(switch_patience=1))
    opt = dm.optimizer
    x, y = torch.randn(32, 650), torch.randint(0, 3, (32,))
    dm.train()
    dm.training_step(x, y, nn.functional.cross_entropy)
    dm.end_epoch(0.9)  # new best: checkpoint taken here
    best = {k: v.clone() for k, v in dm.net.state_dict().items()}
    dm.training_step(x, y, nn.functional.cross_entropy)  # drift away from the best weights
    assert dm.end_epoch(0.5).action is Action.ADD_DENDRITES
    assert dm.optimizer is not opt and dm.num_dendrites == 1
    n_opt = sum(p.numel() for g in dm.optimizer.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in dm.parameters())  # new dendrites are in the new optimizer
    for name, v in best.items():  # grew from the best checkpoint, not the drifted weights
        torch.testing.assert_close(dm.net.state_dict()[name], v)


def test_dendrite_phase_trains_only_candidates():
    torch.manual_seed(0)
    dm = DendriticModel(KWSNet(preset("ei-default", 650, 3)), PBConfig(mode="cc"),
                        schedule=ScheduleConfig(switch_patience=1))
    dm.train()
    x, y = torch.randn(32, 650), torch.randint(0, 3, (32,))
    dm.end_epoch(0.5)
    assert dm.end_epoch(0.5).action is Action.START_DENDRITE_PHASE
    before = {k: v.clone() for k, v in dm.net.state_dict().items() if "candidate" not in k}
    cand = [layer.candidate.module.weight.clone() for layer in dm.layers.values()]
    for _ in range(3):
        dm.training_step(x, y, nn.functional.cross_entropy)
    for k, v in before.items():
        torch.testing.assert_close(dm.net.state_dict()[k], v, rtol=0, atol=0)
    assert all(not torch.equal(c, layer.candidate.module.weight) for c, layer in zip(cand, dm.layers.values()))


@pytest.mark.parametrize("update", [True, False])
def test_installed_cc_dendrites_freeze_or_fine_tune(update):
    torch.manual_seed(0)
    dm = DendriticModel(KWSNet(preset("ei-default", 650, 3)), PBConfig(mode="cc", dendrite_update=update),
                        schedule=ScheduleConfig(switch_patience=1, dendrite_patience=1))
    x, y = torch.randn(32, 650), torch.randint(0, 3, (32,))
    dm.train()
    dm.end_epoch(0.5)
    dm.end_epoch(0.5)
    dm.training_step(x, y, nn.functional.cross_entropy)
    dm.end_epoch()
    assert dm.end_epoch().action is Action.INSTALL_DENDRITES
    layer = dm.layers["linears.0"]
    w = layer.dendrites[0].weight.clone()
    for _ in range(3):
        dm.training_step(x, y, nn.functional.cross_entropy)
    assert torch.equal(w, layer.dendrites[0].weight) != update
    assert layer.out_weights[0].abs().sum() > 0  # T always trains


def _candidate_layer(pool: int = 1) -> DendriticLayer:
    torch.manual_seed(0)
    layer = DendriticLayer(nn.Linear(6, 4), "tanh")
    cc.begin_candidates(layer, pool, noise=True)
    with torch.no_grad():
        for best in layer.candidate.best_params:
            best.normal_()
    return layer


def test_candidate_pool_installs_each_neurons_best_member():
    """A pool of 3 candidates per neuron trains as one 12-channel module; neuron c installs the member with
    the best score (channel p*4 + c), whatever its position in the pool."""
    layer = _candidate_layer(pool=3)
    st = layer.candidate
    assert st.module.weight.shape == (12, 6) and st.cascade.shape == (0, 12)
    st.best_score = torch.tensor([0.1, 0.5, 0.2, 0.0, 0.3, 0.1, 0.2, 0.0, 0.2, 0.7, 0.6, 0.0])
    winners = torch.tensor([4, 9, 10, 3])  # per neuron: p*4 + c of the best member (ties: the first)
    expected = [best[winners].clone() for best in st.best_params]
    cc.install_candidates([layer])
    assert layer.candidate is None and layer.num_dendrites == 1
    assert layer.dendrites[0].weight.shape == (4, 6)
    for got, want in zip(layer.dendrites[0].parameters(), expected):
        assert torch.equal(got, want)


def test_selective_installation_keeps_neurons_above_their_noise_level_nested():
    layer = _candidate_layer()
    st = layer.candidate
    st.best_score = torch.tensor([0.10, 0.02, 0.00, 0.05])
    st.null_best = torch.tensor([0.01, 0.015, 0.00, 0.02])  # neuron 2 is dead: its error is 0, so no score
    cc.install_candidates([layer], noise_ratio=2.0)
    assert layer.installed_channels()[0].tolist() == [True, False, False, True]
    assert (layer.dendrites[0].weight[1:3] == 0).all() and (layer.dendrites[0].weight[[0, 3]] != 0).all()
    cc.begin_candidates(layer, noise=True)  # every neuron well above noise now; only those with dendrite 0 may get 1
    layer.candidate.best_score = torch.full((4,), 0.5)
    cc.install_candidates([layer], noise_ratio=2.0)
    assert [m.tolist() for m in layer.installed_channels()] == [[True, False, False, True]] * 2
    cc.begin_candidates(layer)  # ratio 0: the paper's rule, every neuron (nested: still only 0 and 3)
    cc.install_candidates([layer], noise_ratio=0.0)
    assert layer.installed_channels()[2].tolist() == [True, False, False, True]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_neurons_without_a_dendrite_stay_exactly_zero_through_training(activation: str):
    """The channels selective installation leaves out see only zero gradients, so Adam keeps them exactly
    zero through neuron phases with dendrite updates; the deployed count follows the installed channels."""
    torch.manual_seed(1)
    net = KWSNet(preset("ei-default", 650, 3, dropout=0.0))
    dm = DendriticModel(net, PBConfig(mode="cc", scope="conv", activation=activation, install_noise_ratio=2.0),
                        schedule=ScheduleConfig())
    layers = list(dm.layers.values())
    for layer in layers:
        cc.begin_candidates(layer, noise=True)
        st = layer.candidate
        st.best_score = torch.rand(layer.num_neurons) * 0.1
        st.null_best = torch.full((layer.num_neurons,), 0.025)
    cc.install_candidates(layers, noise_ratio=2.0)
    masks = [layer.installed_channels()[0].clone() for layer in layers]
    assert all(0 < int(m.sum()) < len(m) for m in masks)
    dm._set_trainable(neurons=True, dendrites=True)
    dm._rebuild_optimizer()
    before = [layer.dendrites[0].weight.detach().clone() for layer in layers]
    g = torch.Generator().manual_seed(0)
    dm.train()
    for _ in range(10):
        x, y = torch.randn(32, 650, generator=g), torch.randint(0, 3, (32,), generator=g)
        dm.training_step(x, y, nn.functional.cross_entropy)
    for layer, m, w0 in zip(layers, masks, before):
        assert torch.equal(layer.installed_channels()[0], m)
        assert (layer.dendrites[0].weight[~m] == 0).all() and (layer.out_weights[0][~m] == 0).all()
        assert not torch.equal(layer.dendrites[0].weight[m], w0[m])  # the installed ones did train
    full = dm.deployed_params(1)
    assert dm.deployed_params() < full
    from export.fold import fold_model
    assert sum(p.numel() for p in fold_model(net).parameters()) <= dm.deployed_params()


def test_a_per_layer_choice_wraps_exactly_the_named_layers():
    """--perforate-layers: only the named layers grow dendrites; the fold stays exact and the count true."""
    from export.fold import fold_model

    torch.manual_seed(2)
    net = KWSNet(preset("conv3", 650, 3))  # three uniform convolutions
    dm = DendriticModel(net, PBConfig(mode="cc", scope="linear", layers=("convs.2",)))
    assert list(dm.layers) == ["convs.2"]
    layer = dm.layers["convs.2"]
    for _ in range(2):
        layer.add_dendrite()
    with torch.no_grad():
        for p in [*layer.out_weights, *layer.cascade]:
            p.normal_(std=0.3)
    net.eval()
    x = torch.randn(8, 650)
    assert (fold_model(net)(x) - net(x)).abs().max() <= 1e-5
    assert sum(p.numel() for p in fold_model(net).parameters()) == dm.deployed_params()


def test_perforation_holds_for_dilated_dendrites():
    """CC dendrites with a wider receptive field still read a gradient-killed input: with T = 0 the neurons'
    gradients are those of the net without dendrites."""
    plain, perforated = _net_grads(0, dilation=3), _net_grads(2, dilation=3)
    assert plain.keys() == perforated.keys() and plain
    for name in plain:  # (the k = 0 net runs the fused op, the dilated one the reference ops: rounding)
        torch.testing.assert_close(perforated[name], plain[name], rtol=1e-5, atol=1e-7)


def test_dilated_dendrites_reject_what_cannot_fold():
    with pytest.raises(ConfigError, match="linear dendrites fold into the neuron's own kernel"):
        PBConfig(mode="cc", activation="linear", dilation=2).validate()
    with pytest.raises(ConfigError, match="dendrite dilation must be >= 1"):
        PBConfig(mode="cc", dilation=0).validate()
    with pytest.raises(ConfigError, match="dendrite kernel must be 0 .* or odd, got 4"):
        PBConfig(mode="cc", kernel=4).validate()
    with pytest.raises(ConfigError, match="cannot be dilated or resized"):
        PBConfig(mode="gd", activation="linear", kernel=1).validate()
    with pytest.raises(ValueError, match="'same'-padded"):
        DendriticLayer(nn.Conv1d(3, 4, 3, padding=0), "tanh", dilation=2)


def test_pointwise_dendrites_cost_less_and_a_pool_installs_them():
    """kernel 1: each dendrite costs C*(C_in + 1) instead of a copy's C*(3*C_in + 1); a CC candidate pool
    of such dendrites installs pointwise modules."""
    layer = DendriticLayer(nn.Conv1d(6, 4, 3, padding=1), "tanh", kernel=1)
    assert layer.dendrite_params() == 4 * (6 + 1)
    assert deployed_params(layer, 2) == (4 * 19) + 2 * 28 + 2 * 4 + 4
    cc.begin_candidates(layer, pool=3)
    assert layer.candidate.module.weight.shape == (12, 6, 1)
    layer.candidate.best_score = torch.rand(12)
    cc.install_candidates([layer])
    assert layer.dendrites[0].weight.shape == (4, 6, 1) and layer.dendrites[0].padding == (0,)
    assert deployed_params(layer) == deployed_params(layer, 1)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_pool_installed_dendrites_fold_exactly_and_count_their_params(activation: str, k: int):
    """Dendrites installed from a pool of 3 candidates per neuron (CC, with cascades) fold exactly and are
    counted exactly: the pool is training scaffolding only."""
    from export.fold import fold_model

    torch.manual_seed(40 + k)
    net = KWSNet(preset("ei-default", 650, 3))
    dm = DendriticModel(net, PBConfig(mode="cc", scope="all", activation=activation, candidate_pool=3))
    layers = list(dm.layers.values())
    for _ in range(k):
        for layer in layers:
            cc.begin_candidates(layer, 3)
            st = layer.candidate
            st.best_score = torch.rand(3 * layer.num_neurons)
            with torch.no_grad():
                for best in [*st.best_params, st.best_cascade]:
                    best.normal_(std=0.2)
        cc.install_candidates(layers)
        with torch.no_grad():
            for layer in layers:
                layer.out_weights[-1].normal_(std=0.5)
                layer.out_weights[-1][0] = -layer.out_weights[-1][0].abs()  # (no all-positive T for the ReLU fold)
    assert [layer.num_dendrites for layer in layers] == [k] * len(layers)
    net.eval()
    x = torch.randn(8, 650)
    assert (fold_model(net)(x) - net(x)).abs().max() <= 1e-5
    assert sum(p.numel() for p in fold_model(net).parameters()) == dm.deployed_params() == dm.deployed_params(k)
