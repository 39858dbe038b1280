"""Device budgets (--max-flash-kb, --max-ram-kb, --max-macs): counted on the built model, never exceeded."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

import train
from block.configs import run_config
from block.params import parse_args
from block.sizing import FLASH_SLACK, Budget, device_costs, over_budget, size_to_budget
from kws.errors import ConfigError

DEMO = Path(__file__).resolve().parent.parent / "demo" / "data"


def test_budget_words_and_limits() -> None:
    b = Budget.from_kb(3000, flash_kb=10, ram_kb=5, macs=40000)
    assert (b.params, b.flash_bytes, b.ram_bytes, b.macs) == (3000, 10240, 5120, 40000) and b.device
    assert str(b) == "3,000 params and 10 KB flash and 5 KB RAM and 40,000 MACs"
    assert not Budget() and Budget(params=5) and not Budget(params=5).device
    costs = {"flash_bytes": int(10240 / (1 + FLASH_SLACK)), "arena_bytes": 5120, "macs": 40000}
    assert b.over(3000, costs) == []
    over = b.over(3001, {**costs, "flash_bytes": costs["flash_bytes"] + 10, "arena_bytes": 5121, "macs": 40001})
    assert len(over) == 4 and "3,001 params > 3,000" in over[0] and "5,121 B RAM > 5,120" in over
    assert b.over(0, {**costs, "flash_bytes": 10240}, slack=False) == []  # the shipped file: no reserve


# Architectures and class counts sized under device limits: each sized net, measured afresh (a new export,
# not the cache), stays within every limit; and one channel more would not have fit (the widest is taken).
@pytest.mark.parametrize(("flags", "n_classes", "budget"), [
    ((), 12, Budget.from_kb(0, flash_kb=10, ram_kb=5)),
    ((), 3, Budget.from_kb(1347, ram_kb=5.5)),
    (("--model-preset", "conv3"), 12, Budget.from_kb(0, flash_kb=10)),
    (("--model-preset", "dstcn"), 12, Budget(macs=30000)),
    (("--model-preset", "conv3", "--model-format", "cc", "--max-dendrites", "1"), 3, Budget.from_kb(4000, flash_kb=12)),
])
def test_sizing_never_exceeds_the_device_budget(flags, n_classes, budget) -> None:
    from export.costs import measure
    from kws.trainer import build_model

    run = run_config(parse_args(["--data-directory", str(DEMO), "--out-directory", "out", *flags]), 650, n_classes)
    sized, chosen = size_to_budget(run, budget)
    k = chosen["max_dendrites"]
    model = build_model(sized, "cpu")
    for layer in model.layers.values():
        for _ in range(k):
            layer.add_dendrite()
    fresh = measure(model.net, 650)
    assert budget.over(chosen["bound_params"], fresh, slack=False) == [], (chosen, fresh)
    assert chosen["device"]["arena_bytes"] == fresh["arena_bytes"] and chosen["device"]["macs"] == fresh["macs"]
    assert abs(chosen["device"]["flash_bytes"] - fresh["flash_bytes"]) <= FLASH_SLACK * fresh["flash_bytes"]
    wider = replace_width(sized, chosen["width"] + 1)
    assert over_budget(wider, k, budget), "a wider net would have fit: sizing did not take the widest"


def replace_width(run, width: int):
    from dataclasses import replace

    from block.sizing import with_width

    return replace(run, net=with_width(run.net, width))


def test_an_impossible_device_budget_is_one_clear_error() -> None:
    run = run_config(parse_args(["--model-preset", "conv3"]), 650, 12)
    with pytest.raises(ConfigError, match=r"too small for this network: the narrowest .* B RAM > 1,024"):
        size_to_budget(run, Budget.from_kb(ram_kb=1))


def test_device_costs_are_cached_per_architecture() -> None:
    run = run_config(parse_args(["--model-preset", "dstcn"]), 650, 12)
    first = device_costs(run)
    assert device_costs(run) == first  # the cache (a new export would vary the file by some bytes)
    assert set(first) == {"flash_bytes", "arena_bytes", "macs"} and first["arena_bytes"] > 4000


def test_train_py_ships_within_flash_and_ram_limits(tmp_path: Path) -> None:
    """The issue's `--max-flash-kb 10 --max-ram-kb 5`: the shipped int8 file and its arena within both, and the
    log and metrics say what the budget was."""
    out = tmp_path / "out"
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert train.main(["--data-directory", str(DEMO), "--out-directory", str(out), "--epochs", "5",
                           "--max-flash-kb", "10", "--max-ram-kb", "5"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (out / "model_quantized_int8_io.tflite").stat().st_size == m["flash_bytes"] <= 10 * 1024
    assert m["arena_bytes"] <= 5 * 1024
    assert m["sizing"]["device_limits"] == {"flash_bytes": 10240, "ram_bytes": 5120, "macs": 0}
    assert m["sizing"]["device"]["arena_bytes"] == m["arena_bytes"]  # measured before training = shipped
    assert "sized to a budget of 1,347 params and 10 KB flash and 5 KB RAM" in log.getvalue()
    assert "over the device budget" not in log.getvalue()
