"""The project installs as a package (issue 22): the wheel builds offline, declares requirements.txt's pins,
and works in a fresh venv from a directory outside the checkout: the library, the block's modules, its
parameters.json (package data) and the tools, as `python -m` and as console commands."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in the fresh venv: one PB step on a toy net proves the library works, not only that it imports.
CHECK = """
import json, sys, torch
from torch import nn
import block.params, dendritic, kws.nets.convfc
from dendritic import DendriticModel, PBConfig
dm = DendriticModel(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), PBConfig(mode="gd"))
loss, _ = dm.training_step(torch.randn(16, 4), torch.randint(0, 2, (16,)), nn.functional.cross_entropy)
print(json.dumps({"dendritic": dendritic.__file__, "kws": kws.nets.convfc.__file__, "loss": float(loss),
                  "params": len(block.params.load_parameters()), "layers": sorted(dm.layers)}))
"""


def _run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what the venv itself provides
    return subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)


def _source_copy(dest: Path) -> Path:
    """The files git would ship (tracked, or new and not ignored), links kept: setuptools builds in the source
    tree (build/, *.egg-info), so the checkout stays clean, and a file left out of git fails here too."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    assert listed.returncode == 0, listed.stderr
    for rel in filter(None, listed.stdout.split("\0")):
        src = ROOT / rel
        if src.is_file() or src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)
    return dest


def test_the_wheel_installs_and_runs_in_a_clean_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    src = _source_copy(tmp_path / "src")
    built = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                  "--no-index", "-q", "-w", str(dist)], tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        shipped_params = z.read("block/parameters.json")
    for path in ("dendritic/pb.py", "kws/nets/convfc.py", "kws/trainer.py", "block/pipeline.py", "export/fold.py",
                 "features/mfcc.py", "sweep/cli.py", "train.py"):
        assert path in names, path
    assert not any(n.startswith(("tests/", "bench/", "demo/")) for n in names)
    assert shipped_params == (ROOT / "parameters.json").read_bytes()  # the link's target, not a link
    pins = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert sorted(re.findall(r"^Requires-Dist: (.+)$", meta, re.MULTILINE)) == sorted(pins)
    assert "dendritic-train = train:main" in entry_points

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    installed = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                      str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    # The dependencies come from this interpreter's site-packages, appended as a plain path: a .pth line is not
    # a site directory, so the editable install's own .pth (which maps the checkout) stays inactive there.
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    out = _run([str(py), "-c", CHECK], tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["dendritic"].startswith(str(site)) and got["kws"].startswith(str(site))
    assert got["loss"] > 0 and got["params"] > 10 and got["layers"] == ["0", "2"]
    for tool in (["-m", "export"], ["-m", "sweep"], ["-m", "features"], ["-m", "features.predict"]):
        helped = _run([str(py), *tool, "--help"], tmp_path)
        assert helped.returncode == 0 and helped.stdout.startswith("usage:"), (tool, helped.stderr)
    for command in ("dendritic-train", "dendritic-export", "dendritic-features", "dendritic-predict"):
        helped = _run([str(venv / "bin" / command), "--help"], tmp_path)
        assert helped.returncode == 0 and helped.stdout.startswith("usage:"), (command, helped.stderr)
