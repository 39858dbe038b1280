"""The tiny DS-TCN family (kws/nets/dstcn.py): BatchNorm and multi-kernel branches fold exactly, dendrites on
it fold and count exactly, --max-params sizing never exceeds the budget, and its int8 model runs in TFLite
Micro with builtin ops only (per-channel conv weights, per-tensor FC)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_fold import add_dendrites
from torch import nn

from block.configs import run_config
from block.params import parse_args
from block.sizing import deployed, resolve_budget, size_to_budget
from dendritic import DendriticModel, PBConfig, ScheduleConfig
from export.costs import count_params
from export.fold import drop_negligible_dendrites, fold_model, is_multi_branch, merge_branches
from kws.nets import build_net, preset
from kws.nets.dstcn import DSConfig, MultiKernel, blocks_for_budget, deployed_params
from kws.trainer import RunConfig, Splits, TrainConfig, fit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsc12-real"
TOL = 1e-5
POINTWISE = ("blocks.0.pw.0", "blocks.1.pw.0")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every BatchNorm with non-trivial statistics and affine terms (a fresh BN folds to the identity, which
    would hide a wrong fold), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(c, generator=gen))
                m.bias.copy_(torch.randn(c, generator=gen) * 0.3)
    return model.eval()


def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


@pytest.mark.parametrize("name", ["dstcn", "dstcn-multikernel"])
@pytest.mark.parametrize(("width", "blocks", "n_classes"), [(10, 2, 12), (24, 2, 3), (16, 4, 35)])
def test_batchnorm_and_branches_fold_exactly(name: str, width: int, blocks: int, n_classes: int) -> None:
    torch.manual_seed(0)
    net = trained_looking(build_net(preset(name, 650, n_classes, width=width, blocks=blocks)))
    folded = fold_model(net)
    assert max_diff(net, folded, torch.randn(16, 650)) <= TOL
    assert not any(isinstance(m, nn.BatchNorm2d) or is_multi_branch(m) for m in folded.modules())
    plain = build_net(preset("dstcn", 650, n_classes, width=width, blocks=blocks))
    # the branches deploy nothing: the same count as the single-kernel net, and what the export counts
    assert deployed_params(net) == count_params(folded) == count_params(fold_model(plain))
    assert deployed_params(net) < sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("frames", [13, 50])
def test_multi_kernel_merge_is_exact_at_any_stride(stride: int, frames: int) -> None:
    torch.manual_seed(1)
    mk = trained_looking(MultiKernel(8, (3, 5, 7, 9), stride))
    merged = merge_branches(mk)
    assert merged.kernel_size == (9, 1) and merged.groups == 8
    assert max_diff(mk, merged, torch.randn(4, 8, frames, 1)) <= TOL


def test_branches_that_read_differently_do_not_merge() -> None:
    mk = MultiKernel(4, (3, 9), 1)
    mk.branches[0][0].stride = (2, 2)
    with pytest.raises(ValueError, match="can merge"):
        merge_branches(mk)


def grown(name: str, activation: str, k: int, layers: tuple[str, ...] = POINTWISE, scope: str = "all"
          ) -> DendriticModel:
    """A DendriticModel on a trained-looking DS-TCN with k dendrites on each wrapped layer and every dendrite
    parameter (T, U, the copies) drawn N(0, 0.2)."""
    torch.manual_seed(k)
    dm = DendriticModel(build_net(preset(name, 650, 12, width=12)),
                        PBConfig(mode="gd", activation=activation, layers=layers, scope=scope))
    add_dendrites(dm, k)
    trained_looking(dm)
    return dm


@pytest.mark.parametrize("name", ["dstcn", "dstcn-multikernel"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "linear"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_dendrites_on_the_pointwise_layers_fold_and_count_exactly(name: str, activation: str, k: int) -> None:
    """Each pointwise conv is followed by a BatchNorm: it folds into the neurons and scales T exactly."""
    dm = grown(name, activation, k)
    assert sorted(dm.layers) == sorted(POINTWISE)
    folded = fold_model(dm.net)
    assert max_diff(dm.net, folded, torch.randn(16, 650)) <= TOL
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert dm.deployed_params() == dm.deployed_params(k) == count_params(folded)
    x = torch.randn(32, 650)
    pruned, dropped = drop_negligible_dendrites(dm.net, [x])  # measured after the BN it absorbs, exactly
    if activation != "linear":  # (linear dendrites fold into the neurons: nothing to measure)
        assert all(isinstance(pruned.get_submodule(name[:-1] + "1"), nn.Identity) for name in POINTWISE)
    if not any(dropped.values()):
        assert max_diff(dm.net, pruned, x) <= TOL
    plain = deployed_params(build_net(preset(name, 650, 12, width=12)))
    per_layer = 0 if activation == "linear" else k * (12 * 12 + 12) + k * 12 + 12 * k * (k - 1) // 2
    assert count_params(folded) == plain + len(POINTWISE) * per_layer


def test_scope_all_wraps_every_layer_but_the_depthwise() -> None:
    """A depthwise conv's dendrites could not stack into one conv at export, so PB leaves it alone."""
    dm = grown("dstcn-multikernel", "tanh", 2, layers=())
    assert sorted(dm.layers) == sorted(["stem.0", *POINTWISE, "classifier"])
    folded = fold_model(dm.net)
    assert max_diff(dm.net, folded, torch.randn(8, 650)) <= TOL
    assert dm.deployed_params() == count_params(folded)


@pytest.mark.parametrize("n_classes", [3, 12, 35])
@pytest.mark.parametrize("budget", [1000, 2000, 3228, 4000, 8000, 16000])
@pytest.mark.parametrize("flags", [
    ("--model-preset", "dstcn", "--model-format", "traditional"),
    ("--model-preset", "dstcn-multikernel", "--model-format", "traditional"),
    ("--model-preset", "dstcn", "--model-format", "cc", "--perforate-layers", ",".join(POINTWISE)),
])
def test_sizing_never_exceeds_the_budget(budget: int, n_classes: int, flags: tuple[str, ...]) -> None:
    run, chosen = size_to_budget(run_config(parse_args(list(flags)), 650, n_classes), budget)
    assert isinstance(run.net, DSConfig) and run.net.blocks == blocks_for_budget(budget)
    k = run.schedule.max_dendrites if run.mode != "traditional" else 0
    assert deployed(run, k) == chosen["bound_params"] <= budget
    wider = run.__class__(run.net.__class__(**{**run.net.to_dict(), "width": run.net.width + 1}), run.pb,
                          run.schedule, run.train)
    assert deployed(wider, k) > budget  # the widest net that fits
    assert chosen["channels"] == [run.net.width] * (run.net.blocks + 1)


def test_auto_budget_sizes_the_family_to_edge_impulses_default_net() -> None:
    """`--model-preset dstcn` with the default `--max-params auto` is never bigger than EI's network."""
    budget, _ = resolve_budget("auto", 650, 12, 13, "dstcn")
    assert budget == 3228
    run, chosen = size_to_budget(run_config(parse_args(["--model-preset", "dstcn"]), 650, 12), budget)
    assert (run.net.width, run.net.blocks, chosen["bound_params"]) == (25, 2, 3112)


def test_block_arguments_and_checkpoint_config_round_trip() -> None:
    run = run_config(parse_args(["--model-preset", "dstcn-multikernel", "--dropout", "0.2"]), 650, 12)
    assert isinstance(run.net, DSConfig) and run.net.branch_kernels == (3, 5, 7, 9) and run.net.dropout == 0.2
    assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict()))).net == run.net
    for flags in ([], ["--model-preset", "conv3"]):  # the default (auto: branches unset) and convfc
        plain = run_config(parse_args(["--model-format", "traditional", *flags]), 650, 12)
        assert RunConfig.from_dict(json.loads(json.dumps(plain.to_dict()))).net == plain.net


def test_cc_training_grows_pointwise_dendrites_that_fold_exactly() -> None:
    """A short CC run through the block's trainer: candidates train on the pointwise layers (BN after them)
    and install; the checkpoint with its dendrite folds exactly with the count the trainer reports."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    x = rng.normal(size=(96, 650)).astype(np.float32)  # no signal: validation stalls, so CC starts at once
    run = RunConfig(preset("dstcn", 650, 3, width=8), PBConfig(mode="cc", layers=POINTWISE),
                    ScheduleConfig(max_dendrites=1, switch_patience=1, dendrite_patience=1, max_dendrite_epochs=2,
                                   max_tries=1), TrainConfig(epochs=10, batch_size=16, seed=0))
    result = fit(run, Splits(x, y, x[48:], y[48:]), lambda line: None)
    assert "install_dendrites" in [r.action for r in result.history]
    dm = result.model
    dm.load_state_dict(dm.best_by_dendrites[1][1])
    dm.eval()
    assert dm.architecture() == dict.fromkeys(POINTWISE, 1)
    folded = fold_model(dm.net)
    assert max_diff(dm.net, folded, torch.as_tensor(x[:16])) <= TOL
    assert dm.deployed_params() == count_params(folded)


def test_int8_model_runs_in_tflite_micro_with_builtin_ops_only(tmp_path: Path) -> None:
    """The multi-kernel net (branches and BN folded at export) through the verified chain: depthwise convs
    stay DEPTHWISE_CONV_2D, conv weights are per-channel int8, the classifier per-tensor."""
    from export import export_all
    from export.runtime import litert_interpreter

    x = np.load(DATA / "X_split_test.npy")[:200] if (DATA / "X_split_test.npy").exists() else \
        np.random.default_rng(0).normal(size=(200, 650))
    x = x.astype(np.float32)
    torch.manual_seed(0)
    net = trained_looking(build_net(preset("dstcn-multikernel", 650, 12, width=16)))
    report = export_all(net, tmp_path, x, x[:100])
    assert set(report["ops"]) <= {"RESHAPE", "PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "ADD",
                                  "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
    assert (report["ops"]["DEPTHWISE_CONV_2D"], report["ops"]["CONV_2D"]) == (2, 3)  # stem + 2 pointwise
    assert report["params"] == deployed_params(net)
    assert report["parity"]["fold_max_abs_diff"] <= TOL and report["parity"]["tflm_argmax_agreement"] >= 0.99
    assert report["arena_bytes"] > 0 and report["macs"] > 0
    it = litert_interpreter(tmp_path / "model_quantized_int8_io.tflite")
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    for op in it._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = tensors[op["inputs"][1]]
            scales = len(w["quantization_parameters"]["scales"])
            assert w["dtype"] == np.int8
            assert scales == (1 if op["op_name"] == "FULLY_CONNECTED" else w["shape"][0 if op["op_name"] == "CONV_2D"
                                                                                       else -1])


def test_train_py_ships_a_sized_ds_tcn_and_logs_what_it_built(tmp_path: Path) -> None:
    """The block end to end with a DS-TCN preset under a budget: the `network:` line describes the DS-TCN
    (it once read convfc-only fields and stopped every such run), the shipped model fits the budget."""
    import contextlib
    import io

    import train

    demo = Path(__file__).resolve().parents[1] / "demo" / "data"
    out, log = tmp_path / "out", io.StringIO()
    with contextlib.redirect_stdout(log):
        rc = train.main(["--data-directory", str(demo), "--out-directory", str(out), "--epochs", "3",
                         "--model-preset", "dstcn-multikernel", "--max-params", "1000"])
    assert rc == 0, log.getvalue()[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    network = next(ln for ln in log.getvalue().splitlines() if ln.startswith("network: "))
    assert network.startswith("network: preset dstcn-multikernel: DS-TCN stem conv ")
    assert "trained as kernels 3/5/7/9" in network and f"{m['params']:,} params" in network
    assert m["params"] <= 1000 and m["config"]["net"]["family"] == "dstcn"


def test_auto_takes_its_depth_and_training_branches_from_the_budget() -> None:
    """`auto` (the block's default): multi-kernel branches up to MULTI_KERNEL_MAX_BUDGET, one kernel above
    and without a budget; the explicit presets keep theirs at any budget."""
    from kws.nets import config_from_dict
    from kws.nets.dstcn import MULTI_KERNEL, MULTI_KERNEL_MAX_BUDGET, shape_for_budget

    auto = preset("auto", 650, 12)
    assert auto.branch_kernels is None and not isinstance(build_net(auto).blocks[0].dw, MultiKernel)
    assert config_from_dict(auto.to_dict()) == auto  # an unsized auto checkpoint (one kernel) round-trips
    for budget, kernels in ((1000, MULTI_KERNEL), (MULTI_KERNEL_MAX_BUDGET, MULTI_KERNEL),
                            (MULTI_KERNEL_MAX_BUDGET + 1, ()), (16000, ())):
        shaped = shape_for_budget(auto, budget)
        assert (shaped.branch_kernels, shaped.blocks) == (kernels, blocks_for_budget(budget))
    assert shape_for_budget(preset("dstcn", 650, 12), 1000).branch_kernels == ()
    assert shape_for_budget(preset("dstcn-multikernel", 650, 12), 16000).branch_kernels == MULTI_KERNEL
    run, _ = size_to_budget(run_config(parse_args(["--max-params", "1000"]), 650, 12), 1000)
    assert isinstance(build_net(run.net).blocks[0].dw, MultiKernel) and deployed(run, 0) <= 1000


def test_multi_kernel_branches_never_get_dendrites_even_at_one_channel() -> None:
    """At width 1 (a sizing probe) a depthwise conv has groups == 1 and looks wrappable; inside MultiKernel
    it must stay plain, or sizing the default with a dendritic format failed (issue 23's merge)."""
    from dendritic.pb import wrap_layers

    net = build_net(preset("dstcn-multikernel", 650, 3, width=1))
    assert not any("branches" in name for name in wrap_layers(net, "all", "relu", 0.01))
    run, chosen = size_to_budget(run_config(parse_args(["--model-format", "cc"]), 650, 3), 1000)
    assert run.net.branch_kernels and chosen["bound_params"] <= 1000


@pytest.mark.parametrize(("argv", "family", "rate"), [
    ([], "DSConfig", 0.1),  # Edge Impulse's size (3,228 at 12 classes): above 2,000 params
    (["--max-params", "1000"], "DSConfig", 0.0),  # small DS-TCN: no dropout (bench/recipe_scan.py)
    (["--max-params", "2000"], "DSConfig", 0.0),
    (["--max-params", "2001"], "DSConfig", 0.1),
    (["--max-params", "0"], "DSConfig", 0.1),  # no budget: the larger nets' rate
    (["--model-preset", "conv3"], "NetConfig", 0.0),  # conv+FC: issue 13's recipe
    (["--model-preset", "custom"], "NetConfig", 0.0),
    (["--max-params", "1000", "--dropout", "0.3"], "DSConfig", 0.3),  # a given rate is kept
    (["--model-preset", "conv3", "--dropout", "0.2"], "NetConfig", 0.2),
])
def test_auto_dropout_follows_family_and_budget(argv: list[str], family: str, rate: float) -> None:
    from block.configs import run_config
    from block.params import parse_args

    run = run_config(parse_args(["--data-directory", "x", "--out-directory", "y", *argv]), 650, 12)
    assert (type(run.net).__name__, run.net.dropout) == (family, rate)
