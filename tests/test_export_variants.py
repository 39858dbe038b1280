"""Heavier export checks (marked slow): other architectures and activations through the whole pipeline, and
a briefly trained plain + dendritic model whose int8 artifacts must keep the torch model's accuracy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_fold import select_channels, wrap_all
from torch import nn

from export import export_all
from export.runtime import predict
from kws.nets.convfc import KWSNet, preset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hello-world"
pytestmark = pytest.mark.slow


def _load(name: str) -> np.ndarray:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"needs {path}")
    return np.load(path).astype(np.float32)


VARIANTS = {
    "paper-baseline conv2d relu k=3 cc": ({"name": "paper-baseline"}, "relu", 3, "cc"),
    "paper-baseline conv2d sigmoid k=3 cc": ({"name": "paper-baseline"}, "sigmoid", 3, "cc"),
    "ei-default sigmoid k=1 gd": ({"name": "ei-default"}, "sigmoid", 1, "gd"),
    "linear-only tanh k=2 cc": ({"name": "ei-default", "conv_layers": 0, "linear_layers": 3}, "tanh", 2,
                                "cc"),
    "ei-default conv2d tanh k=4 cc": ({"name": "ei-default", "conv_type": "conv2d"}, "tanh", 4, "cc"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_exports(variant: str, tmp_path) -> None:
    cfg, activation, k, style = VARIANTS[variant]
    cfg = dict(cfg)
    torch.manual_seed(3)
    net = wrap_all(KWSNet(preset(cfg.pop("name"), 650, 3, **cfg)), activation, k, style)
    x = _load("X_split_test.npy")
    report = export_all(net, tmp_path, x, x[:100])
    print(f"{variant}: {report}")
    assert report["parity"]["tflite_max_abs_diff"] <= 1e-4
    assert report["parity"]["tflm_max_lsb"] <= 2
    assert report["arena_bytes"] > 0


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_selective_installation_exports(activation: str, tmp_path) -> None:
    """Dendrites on some neurons only (selective installation): the folded layer's split/add/concat and
    the int32 GATHER that restores the neuron order convert, quantize and run in TFLite Micro."""
    from export.fold import is_dendritic

    torch.manual_seed(4)
    net = wrap_all(KWSNet(preset("ei-default", 650, 3)), activation, 2, "cc")
    select_channels([m for m in net.modules() if is_dendritic(m)], keep_first=[1, 2, 4, 6], keep_more=[2, 6])
    x = _load("X_split_test.npy")
    report = export_all(net, tmp_path, x, x[:100])
    assert report["ops"].get("GATHER", 0) == 3  # both convolutions and the classifier
    assert report["parity"]["tflite_max_abs_diff"] <= 1e-4
    assert report["parity"]["tflm_max_lsb"] <= 2


@pytest.mark.parametrize("conv_type, reads", [("conv1d", {"dilation": 2}), ("conv2d", {"dilation": 2}),
                                              ("conv1d", {"kernel": 1}), ("conv1d", {"kernel": 5, "dilation": 2})])
def test_distinct_dendrites_export(conv_type: str, reads: dict, tmp_path) -> None:
    """Dendrites that read the input differently (dilated, pointwise, longer) are a second convolution beside
    the neurons' one: it converts, quantizes and runs in TFLite Micro."""
    from dendritic import DendriticModel, PBConfig

    torch.manual_seed(5)
    dm = DendriticModel(KWSNet(preset("ei-default", 650, 3, conv_type=conv_type)),
                        PBConfig(mode="cc", scope="conv", activation="tanh", **reads))
    for layer in dm.layers.values():
        for _ in range(2):
            layer.add_dendrite()
        with torch.no_grad():
            for p in [*layer.out_weights, *layer.cascade]:
                p.normal_(std=0.5)
            for p in layer.dendrite_parameters():
                p.normal_(std=float(layer.main.weight.std()))
    x = _load("X_split_test.npy")
    report = export_all(dm.net.eval(), tmp_path, x, x[:100])
    assert report["ops"]["CONV_2D"] == 4  # neurons and dendrites: two per layer
    assert report["params"] == dm.deployed_params()
    assert report["parity"]["tflite_max_abs_diff"] <= 1e-4
    assert report["parity"]["tflm_max_lsb"] <= 2


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float = 3e-3) -> nn.Module:
    torch.manual_seed(0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.argmax(1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def test_trained_models_keep_accuracy_in_int8(tmp_path) -> None:
    """A trained plain net, then the same net with 2 tanh dendrites per layer fine-tuned (GD): the int8 model
    agrees with torch on >= 97 % of holdout rows and loses at most 2 points of accuracy."""
    x_train, y_train = _load("X_split_train.npy"), _load("Y_split_train.npy")
    x_val = _load("X_split_test.npy")
    x_hold, y_hold = _load("holdout/X_test.npy"), _load("holdout/Y_test.npy")
    torch.manual_seed(0)
    plain = _fit(KWSNet(preset("ei-default", 650, 3)), x_train, y_train, epochs=15)
    dend = wrap_all(KWSNet(preset("ei-default", 650, 3)), "tanh", 2, "gd")
    for slot, trained in zip(list(dend.convs) + list(dend.linears), list(plain.convs) + list(plain.linears)):
        slot.main.load_state_dict(trained.state_dict())
        with torch.no_grad():
            for t in slot.out_weights:
                t.mul_(0.02)  # start close to the trained plain function
    dend = _fit(dend, x_train, y_train, epochs=5, lr=1e-3)
    labels = y_hold.argmax(1)
    for name, model in (("plain", plain), ("dendritic", dend)):
        out = tmp_path / name
        report = export_all(model, out, x_val, x_val)
        with torch.no_grad():
            torch_pred = model(torch.from_numpy(x_hold)).argmax(1).numpy()
        int8_pred = predict(out / "model_quantized_int8_io.tflite", x_hold).argmax(1)
        torch_acc, int8_acc = np.mean(torch_pred == labels), np.mean(int8_pred == labels)
        print(f"{name}: torch acc {torch_acc:.3f} int8 acc {int8_acc:.3f} report {report}")
        assert torch_acc > 0.6, f"{name} did not train"
        assert np.mean(int8_pred == torch_pred) >= 0.97
        assert int8_acc >= torch_acc - 0.02
