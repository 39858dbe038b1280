"""Dead dendrites and interpreter crashes.

A ReLU dendrite that never fires on the calibration rows gets a ~zero int8 range; the converter writes it,
and every interpreter (LiteRT with any resolver, TFLite Micro) then aborts the process in allocate_tensors
(QuantizeMultiplierSmallerThanOneExp in ADD's Prepare). So does one that contributes something, but far
less than one int8 step of its layer's output (issue 21: a trained CC run on hello-world). Three defences:
export_all drops dendrites worth under half an int8 step before folding (export.fold.
drop_negligible_dendrites), the int8 conversion floors any ADD output range that is still too small for the
kernels (export.tflite.floor_ranges), and every model is loaded in a child process before it is touched
in-process (export.verify.check_loadable), so a crashing model is an ExportError, never an abort.

tests/fixtures/dead_dendrite_int8.tflite (19 KB; not under tests/data/, which .gitignore's `data/` hides) is
that crashing model: a CC relu ei-default with 2 dendrites per neuron, trained before the fix by
`python train.py --data-directory demo/data --out-directory /tmp/demo_chk --holdout-directory
demo/data/holdout --max-params 0` (the int8 file left in its .build-* folder). The classifier's dendrite 1
never fires on the 90 calibration rows, so its ReLU/Mul tensors got scale 7.8e-9 and the cascade ADD's
output multiplier became 9.1 (must be < 1).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import export
from dendritic import DendriticModel, PBConfig
from export import ExportError, export_all
from export.costs import count_params
from export.fold import drop_negligible_dendrites, fold_model
from export.runtime import input_quantization, litert_int8_predict, predict, quantize, tflm_predict
from export.verify import check_loadable
from kws.nets.convfc import KWSNet, preset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hello-world"
CRASHING = Path(__file__).resolve().parent / "fixtures" / "dead_dendrite_int8.tflite"
N_FEATURES, N_CLASSES = 650, 3


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    path = DATA / "X_split_test.npy"
    x = np.load(path)[:300] if path.exists() else np.random.default_rng(0).normal(size=(300, N_FEATURES))
    return x.astype(np.float32)


def kill(layer: nn.Module, j: int, channels: slice = slice(None)) -> None:
    """Make dendrite j of `layer` never fire on `channels` (zero weights, bias -10, negative cascade inputs
    from the non-negative earlier ReLU dendrites); its T stays non-zero, as a trained one's would. The
    calibrator gives an all-zero tensor the range [0, 2e-6] (scale 7.8e-9); the cascade ADD that computes
    it then aborts when its largest input scale exceeds 2^20 x 7.8e-9 / 2 = 0.0041, so the bias is large
    enough to put the stacked layer's range (its input) well above that, as a trained classifier's is."""
    with torch.no_grad():
        layer.dendrites[j].weight[channels] = 0.0
        layer.dendrites[j].bias[channels] = -10.0
        layer.cascade[j][:, channels] = -layer.cascade[j][:, channels].abs()


def relu_cc_net(seed: int = 0) -> KWSNet:
    """An ei-default KWSNet wrapped as the block does it (CC, relu, every layer) with 2 dendrites per neuron,
    trained-looking weights and non-zero T and cascade U; the classifier's dendrite 1 is dead, as in the
    reproducer."""
    torch.manual_seed(seed)
    dm = DendriticModel(KWSNet(preset("ei-default", N_FEATURES, N_CLASSES)),
                        PBConfig(mode="cc", activation="relu"))
    for layer in dm.layers.values():
        for _ in range(2):
            layer.add_dendrite()
        with torch.no_grad():
            for j, d in enumerate(layer.dendrites):
                for p in d.parameters():
                    p.copy_(torch.randn_like(p) * layer.main.weight.std())
                layer.out_weights[j].copy_(torch.randn_like(layer.out_weights[j]) * 0.5)
                layer.cascade[j].copy_(torch.randn_like(layer.cascade[j]) * 0.5)
    kill(dm.layers["linears.0"], 1)
    return dm.net.eval()


def logits(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x))


# ---- pure torch: what is dropped, and that dropping is exact ----

def test_dead_dendrites_are_dropped_exactly_and_the_model_is_untouched(rows) -> None:
    net = relu_cc_net()
    kill(net.convs[1], 0)  # a dead FIRST dendrite: the live dendrite 1 loses its cascade input from it
    before = copy.deepcopy(net.state_dict())
    pruned, dropped = drop_negligible_dendrites(net, [torch.from_numpy(rows)])
    assert dropped == {"convs.0": 0, "convs.1": 1, "linears.0": 1}
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the caller's model
    assert [len(s.dendrites) for s in (*net.convs, *net.linears)] == [2, 2, 2]
    assert [len(s.dendrites) for s in (*pruned.convs, *pruned.linears)] == [2, 1, 1]
    c1 = pruned.convs[1]
    assert c1.cascade[0].shape == (0, 16)
    assert torch.equal(c1.dendrites[0].weight, net.convs[1].dendrites[1].weight)
    assert torch.equal(c1.out_weights[0], net.convs[1].out_weights[1])
    assert (logits(pruned, rows) - logits(net, rows)).abs().max() <= 1e-6
    # each dropped dendrite takes its copy, its T and its cascade weights out of the exported parameters
    c = [s.main.weight.shape[0] for s in (net.convs[1], net.linears[0])]
    p_main = [sum(p.numel() for p in s.main.parameters()) for s in (net.convs[1], net.linears[0])]
    assert count_params(fold_model(net)) - count_params(fold_model(pruned)) == sum(
        pm + 2 * ci for pm, ci in zip(p_main, c))
    assert (logits(fold_model(pruned), rows) - logits(net, rows)).abs().max() <= 1e-5


def test_live_dendrites_stay(rows) -> None:
    """A dendrite dead on some channels only stays (activations are quantized per tensor: its range comes
    from the live channels); so does one with T = 0 whose activation still feeds a later dendrite; a plain
    model is returned as it is."""
    net = relu_cc_net()
    kill(net.convs[1], 1, slice(0, 15))  # 15 of 16 channels never fire
    with torch.no_grad():
        net.convs[0].out_weights[0].zero_()  # no output of its own, but dendrite 1 reads it via U_1[0]
    pruned, dropped = drop_negligible_dendrites(net, [torch.from_numpy(rows)])
    assert dropped == {"convs.0": 0, "convs.1": 0, "linears.0": 1}
    folded = fold_model(pruned)
    assert folded.convs[0].adds == [False, True]  # T_0 == 0: no constant-zero Mul/Add term is exported
    assert (logits(folded, rows) - logits(net, rows)).abs().max() <= 1e-5
    with torch.no_grad():
        net.convs[0].cascade[1].zero_()  # now it contributes nothing at all: dropped
    assert drop_negligible_dendrites(net, [torch.from_numpy(rows)])[1]["convs.0"] == 1
    plain = KWSNet(preset("ei-default", N_FEATURES, N_CLASSES))
    assert drop_negligible_dendrites(plain, [torch.from_numpy(rows)]) == (plain, {})


# ---- the crash guard ----

def test_crashing_model_is_an_export_error() -> None:
    """The reproducer aborts LiteRT and TFLite Micro; the probe child dies instead of this process."""
    assert CRASHING.stat().st_size < 30_000
    with pytest.raises(ExportError, match=r"crashes the TFLite interpreter \(SIGABRT while LiteRT loads"
                                          r".*smallest activation scale 7.8e-09"):
        check_loadable([CRASHING], [CRASHING])
    with pytest.raises(ExportError, match=r"SIGABRT while TFLite Micro loads"):
        check_loadable([], [CRASHING])


def test_probe_failure_is_an_export_error(monkeypatch) -> None:
    monkeypatch.setattr(export.runtime, "_PROBE", "raise SystemExit('no interpreter here')")
    with pytest.raises(ExportError, match="could not probe .*exit status 1.*no interpreter here"):
        check_loadable([CRASHING], [])


# ---- end to end: the block's situation ----

@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_dead_dendrite_model_exports_and_runs(tmp_path, rows) -> None:
    net = relu_cc_net()
    report = export_all(net, tmp_path, rows, rows[:120])
    assert report["dendrites_dropped"] == {"convs.0": 0, "convs.1": 0, "linears.0": 1}
    assert report["params"] == count_params(fold_model(drop_negligible_dendrites(net, [torch.from_numpy(rows)])[0]))
    assert report["parity"]["fold_max_abs_diff"] <= 1e-5 and report["parity"]["tflite_max_abs_diff"] <= 1e-4
    path = tmp_path / "model_quantized_int8_io.tflite"
    x = rows[:120]
    q = quantize(x, *input_quantization(path))
    tflm, ref = tflm_predict(path, q), litert_int8_predict(path, q)
    assert np.abs(tflm.astype(int) - ref.astype(int)).max() <= 1  # relu only: (near) bit-exact
    with torch.no_grad():
        probs = torch.softmax(net(torch.from_numpy(x)), -1).numpy()
    int8 = predict(path, x)
    assert np.abs(int8 - probs).max() < 0.1 and np.mean(int8.argmax(1) == probs.argmax(1)) >= 0.97


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_without_dropping_the_export_fails_cleanly(tmp_path, rows, monkeypatch) -> None:
    """The same model with the dead dendrite kept: the converter writes an int8 model that aborts every
    interpreter; export_all raises instead of dying."""
    monkeypatch.setattr(export, "NEGLIGIBLE_STEPS", -1.0)  # drop nothing
    monkeypatch.setattr(export.tflite, "RANGE_FLOOR", 0.0)  # floor nothing
    with pytest.raises(ExportError, match=r"model_quantized_int8_io.tflite crashes the TFLite interpreter"):
        export_all(relu_cc_net(), tmp_path, rows, rows[:120])


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_the_range_floor_alone_makes_it_load(tmp_path, rows, monkeypatch) -> None:
    """Second line of defence: with the dead dendrite kept, the floored cascade ADD range loads and runs in
    both interpreters, and the int8 model still predicts like the float one."""
    monkeypatch.setattr(export, "NEGLIGIBLE_STEPS", -1.0)  # drop nothing
    net = relu_cc_net()
    report = export_all(net, tmp_path, rows, rows[:120])
    assert report["dendrites_dropped"] == {"convs.0": 0, "convs.1": 0, "linears.0": 0}
    assert report["ranges_floored"] and all("->" in note for note in report["ranges_floored"])
    assert report["parity"]["tflm_argmax_agreement"] >= 0.99
    with torch.no_grad():
        probs = torch.softmax(net(torch.from_numpy(rows[:120])), -1).numpy()
    int8 = predict(tmp_path / "model_quantized_int8_io.tflite", rows[:120])
    assert np.mean(int8.argmax(1) == probs.argmax(1)) >= 0.97


def near_dead_net(t: float) -> KWSNet:
    """relu_cc_net with nothing dead, except that dendrite 1 of the second convolution contributes only
    through a tiny output weight T = t (issue 21's trained case: above any 'dead' tolerance, far below an
    int8 step)."""
    net = relu_cc_net()
    with torch.no_grad():
        net.linears[0].out_weights[1].fill_(0.3)  # undo the dead classifier dendrite: keep only the case
        net.linears[0].dendrites[1].bias.fill_(0.5)
        net.convs[1].out_weights[1].fill_(t)
    return net


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_a_near_dead_dendrite_exports_like_the_model_without_it(tmp_path, rows) -> None:
    net = near_dead_net(1e-5)
    pruned, dropped = drop_negligible_dendrites(net, [torch.from_numpy(rows)])
    assert dropped["convs.1"] == 1 and len(pruned.convs[1].dendrites) == 1
    without = copy.deepcopy(net)
    export.fold._remove_dendrites(without.convs[1], {1})
    x = rows[:120]
    report = export_all(net, tmp_path / "with", rows, x)
    export_all(without, tmp_path / "without", rows, x)
    assert report["dendrites_dropped"]["convs.1"] == 1 and not report["ranges_floored"]
    assert report["parity"]["prune_argmax_agreement"] == 1.0 and report["parity"]["prune_max_abs_diff"] < 1e-3
    name = "model_quantized_int8_io.tflite"
    q = quantize(x, *input_quantization(tmp_path / "with" / name))
    assert input_quantization(tmp_path / "with" / name) == input_quantization(tmp_path / "without" / name)
    np.testing.assert_array_equal(litert_int8_predict(tmp_path / "with" / name, q),
                                  litert_int8_predict(tmp_path / "without" / name, q))


def test_a_contributing_dendrite_is_kept(rows) -> None:
    """The same dendrite with a real output weight is worth many int8 steps: it stays; the rule is not a
    cap on how small a useful dendrite may be, only on what int8 can represent."""
    _, dropped = drop_negligible_dendrites(near_dead_net(0.3), [torch.from_numpy(rows)])
    assert dropped["convs.1"] == 0
