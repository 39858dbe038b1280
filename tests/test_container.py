"""The block image really builds and runs the way Studio runs it (issue 6).

Builds the Dockerfile with `buildah bud --isolation chroot` (no Docker engine needed) on a local Debian
bookworm base (tests/container/setup.sh, cached), CPU torch variant, then runs the image's ENTRYPOINT with
Studio's argv (--data-directory/--out-directory/--info-file plus one --<param> per parameters.json item)
against a bind-mounted copy of an EI data directory, in a network namespace with no network, and checks the
artifacts. Warm runs reuse buildah's layer cache (~1-2 min, mostly training + export).

Skips only when buildah cannot run here (not Linux x86_64, not root, no apt-get to install it).
Env: DENDRITIC_TORCH_WHEELS (folder with the torch +cpu wheel; default /opt/wheels when it holds one, else
the PyTorch CPU index), DENDRITIC_BLOCK_CACHE / DENDRITIC_BASE_IMAGE (see setup.sh).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "tests" / "container" / "setup.sh"
SHARED_DATA = REPO.parent / "shared" / "data" / "hello-world"
DEMO_DATA = REPO / "demo" / "data"
BASE_IMAGE = os.environ.get("DENDRITIC_BASE_IMAGE", "localhost/dendritic-block-base:bookworm-v1")
# One tag per checkout, so concurrent runs from other checkouts on this machine never swap images.
IMAGE = f"localhost/dendritic-block:cpu-test-{hashlib.sha1(str(REPO).encode()).hexdigest()[:8]}"
ARTIFACTS = ("model.onnx", "model.tflite", "model_quantized_int8_io.tflite", "metrics.json")
EPOCHS = 2
IGNORED_SENTINELS = ("data/X_split_train.npy", "out/model.onnx", "ei-block-data/1/X_split_train.npy",
                     ".venv/pyvenv.cfg", ".git/HEAD", ".ei-block-config", ".pytest_cache/README.md",
                     "block/__pycache__/data.cpython-311.pyc", ".ruff_cache/CACHEDIR.TAG")


def _sh(cmd: list[str], timeout: float, log: Path | None = None, check: bool = True, env: dict | None = None):
    """Run cmd, keep its combined output (also in `log`), and fail with the tail of it (check=True)."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=env)
    proc.wall_s = time.perf_counter() - t
    if log is not None:
        log.write_text(proc.stdout)
    if check and proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-60:])
        pytest.fail(f"exit {proc.returncode}: {' '.join(cmd)}\n--- last lines ---\n{tail}", pytrace=False)
    return proc


def _image_id(name: str) -> str | None:
    proc = subprocess.run(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", name],
                          check=False, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _torch_source_args() -> tuple[list[str], str]:
    """Build args/volumes that give the CPU variant its torch wheel: a local wheel folder when there is one
    (no download.pytorch.org here), else the default PyTorch CPU index from the Dockerfile."""
    pin = re.search(r"^torch==([\w.]+)", (REPO / "requirements.txt").read_text(), re.MULTILINE).group(1)
    wheels = Path(os.environ.get("DENDRITIC_TORCH_WHEELS", "/opt/wheels"))
    if list(wheels.glob(f"torch-{pin}+cpu-*.whl")):
        return (["--build-arg", "TORCH_CPU_INDEX_URL=",
                 "--build-arg", "PIP_INSTALL_ARGS=--no-cache-dir --find-links /wheels",
                 "--volume", f"{wheels}:/wheels:ro"], f"local wheel in {wheels}")
    return [], "PyTorch CPU index"


def _stage_context(dest: Path) -> Path:
    """The build context as a clean clone (plus uncommitted work) has it: git's tracked and untracked,
    not ignored files (~30x faster than `buildah bud REPO`, which walks the ignored .venv/), plus the
    IGNORED_SENTINELS a developer's checkout holds, which .dockerignore must keep out of the image."""
    listing = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], check=False, capture_output=True, text=True)
    if listing.returncode != 0:  # not a git checkout: the folder as it is (.dockerignore still applies)
        return REPO
    for rel in filter(None, [*listing.stdout.split("\0"), *IGNORED_SENTINELS]):
        src = REPO / rel
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel in IGNORED_SENTINELS:  # what a developer's checkout holds; .dockerignore must keep it out
            (dest / rel).write_text("must not reach the image\n")
        elif src.is_file():  # skips files deleted in the working tree
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    setup = _sh(["bash", str(SETUP)], timeout=900, check=False,
                env={**os.environ, "DENDRITIC_BASE_IMAGE": BASE_IMAGE})
    if setup.returncode == 3:
        pytest.skip("buildah cannot run here: " + setup.stdout.strip().splitlines()[-1])
    assert setup.returncode == 0, f"tests/container/setup.sh failed:\n{setup.stdout[-4000:]}"

    logs = tmp_path_factory.mktemp("container-logs")
    old_id = _image_id(IMAGE)
    torch_args, torch_source = _torch_source_args()
    build = _sh(["buildah", "bud", "--isolation", "chroot", "--layers", "--tag", IMAGE,
                 "--iidfile", str(logs / "iid"),
                 "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", "TORCH_VARIANT=cpu",
                 *torch_args, str(_stage_context(tmp_path_factory.mktemp("context")))],
                timeout=1500, log=logs / "build.log")
    new_id = (logs / "iid").read_text().strip().removeprefix("sha256:")
    if old_id and old_id != new_id:  # the tag moved: drop the superseded image (its shared layers stay)
        subprocess.run(["buildah", "rmi", old_id], check=False, capture_output=True)
    info = json.loads(_sh(["buildah", "inspect", "--type", "image", new_id], timeout=60).stdout)
    print(f"\n{setup.stdout.strip()}\nimage {IMAGE} ({new_id[:12]}) built in {build.wall_s:.0f} s"
          f" (torch: {torch_source})")
    return {"name": new_id, "config": info["OCIv1"]["config"], "logs": logs}


def run_in_image(image: dict, argv: list[str], volumes: dict[Path, str] | None = None,
                 timeout: float = 900, log: Path | None = None, check: bool = True):
    """`docker run --network none -v HOST:CTR image ARGV` done with buildah: chroot isolation cannot make a
    network namespace itself (`--network none` is refused there), so the whole `buildah run` goes into a
    fresh one with `unshare --net` (loopback only). `buildah run` ignores the ENTRYPOINT: argv is complete."""
    ctr = _sh(["buildah", "from", "--pull=never", "--quiet", image["name"]], timeout=120).stdout.strip()
    try:
        vols = [a for host, ctr_path in (volumes or {}).items() for a in ("--volume", f"{host}:{ctr_path}")]
        return _sh(["unshare", "--net", "--", "buildah", "run", "--isolation", "chroot", *vols, ctr, "--",
                    *argv], timeout=timeout, log=log, check=check)
    finally:
        subprocess.run(["buildah", "rm", ctr], check=False, capture_output=True)


def studio_argv(data: str, epochs: int) -> list[str]:
    """What Studio passes: the three directories/files plus one --<param> <value> per parameters.json item."""
    argv = ["--data-directory", data, "--out-directory", f"{data}/out",
            "--info-file", f"{data}/train_input.json"]
    for item in json.loads((REPO / "parameters.json").read_text())["parameters"]:
        value = epochs if item["param"] == "epochs" else item["value"]
        argv += [f"--{item['param']}", json.dumps(value) if isinstance(value, bool) else str(value)]
    return argv


def test_image_follows_ei_conventions(image):
    config = image["config"]
    assert config["Entrypoint"] == ["python3", "-u", "train.py"]
    assert config["WorkingDir"] == "/app"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env.get("PYTHONUNBUFFERED") == "1" and "TF_CPP_MIN_LOG_LEVEL" in env
    probe = "cd /app && ls -d requirements.txt train.py " + " ".join(IGNORED_SENTINELS) + " 2>/dev/null; true"
    present = run_in_image(image, ["sh", "-c", probe], timeout=120).stdout.split()
    assert {"requirements.txt", "train.py"} <= set(present), present
    leaked = set(IGNORED_SENTINELS) & set(present)
    assert not leaked, f".dockerignore let these into the image: {sorted(leaked)}"


def test_image_imports_offline(image):
    """The whole stack imports with no network, and there really is none inside."""
    code = ("import socket, torch, tensorflow, onnx, onnx2tf, ai_edge_litert\n"
            "try:\n    socket.create_connection(('pypi.org', 443), timeout=5); print('NET: up')\n"
            "except OSError as e:\n    print('NET: down', e)\n"
            "print('torch', torch.__version__, 'tf', tensorflow.__version__)\n")
    out = run_in_image(image, ["python3", "-c", code], timeout=300).stdout
    assert "NET: down" in out, out[-2000:]
    assert "+cpu" in out, out[-2000:]


@pytest.mark.timeout(1800)
def test_trains_and_exports_like_studio(image, tmp_path):
    assert (REPO / "train.py").exists(), "train.py is missing: the image has no entry point to run"
    src = SHARED_DATA if SHARED_DATA.is_dir() else DEMO_DATA
    data = tmp_path / "data"
    shutil.copytree(src, data)  # a copy: Studio's mount is writable, the shared data is read-only
    data.chmod(0o777)
    for p in data.rglob("*"):
        p.chmod(0o777 if p.is_dir() else 0o666)

    argv = [*image["config"]["Entrypoint"], *studio_argv("/data", EPOCHS)]
    proc = run_in_image(image, argv, volumes={data: "/data"}, timeout=1500, log=tmp_path / "train.log")
    print(f"\ncontainer train ({src}, {EPOCHS} epochs) took {proc.wall_s:.0f} s; log tail:\n"
          + "\n".join(proc.stdout.splitlines()[-15:]))

    out = data / "out"
    for name in ARTIFACTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, f"{name} missing/empty in {out}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics

    import onnx
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model)
    n_features = np.load(data / "X_split_test.npy", mmap_mode="r").shape[1]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert int(np.prod(dims)) == n_features, f"ONNX input {dims} is not one flat row of {n_features}"

    from ai_edge_litert.interpreter import Interpreter
    x = np.load(data / "X_split_test.npy")[:1]
    n_classes = np.load(data / "Y_split_test.npy").shape[1]
    for name, io_dtype in (("model.tflite", np.float32), ("model_quantized_int8_io.tflite", np.int8)):
        interp = Interpreter(model_path=str(out / name))
        interp.allocate_tensors()
        inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
        assert inp["dtype"] == outp["dtype"] == io_dtype, f"{name}: I/O {inp['dtype']}/{outp['dtype']}"
        feed = x.reshape(inp["shape"])
        if io_dtype == np.int8:
            scale, zero = inp["quantization"]
            feed = np.clip(np.round(feed / scale + zero), -128, 127)
        interp.set_tensor(inp["index"], feed.astype(io_dtype))
        interp.invoke()
        assert interp.get_tensor(outp["index"]).size == n_classes, name


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc (no psutil): buildah run's chroot helper sits in between."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _train_py_pid(pid: int) -> int | None:
    for child in _descendants(pid):
        try:
            argv = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # the python3 running train.py, not buildah itself (whose own argv also ends with `-- python3 -u train.py`)
        if b"train.py" in argv and Path(argv[0].decode(errors="replace")).name.startswith("python"):
            return child
    return None


@pytest.mark.timeout(900)
def test_stop_during_training_exits_cleanly(image, tmp_path):
    """`docker stop` in the middle of training: SIGTERM to the entry point's python3, then (as Docker) at most
    10 s before SIGKILL. The job must exit 143 by itself with one `ERR: terminated (SIGTERM)` line and no
    traceback, and leave nothing in the out directory (no model files, no hidden .build-*/.reference-*).

    Under Docker python3 is PID 1, which the kernel shields from every signal it has no handler for, so
    without train.py's handler `docker stop` would wait the full grace period and SIGKILL the job; buildah's
    chroot isolation has no PID namespace, so here the signal goes to the same python3 process as an ordinary
    PID (the handler is what both cases need)."""
    data = tmp_path / "data"
    shutil.copytree(DEMO_DATA, data)
    data.chmod(0o777)
    for p in data.rglob("*"):
        p.chmod(0o777 if p.is_dir() else 0o666)
    # Training that would run for minutes, so the signal surely lands in it (the last flag wins in argparse).
    argv = [*image["config"]["Entrypoint"], *studio_argv("/data", 5000), "--model-format", "traditional",
            "--early-stopping-patience", "5000"]
    log, pid = tmp_path / "stop.log", None
    ctr = _sh(["buildah", "from", "--pull=never", "--quiet", image["name"]], timeout=120).stdout.strip()
    try:
        with log.open("w") as sink:
            proc = subprocess.Popen(["unshare", "--net", "--", "buildah", "run", "--isolation", "chroot",
                                     "--volume", f"{data}:/data", ctr, "--", *argv],
                                    stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while not re.search(r"^epoch \d+/\d+ ", log.read_text(), re.MULTILINE):
                assert proc.poll() is None, f"the job ended before training:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no epoch line in 600 s:\n{log.read_text()[-3000:]}"
                time.sleep(0.1)
            pid = _train_py_pid(proc.pid)
            assert pid is not None, "no train.py process under buildah run"
            t0 = time.monotonic()
            os.kill(pid, signal.SIGTERM)  # what `docker stop` sends to the container's PID 1
            try:
                rc = proc.wait(timeout=10)  # docker stop's default grace period
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running 10 s after SIGTERM (docker stop would SIGKILL it):\n"
                            f"{log.read_text()[-3000:]}")
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:  # the test failed: end the job (buildah first, then its train.py)
                proc.kill()
                proc.wait()
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
    finally:
        subprocess.run(["buildah", "rm", ctr], check=False, capture_output=True)
    text = log.read_text()
    print(f"\ncontainer stop: exit {rc} {took:.1f} s after SIGTERM; log tail:\n"
          + "\n".join(text.splitlines()[-5:]))
    assert rc == 143, text[-3000:]
    assert "Traceback" not in text, text[-4000:]
    assert [ln for ln in text.splitlines() if ln.startswith("ERR:")] == ["ERR: terminated (SIGTERM)"], text[-3000:]
    out = data / "out"
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], f"docker stop left {left} in the out directory"
