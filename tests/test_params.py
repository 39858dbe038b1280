"""parameters.json is what Studio shows and passes; block.params builds the CLI from it. These tests pin
the EI-required fields, the documented defaults, and that every UI value round-trips through the parser."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from block.params import (
    DATA_DIRECTORY,
    OUT_DIRECTORY,
    PARAMETERS_JSON,
    build_parser,
    defaults_note,
    load_parameters,
    parse_args,
    select_values,
)

REPO = Path(__file__).resolve().parent.parent
PARAMS = load_parameters()
BY_PARAM = {p["param"]: p for p in PARAMS}
FIXED = ["--data-directory", "d", "--out-directory", "o"]
FIXED_OPTIONS = {"-h", "--help", "--data-directory", "--out-directory", "--info-file", "--input-file",
                 "--holdout-directory"}
BOOLEANS = [p["param"] for p in PARAMS if p["type"] == "boolean"]
CUSTOM_ONLY = ["conv-type", "conv-layers", "conv-width", "width-growth", "kernel-size", "linear-layers",
               "linear-width"]
DENDRITE_ONLY = ["max-dendrites", "switch-patience", "improvement-threshold", "init-multiplier",
                 "dendrite-activation", "perforate", "dendrite-patience", "dendrite-update", "max-dendrite-tries", "perforate-layers",
                 "dendrite-dilation", "dendrite-kernel"]
CC_ONLY = ["candidate-pool", "install-noise-ratio"]  # the correlation rule's knobs: no meaning in gd
RECIPE = ["augment-time-shift", "augment-time-masks", "augment-time-mask-width", "augment-freq-masks", "augment-freq-mask-width", "augment-time-warp", "mixup-alpha", "auto-weight-classes", "label-smoothing", "distill-weight", "distill-temperature", "teacher-width"]  # the training recipe (issue 13), all advanced
ADVANCED = ["batch-size", "max-dendrite-tries", "perforate-layers", "dendrite-dilation", "dendrite-kernel", "candidate-pool", "install-noise-ratio", "early-stopping-patience", "lr-patience", "mfcc-coefficients", "seed",
            "search-trials", "max-params", "max-flash-kb", "max-ram-kb", "max-macs", "export-onnx", *RECIPE]
RECIPE_DEFAULTS = {"augment-time-shift": 4, "augment-time-masks": 1, "augment-time-mask-width": 4, "augment-freq-masks": 1, "augment-freq-mask-width": 2, "augment-time-warp": 0, "mixup-alpha": 0, "auto-weight-classes": False, "label-smoothing": 0.1, "distill-weight": 0, "distill-temperature": 4, "teacher-width": 3}
# The block's documented interface: param -> default (what the team agreed; changing one is an interface change).
EXPECTED_DEFAULTS = {
    **RECIPE_DEFAULTS,
    "epochs": 200, "learning-rate": 0.01, "batch-size": 32, "model-preset": "auto",
    "conv-type": "conv1d", "conv-layers": 2, "conv-width": 8, "width-growth": "doubling", "kernel-size": 3,
    "linear-layers": 1, "linear-width": 16, "dropout": "auto", "input-noise": 0.3, "model-format": "traditional",
    "max-dendrites": 2, "switch-patience": 10, "improvement-threshold": 0.0001, "init-multiplier": 0.01,
    "dendrite-activation": "relu", "perforate": "all", "dendrite-patience": 3, "dendrite-update": True,
    "max-dendrite-tries": 2, "perforate-layers": "", "dendrite-dilation": 1, "dendrite-kernel": 0, "candidate-pool": 1, "install-noise-ratio": 0, "early-stopping-patience": 30, "lr-patience": 10, "mfcc-coefficients": 13, "seed": 3,
    "search-trials": "0", "max-params": "auto", "max-flash-kb": 0, "max-ram-kb": 0, "max-macs": 0,
    "export-onnx": True,
}
EXPECTED_SELECTS = {
    "model-preset": ["auto", "conv3", "ei-default", "paper-baseline", "dstcn", "dstcn-multikernel", "custom"],
    "conv-type": ["conv1d", "conv2d", "dstcn", "dstcn-multikernel"],
    "width-growth": ["uniform", "doubling"], "model-format": ["traditional", "gd", "cc"],
    "dendrite-activation": ["tanh", "sigmoid", "relu", "linear"], "perforate": ["linear", "conv", "all"],
}


def dest(param: str) -> str:
    return param.replace("-", "_")


def other_value(item: dict):
    """A valid value different from the default, as the string Studio would pass and the parsed value."""
    value = item["value"]
    if item["type"] == "select":
        new = next(v for v in select_values(item) if v != value)
        return new, new
    if item["type"] == "boolean":
        return ("0", False) if value else ("1", True)
    if item["type"] == "int":  # + 7, or a step that stays in range and odd (block.params.RANGES)
        step = {"conv-layers": 2, "kernel-size": 2, "linear-layers": 2, "dendrite-kernel": 3}
        new = value + step.get(item["param"], 7)
        return str(new), new
    if item["param"] == "max-params":  # "auto" or a parameter count
        return "5000", 5000
    if item["param"] == "search-trials":  # "auto" (as many as fit) or a trial count
        return "auto", "auto"
    if item["param"] == "perforate-layers":  # layer names
        return "convs.1", "convs.1"
    if item["param"] == "dropout":  # "auto" or a rate
        return "0.25", 0.25
    return str(value + 0.125), value + 0.125


def test_ei_top_level_fields() -> None:
    doc = json.loads(PARAMETERS_JSON.read_text())
    assert doc["version"] == 1 and doc["type"] == "machine-learning"
    info = doc["info"]
    assert info["name"] == "Dendritic NN" and len(info["description"]) > 20
    assert info["operatesOn"] == "other"  # a missing value becomes "image" at first push (ei-contract §9 #2)
    assert info["indRequiresGpu"] is False
    # No invented address: without repositoryUrl the CLI takes the pushing user's git remote (ei-contract §2.1);
    # the README says where to set one. A value here would be synced to Studio on every push (§2.5).
    assert "repositoryUrl" not in info
    assert list(doc) == ["version", "type", "info", "parameters"]
    # Only the `info` fields of the CLI's MachineLearningBlockParametersJson (ei-contract §2.1), so a misspelt
    # key (which would just have no effect) fails here.
    assert set(info) <= {"name", "description", "operatesOn", "objectDetectionLastLayer", "imageInputScaling",
                         "indRequiresGpu", "repositoryUrl", "customModelVariants", "displayCategory",
                         "isPublic", "publicProjectTierAvailability", "sourceCodeDownloadStaffOnly"}
    assert isinstance(doc["parameters"], list)


@pytest.mark.parametrize("item", PARAMS, ids=lambda p: p["param"])
def test_item_fields(item: dict) -> None:
    assert {"name", "value", "type", "help", "param"} <= item.keys()
    assert item["type"] in {"int", "float", "select", "boolean", "string"}
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", item["param"])
    assert len(item["name"]) >= 3 and len(item["help"]) >= 40  # the tooltip says what it does and when to change it
    if item["type"] == "select":
        assert item["value"] in select_values(item)
    if "section" in item:
        assert item["section"] == "advanced"
    if "showIf" in item:
        cond = item["showIf"]
        assert cond["operator"] in {"eq", "neq"} and isinstance(cond["value"], str)
        assert cond["value"] in select_values(BY_PARAM[cond["parameter"]])


def test_documented_parameter_set() -> None:
    assert [p["param"] for p in PARAMS if p["param"] in EXPECTED_DEFAULTS] == [p["param"] for p in PARAMS]
    assert {p["param"]: p["value"] for p in PARAMS} == EXPECTED_DEFAULTS
    assert {k: select_values(BY_PARAM[k]) for k in EXPECTED_SELECTS} == EXPECTED_SELECTS
    assert [p for p in CUSTOM_ONLY if BY_PARAM[p].get("showIf", {}).get("value") != "custom"] == []
    assert [p for p in DENDRITE_ONLY if BY_PARAM[p].get("showIf") !=
            {"parameter": "model-format", "operator": "neq", "value": "traditional"}] == []
    assert sorted(p["param"] for p in PARAMS if p.get("section") == "advanced") == sorted(ADVANCED)
    assert BY_PARAM["epochs"]["name"] == "Number of training cycles"


@pytest.mark.parametrize("item", PARAMS, ids=lambda p: p["param"])
def test_default_and_other_value_round_trip(item: dict) -> None:
    name = dest(item["param"])
    default = 0 if item["param"] == "search-trials" else item["value"]  # Studio's string "0" parses to 0
    assert getattr(parse_args(FIXED), name) == default
    assert getattr(parse_args(FIXED + [f"--{item['param']}", str(item["value"])]), name) == default
    text, parsed = other_value(item)
    assert getattr(parse_args(FIXED + [f"--{item['param']}", text]), name) == parsed


def test_every_parser_option_is_declared_in_parameters_json() -> None:
    options = {o for action in build_parser(PARAMS)._actions for o in action.option_strings}
    assert options - FIXED_OPTIONS == {f"--{p['param']}" for p in PARAMS}


@pytest.mark.parametrize("param", BOOLEANS)
@pytest.mark.parametrize(("word", "value"), [("1", True), ("0", False), ("true", True), ("false", False),
                                             ("True", True), ("FALSE", False), ("yes", True), ("no", False)])
def test_booleans_accept_studio_and_human_spellings(param: str, word: str, value: bool) -> None:
    assert getattr(parse_args(FIXED + [f"--{param}", word]), dest(param)) is value


def test_fixed_arguments_and_aliases() -> None:
    args = parse_args(["--data-directory", "/home", "--out-directory", "/home/out", "--input-file", "t.json",
                       "--holdout-directory", "h"])
    assert (args.data_directory, args.out_directory, args.info_file, args.holdout_directory) == (
        "/home", "/home/out", "t.json", "h")
    assert parse_args(FIXED + ["--info-file", "i.json"]).info_file == "i.json"
    assert parse_args(FIXED).info_file is None and parse_args(FIXED).holdout_directory is None
    assert parse_args(FIXED).max_dendrites == 2  # snake_case dests


def test_directories_default_to_the_runner_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`edge-impulse-blocks runner` mounts the data at /home and passes no directories (block.params)."""
    assert (DATA_DIRECTORY, OUT_DIRECTORY) == ("/home", "/home/out")
    assert parse_args(["--out-directory", "o"]).data_directory == "/home"
    monkeypatch.setattr("block.params.DATA_DIRECTORY", str(tmp_path))
    (tmp_path / "X_split_train.npy").write_bytes(b"")  # the runner's mount: no arguments at all is fine there
    assert parse_args([]).out_directory == OUT_DIRECTORY


def test_no_arguments_without_mounted_data_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("block.params.DATA_DIRECTORY", str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        parse_args([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ERR: no arguments: pass --data-directory DIR and --out-directory DIR")


def test_the_runners_argv_parses(capsys: pytest.CaptureFixture) -> None:
    """What cli/block-runner.ts passes (prompt defaults 30 and 0.0005): parses, warns once, gets a note."""
    args = parse_args(["--epochs", "30", "--learning-rate", "0.0005", "--validation-set-size", "0.2",
                       "--input-shape", "(650,)"])
    assert (args.data_directory, args.out_directory, args.epochs, args.learning_rate) == (
        "/home", "/home/out", 30, 0.0005)
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert defaults_note(args) == ("note: epochs=30 and learning-rate=0.0005 differ from the block's "
                                   "defaults (200, 0.01); the EI runner passes its own values")


@pytest.mark.parametrize(("argv", "note"), [
    ([], None),
    (["--epochs", "200", "--learning-rate", "0.01"], None),
    (["--epochs", "30"],
     "note: epochs=30 differs from the block's default (200); the EI runner passes its own value"),
    (["--learning-rate", "0.005"],
     "note: learning-rate=0.005 differs from the block's default (0.01); the EI runner passes its own value"),
    (["--max-dendrites", "5"], None),  # only the two values the runner always passes are noted
])
def test_defaults_note(argv: list[str], note: str | None) -> None:
    assert defaults_note(parse_args(FIXED + argv)) == note


def test_defaults_note_reads_the_given_parameters() -> None:
    params = [{**p, "value": 30} if p["param"] == "epochs" else p for p in PARAMS]
    args = parse_args(FIXED + ["--epochs", "30"])
    assert defaults_note(args, params) is None
    assert defaults_note(args, [p for p in PARAMS if p["param"] != "epochs"]) is None


def test_unknown_args_give_one_warning_line(capsys: pytest.CaptureFixture) -> None:
    args = parse_args(FIXED + ["--input-shape", "(650,)", "--epochs", "3", "--some-flag"])
    assert args.epochs == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--input-shape" in lines[0] and "--some-flag" in lines[0]
    assert "did you mean" not in lines[0]  # the runner's own flags are not taken for typos of ours


@pytest.mark.parametrize(("typo", "meant"), [("--epoch", "--epochs"), ("--learning_rate", "--learning-rate"),
                                             ("--max-param=4000", "--max-params")])
def test_a_mistyped_flag_stays_a_warning_that_names_the_real_one(typo: str, meant: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    args = parse_args(FIXED + [typo, "5"] if "=" not in typo else FIXED + [typo])
    assert args.epochs == 200  # still ignored: Studio passes flags we do not declare
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("WARNING: ignoring unknown arguments:")
    assert line.endswith(f"({typo.split('=')[0]}: did you mean {meant}?)")


def test_known_args_only_print_nothing(capsys: pytest.CaptureFixture) -> None:
    parse_args(FIXED + ["--epochs", "3"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("argv", "message"), [
    (FIXED + ["--model-format", "dendrites"], r"--model-format: invalid choice: 'dendrites' \(choose from 'traditional'"),
    (FIXED + ["--dendrite-update", "maybe"], r"--dendrite-update: 'maybe' is not a boolean"),
    (FIXED + ["--epochs", "-1"], r"--epochs: '-1' is not a non-negative integer"),
    (FIXED + ["--learning-rate", "fast"], r"--learning-rate: 'fast' is not a non-negative number"),
    (FIXED + ["--epochs", "0"], r"--epochs: '0' is out of range: must be >= 1"),
    (FIXED + ["--learning-rate", "0"], r"--learning-rate: '0' is out of range: must be > 0"),
    (FIXED + ["--dropout", "1"], r"--dropout: '1' is out of range: must be 'auto' or in \[0, 1\)"),
    (FIXED + ["--kernel-size", "4"], r"--kernel-size: '4' is out of range: must be an odd number"),
    (FIXED + ["--linear-layers", "4"], r"--linear-layers: '4' is out of range: must be 1-3"),
    (FIXED + ["--max-params", "lots"], r"--max-params: 'lots' is neither 'auto' nor a non-negative integer"),
    (FIXED + ["--search-trials", "lots"], r"--search-trials: 'lots' is neither 'auto' nor a non-negative"),
    (FIXED + ["--epoch", "3"], None),  # no abbreviations: a runner flag must never be taken for one of ours
])
def test_bad_values_exit_with_an_argparse_error(argv: list[str], message: str | None,
                                                capsys: pytest.CaptureFixture) -> None:
    if message is None:
        assert parse_args(argv).epochs == 200
        return
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ERR: argument") and re.search(message, err[-1])
    assert len(err) <= 3 and "Traceback" not in "".join(err)


def test_help_renders() -> None:
    assert "--max-dendrites" in build_parser(PARAMS).format_help()  # a stray % in a help text would raise here


@pytest.mark.parametrize("path", [REPO / "train.py", *sorted((REPO / "block").glob("*.py"))], ids=lambda p: p.name)
def test_no_legacy_validation_flag_literal(path: Path) -> None:
    """The CLI registers a block whose train.py contains this string as legacy v1 (ei-contract §2.5)."""
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    assert "--validation-set-size" not in path.read_text()


def test_readme_parameter_table_matches_parameters_json() -> None:
    """Every parameter, its default and help text appear in the README exactly as Studio shows them."""
    from block.params import markdown_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert markdown_table(load_parameters()) in readme, "regenerate the README table with block.params.markdown_table"
