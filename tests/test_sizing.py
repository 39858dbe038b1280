"""--max-params sizes the network without a search: never more than the budget, for every format."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from block.configs import run_config
from block.params import parse_args
from block.sizing import deployed, resolve_budget, size_to_budget
from kws.errors import ConfigError

DEMO = Path(__file__).resolve().parent.parent / "demo" / "data"


def sized(budget: int, n_classes: int, *flags: str):
    """Sizing of the block's flags; without --model-preset the conv+FC `conv3` (these tests are about its
    mechanics; the DS-TCN default has its own in test_dstcn.py and below)."""
    if "--model-preset" not in flags:
        flags = (*flags, "--model-preset", "conv3")
    run = run_config(parse_args(list(flags)), 650, n_classes)
    return size_to_budget(run, budget)


@pytest.mark.parametrize("n_classes", [3, 12])
@pytest.mark.parametrize("budget", [1000, 2000, 4000, 8000, 16000])
@pytest.mark.parametrize("flags", [
    ("--model-format", "traditional"),
    ("--model-format", "cc", "--perforate", "all"),
    ("--model-format", "cc", "--perforate", "conv", "--max-dendrites", "3"),
    ("--model-format", "gd", "--perforate", "linear"),
    ("--model-format", "traditional", "--model-preset", "paper-baseline"),
    ("--model-format", "traditional", "--model-preset", "auto"),
    ("--model-format", "cc", "--model-preset", "auto"),
    ("--model-format", "cc", "--model-preset", "custom", "--conv-layers", "3", "--width-growth", "uniform"),
    ("--model-format", "cc", "--model-preset", "custom", "--conv-layers", "3", "--width-growth", "uniform",
     "--perforate-layers", "convs.2", "--install-noise-ratio", "2"),
    ("--model-format", "cc", "--perforate", "conv", "--dendrite-kernel", "1", "--dendrite-dilation", "2"),
])
def test_the_model_never_exceeds_the_budget(budget: int, n_classes: int, flags: tuple[str, ...]) -> None:
    run, chosen = sized(budget, n_classes, *flags)
    k = run.schedule.max_dendrites if run.mode != "traditional" else 0
    assert deployed(run, k) == chosen["bound_params"] <= budget
    wider = size_to_budget(run_config(parse_args(list(flags)), 650, n_classes), 10**7)[1]["width"]
    assert chosen["width"] < wider  # the budget, not the search range, bounded the width
    assert chosen["width"] >= chosen["min_width"]  # never a base under the floor


@pytest.mark.parametrize("n_classes", [3, 12])
@pytest.mark.parametrize("budget", [600, 1347, 3228, 8000])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("scope", ["all", "conv"])
def test_sizing_never_builds_a_base_under_the_floor(budget: int, n_classes: int, k: int, scope: str) -> None:
    """Fewer dendrites rather than a starved base: the width is at least the floor (or the plain net's own
    width when the budget is that small), and one more dendrite would not have fitted on such a base."""
    from block import sizing

    flags = ("--model-format", "cc", "--perforate", scope, "--max-dendrites", str(k))
    run, chosen = sized(budget, n_classes, *flags)
    plain = sized(budget, n_classes, "--model-format", "traditional")[1]["width"]
    floor = min(sizing.MIN_BASE_WIDTH, plain)
    assert chosen["min_width"] == floor and chosen["width"] >= floor
    assert chosen["requested_dendrites"] == k and run.schedule.max_dendrites == chosen["max_dendrites"] <= k
    if chosen["max_dendrites"] < k:
        more = sizing.widest(run, chosen["max_dendrites"] + 1, budget)
        assert more is None or more < floor
        assert f"{k} dendrite(s) per neuron fit only on a base under {floor} channels" in chosen["note"]
    else:
        assert chosen["note"] is None
    assert deployed(run, chosen["max_dendrites"]) <= budget


def test_the_tutorial_case_keeps_a_useful_base() -> None:
    """Issue 21: CC with up to 3 dendrites at hello-world's automatic budget used to get 3 channels."""
    _, chosen = sized(1347, 3, "--model-format", "cc", "--max-dendrites", "3")
    assert chosen["channels"][0] >= 8 and chosen["max_dendrites"] < 3 and chosen["bound_params"] <= 1347


def test_auto_is_edge_impulses_default_network() -> None:
    assert resolve_budget("auto", 650, 3, 13)[0] == 1347
    assert resolve_budget("auto", 650, 12, 13)[0] == 3228
    assert resolve_budget("auto", 650, 12, 13, "custom")[0] == 0  # an explicit architecture is kept
    assert resolve_budget(0, 650, 12, 13)[0] == 0 and resolve_budget("5000", 650, 12, 13)[0] == 5000
    _, chosen = sized(3228, 12, "--model-format", "traditional", "--model-preset", "ei-default")
    assert chosen["width"] == 8 and chosen["bound_params"] == 3228  # the ei-default net itself
    _, chosen = sized(3228, 12, "--model-format", "traditional")  # conv3, the old default: 3 uniform convs
    assert chosen["channels"] == [14, 14, 14] and chosen["bound_params"] == 2952
    run, chosen = sized(3228, 12, "--model-format", "traditional", "--model-preset", "auto")  # the DS-TCN
    assert run.net.family == "dstcn" and (run.net.width, run.net.blocks) == (25, 2)
    assert chosen["bound_params"] == 3112  # <= 3,228, EI's default net


def test_a_budget_too_small_for_any_network_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"budget of 100 params is too small .* narrowest \(width 1\) has"):
        sized(100, 12, "--model-format", "traditional")
    with pytest.raises(ConfigError, match="budget of 100 params is too small for this network"):
        sized(100, 12, "--model-format", "cc", "--perforate", "all")
    with pytest.raises(ConfigError, match=r"cannot perforate layer 'convs\.5': this network's layers are "
                                          r"convs\.0, convs\.1, convs\.2, linears\.0"):
        sized(3000, 12, "--model-format", "cc", "--perforate-layers", "convs.1, convs.5")
    with pytest.raises(ConfigError, match="max params must be 'auto'"):
        resolve_budget("lots", 650, 3, 13)


@pytest.mark.parametrize("fmt, budget", [("cc", "1000"), ("traditional", "auto")])
def test_train_py_ships_within_the_budget_and_says_what_it_chose(tmp_path, fmt: str, budget: str) -> None:
    import train

    out = tmp_path / "out"
    assert train.main(["--data-directory", str(DEMO), "--out-directory", str(out), "--epochs", "8",
                       "--model-format", fmt, "--max-params", budget, "--switch-patience", "2",
                       "--dendrite-patience", "1"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    limit = 1347 if budget == "auto" else int(budget)
    assert m["params"] <= limit and m["sizing"]["budget"] == limit
    assert m["sizing"]["bound_params"] <= limit and m["sizing"]["channels"]


def test_train_py_rejects_an_impossible_budget(tmp_path, capsys) -> None:
    import train

    out = tmp_path / "out"
    assert train.main(["--data-directory", str(DEMO), "--out-directory", str(out), "--max-params", "50"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERR: a budget of 50 params is too small")
    assert not any(p.suffix in (".tflite", ".onnx", ".pt") for p in out.iterdir())


def test_summary_names_the_budget_and_where_the_dendrites_are() -> None:
    from block.report import sizing_line

    m = {"params": 2697, "sizing": {"budget": 3228, "source": "auto", "channels": [5, 10]},
         "dendrites_per_layer": {"convs.0": 2, "convs.1": 2, "linears.0": 0}}
    assert sizing_line(m) == ("budget 3,228 params (auto): conv channels [5, 10]; shipped 2,697 params, "
                              "dendrites per neuron: convs.0=2, convs.1=2")
    m["dendrite_neurons"] = {"convs.0": {"neurons": 5, "per_dendrite": [5, 5]},  # selective installation
                             "convs.1": {"neurons": 10, "per_dendrite": [7, 3]}}
    assert sizing_line(m).endswith("dendrites per neuron: convs.0=2, convs.1=2 (on 7/10, 3/10 neurons)")
    assert sizing_line({"params": 10, "sizing": {"budget": 0, "source": "none"}}) == \
        "no parameter budget; shipped 10 params"
