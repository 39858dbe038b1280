"""The block's training loop: a plain PyTorch loop around `DendriticModel` (traditional, GD or CC).

The datasets are tiny (a few thousand 650-float rows), so they live on the device as tensors and batches
are index slices: no DataLoader, and no host sync inside the batch loop (losses and correct counts are
summed on the device and read once per epoch).
"""
from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from dendritic import ops
from dendritic.pb import DendriticModel, PBConfig
from dendritic.schedule import Action, Phase, ScheduleConfig
from kws import losses
from kws.augment import AugmentConfig, augment, mixup
from kws.errors import ConfigError, TimeLimitError
from kws.lockstep import Lockstep
from kws.nets import AnyNetConfig, build_net, config_from_dict

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100  # hard cap on epochs, all phases included
    learning_rate: float = 0.005
    batch_size: int = 32
    dendrite_batch_factor: int = 4  # dendrite phases use batch_size x this: candidate training is per-op
    #   overhead bound at batch 32, and a correlation estimated over more samples is less noisy
    lr_patience: int = 5  # ReduceLROnPlateau on the validation score
    seed: int = 3
    device: str | None = None  # None: cuda when available
    threads: int = 1  # CPU intra-op threads: these nets are too small to gain from more, and extra
    #                   threads spin and stall badly when the (2-core) machine is busy
    max_seconds: float | None = None  # EI's maxTrainingTimeSeconds
    fail_fast: bool = True  # epoch 1 says max_seconds cannot hold every epoch: raise (EI's rule); False: train
    #                         until 0.9 of it and keep the best checkpoint (early stopping usually ends first)
    log_interval_s: float = 10.0
    fused: bool = True  # ops.py's hand-written backward (~1.7x faster); False: plain autograd, to debug maths
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # feature-domain augmentation (augment.py)
    class_weights: bool = False  # weight the loss by inverse class frequency (EI's "auto-weight classes")
    label_smoothing: float = 0.0  # targets (1 - e) * one-hot + e / classes: softer, better-calibrated logits
    distill_weight: float = 0.0  # > 0: share of the loss on a wider teacher's soft targets (Hinton); 0 = off
    distill_temperature: float = 4.0
    teacher_width: float = 3.0  # the teacher's conv and hidden widths, as a multiple of the student's

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1 or self.dendrite_batch_factor < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.lr_patience < 0:
            raise ConfigError("lr patience must be >= 0")
        self.augment.validate()
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ConfigError(f"distillation weight must be in [0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0 or not self.teacher_width >= 1:
            raise ConfigError("distillation temperature must be > 0 and the teacher width multiple >= 1")
        if self.distill_weight > 0 and self.augment.mixup_alpha > 0:
            raise ConfigError("mixup and distillation cannot be combined (the teacher's targets are per sample)")


@dataclass(frozen=True)
class RunConfig:
    """Everything `fit` needs to build and train one model, passed as one object (and saved in model.pt)."""

    net: AnyNetConfig
    pb: PBConfig = field(default_factory=PBConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def mode(self) -> str:
        return self.pb.mode

    def validate(self) -> None:
        for cfg in (self.net, self.pb, self.schedule, self.train):
            cfg.validate()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Inverse of to_dict (JSON or torch.load round trips turn tuples into lists)."""
        train = dict(d["train"])
        train["augment"] = AugmentConfig(**train.get("augment", {}))
        return cls(config_from_dict(d["net"]), PBConfig(**d["pb"]), ScheduleConfig(**d["schedule"]), TrainConfig(**train))


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_holdout: np.ndarray | None = None
    y_holdout: np.ndarray | None = None


@dataclass
class EpochRecord:
    epoch: int
    phase: str
    dendrites: int
    params: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    holdout_acc: float | None
    lr: float
    seconds: float
    action: str
    cycle_best: bool = False  # the schedule counted this epoch as its cycle's best (a checkpoint candidate)


@dataclass
class FitResult:
    model: DendriticModel
    history: list[EpochRecord]
    seconds: float
    cycles: list[dict] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.history)


def score(val_acc: float, val_loss: float) -> float:
    """Validation score the schedule maximises: accuracy, with the loss breaking ties between equal
    accuracies (small validation sets plateau in accuracy long before the loss stops improving)."""
    return val_acc - 1e-3 * min(val_loss, 100.0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), chunk):
        logits = model(x[i:i + chunk])
        loss += nn.functional.cross_entropy(logits, y[i:i + chunk], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + chunk]).sum()
    return float(loss) / len(x), float(correct) / len(x)


def build_model(run: RunConfig, device: torch.device | str = "cpu") -> DendriticModel:
    """The network wrapped for PB, with Adam and ReduceLROnPlateau rebuilt inside on every restructure."""
    train_cfg = run.train
    net = build_net(run.net).to(device)
    lr = train_cfg.learning_rate
    return DendriticModel(
        # fused Adam: one kernel instead of a Python loop over ~20-30 small tensors (-70 % step time)
        net, run.pb, lambda ps: torch.optim.Adam(ps, lr=lr, fused=True), run.schedule,
        make_scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=0.5, patience=train_cfg.lr_patience), fused=train_cfg.fused)


def teacher_config(run: RunConfig) -> RunConfig:
    """The distillation teacher: the same net `teacher_width` times wider, trained traditionally."""
    m, net = run.train.teacher_width, run.net
    if hasattr(net, "linear_width"):  # conv+FC: hidden linear layers and explicit channel lists scale too
        wider = replace(net, width=round(net.width * m), linear_width=round(net.linear_width * m),
                        channels=None if net.channels is None else tuple(round(c * m) for c in net.channels))
    else:
        wider = replace(net, width=round(net.width * m))
    return RunConfig(wider, PBConfig(mode="traditional"), run.schedule, replace(run.train, distill_weight=0.0))


def train_teacher(run: RunConfig, data: Splits, log: Log = print) -> nn.Module:
    """Train the teacher for `run` on the same data and recipe; returns it in eval mode."""
    cfg = teacher_config(run)
    log(f"distillation: training a {run.train.teacher_width:g}x wider teacher first")
    result = fit(cfg, data, lambda line: log(f"teacher: {line}"))
    return result.model.eval()


def _epoch_targets(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, n_classes: int,
                   class_w: torch.Tensor | None, teacher: nn.Module | None, gen: torch.Generator):
    """One epoch's (inputs, targets, loss_fn, loss_grad). Plain labels keep F.cross_entropy (the original
    recipe, bit for bit); mixup, label smoothing and class weights train on soft targets with per-row weights; distillation
    on the teacher's logits for these very (augmented) inputs. Targets are tuples sliced per batch."""
    if teacher is not None:
        with torch.no_grad():
            t_logits = teacher(x)
        w = None if class_w is None else class_w[y]
        temp, a = cfg.distill_temperature, cfg.distill_weight
        return (x, (y, t_logits, w), lambda z, b: losses.distillation_loss(z, b[0], b[1], temp, a, b[2]),
                lambda z, b: losses.distillation_loss_grad(z, b[0], b[1], temp, a, b[2]))
    if cfg.augment.mixup_alpha > 0 or class_w is not None or cfg.label_smoothing > 0:
        x, t = mixup(x, y, n_classes, cfg.augment.mixup_alpha, gen)
        if cfg.label_smoothing > 0:
            t = t * (1 - cfg.label_smoothing) + cfg.label_smoothing / n_classes
        w = None if class_w is None else losses.row_weights(t, class_w)
        return (x, (t, w), lambda z, b: losses.soft_cross_entropy(z, *b),
                lambda z, b: losses.soft_cross_entropy_grad(z, *b))
    return x, (y,), lambda z, b: nn.functional.cross_entropy(z, b[0]), lambda z, b: ops.cross_entropy_grad(z, b[0])


@dataclass
class _Epoch:
    """One epoch's shuffled, augmented inputs and targets for one run, and how to take its loss."""

    x: torch.Tensor
    y: torch.Tensor
    targets: tuple
    loss_fn: Callable
    loss_grad: Callable
    batch_size: int
    t0: float
    phase: Phase
    dendrites: int


class _Run:
    """One training run's state: `fit` drives one, `fit_many` several side by side (kws/lockstep.py).

    Each run owns its random streams (shuffle and augmentation: `gen`; the fused pass's dropout and input
    noise: `rand`; everything on the global generator, e.g. weight and candidate init: a saved state swapped
    in around its own work), so a run gives the same numbers whether it trains alone or beside others."""

    def __init__(self, run: RunConfig, data: Splits, log: Log, teacher: nn.Module | None,
                 on_epoch: Callable[[EpochRecord], None] | None):
        run.validate()
        self.run, self.cfg, self.on_epoch = run, run.train, on_epoch
        seed_everything(self.cfg.seed)
        self.device = pick_device(self.cfg.device)
        if self.device.type == "cpu":
            torch.set_num_threads(self.cfg.threads)
        self.model = build_model(run, self.device)
        self.rng_state = torch.get_rng_state()

        def tensor(a, dtype):
            return None if a is None else torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)

        self.xt, self.yt = tensor(data.x_train, torch.float32), tensor(data.y_train, torch.long)
        self.xv, self.yv = tensor(data.x_val, torch.float32), tensor(data.y_val, torch.long)
        self.xh, self.yh = tensor(data.x_holdout, torch.float32), tensor(data.y_holdout, torch.long)
        self.gen = torch.Generator(device="cpu").manual_seed(self.cfg.seed)
        self.rand = torch.Generator(device=self.device).manual_seed(self.cfg.seed + 1)
        self.class_w = None
        if self.cfg.class_weights:
            counts = np.bincount(np.asarray(data.y_train), minlength=run.net.n_classes)
            self.class_w = losses.class_weights(counts).to(self.device)
        self.teacher = teacher if teacher is not None and self.cfg.distill_weight > 0 else None
        self.history: list[EpochRecord] = []
        self.start = self.last_log = time.monotonic()
        self.progress = _progress_bar(self.cfg.epochs)
        self.say = self.progress.write if self.progress else log
        self.finished, self.restructured = False, False
        self.error: BaseException | None = None
        self.say(f"training on {self.device}: {len(self.xt)} train / {len(self.xv)} validation rows, "
                 f"mode={run.pb.mode}, max {self.cfg.epochs} epochs, {self.model.deployed_params()} params")
        if self.xh is not None:
            self.say(f"holdout ({len(self.xh)} rows): holdout_acc is measured on the epochs that set a new best of "
                     "their cycle (the checkpoint candidates) and shown only there; it never chooses anything")
        self.val_loss, self.val_acc = evaluate(self.model, self.xv, self.yv)

    @contextmanager
    def own_rng(self):
        """The global generator as this run left it (weight init, GD/CC dendrite init, nn.Dropout)."""
        torch.set_rng_state(self.rng_state)
        try:
            yield
        finally:
            self.rng_state = torch.get_rng_state()

    def begin_epoch(self) -> _Epoch:
        cfg, model, n = self.cfg, self.model, len(self.xt)
        t0, phase, dendrites = time.monotonic(), model.phase, model.num_dendrites
        model.train()
        perm = torch.randperm(n, generator=self.gen).to(self.device)
        x, y = self.xt.index_select(0, perm), self.yt.index_select(0, perm)  # one gather per epoch
        # every phase sees the same augmented data policy (candidates correlate with errors on it too)
        x = augment(x, self.run.net.frames, self.run.net.n_coeffs, cfg.augment, self.gen)
        x, targets, loss_fn, loss_grad = _epoch_targets(x, y, cfg, self.run.net.n_classes, self.class_w,
                                                        self.teacher, self.gen)
        bs = cfg.batch_size * (cfg.dendrite_batch_factor if phase is Phase.DENDRITE else 1)
        return _Epoch(x, y, targets, loss_fn, loss_grad, bs, t0, phase, dendrites)

    def batches(self, ep: _Epoch):
        """(start, the batch's targets) over the epoch; logs a line when a long epoch goes quiet."""
        n = len(ep.x)
        for i in range(0, n, ep.batch_size):
            yield i, tuple(None if t is None else t[i:i + ep.batch_size] for t in ep.targets)
            if time.monotonic() - self.last_log > self.cfg.log_interval_s:  # keep Studio's log alive
                self.say(f"epoch {len(self.history) + 1} {100 * min(i + ep.batch_size, n) // n}% done")
                self.last_log = time.monotonic()

    def train_alone(self, ep: _Epoch) -> tuple[list, list]:
        batch_losses, outs = [], []  # reduced once per epoch: per-batch bookkeeping ops cost as much as a layer
        for i, target in self.batches(ep):
            loss, logits = self.model.training_step(ep.x[i:i + ep.batch_size], target, ep.loss_fn, ep.loss_grad,
                                                    self.rand)
            batch_losses.append(loss)
            outs.append(logits)
        return batch_losses, outs

    def end_epoch(self, epoch: int, ep: _Epoch, batch_losses: list, outs: list) -> None:
        """Validation, the schedule's decision, the record and log line; sets `finished` when done."""
        model, cfg, n = self.model, self.cfg, len(ep.x)
        sizes = torch.tensor([len(o) for o in outs], dtype=torch.float32, device=self.device)
        loss_sum = torch.stack(batch_losses) @ sizes
        correct = (torch.cat(outs).argmax(1) == ep.y).sum()  # under dropout/noise, as Keras reports it
        if ep.phase is Phase.NEURON:  # frozen neurons in a dendrite phase: validation cannot change
            self.val_loss, self.val_acc = evaluate(model, self.xv, self.yv)
        lr = model.optimizer.param_groups[0]["lr"]
        params = model.deployed_params()  # this epoch's architecture (end_epoch may restructure it)
        decision = model.end_epoch(score(self.val_acc, self.val_loss))
        self.restructured |= decision.action is not Action.CONTINUE
        # The holdout is only reported at checkpoint candidates (a cycle's best epoch: CONTINUE, so the
        # model is unchanged); it is a test set, never a selection criterion.
        hold_acc = evaluate(model, self.xh, self.yh)[1] if self.xh is not None and decision.cycle_best else None
        rec = EpochRecord(epoch, ep.phase.value, ep.dendrites, params,
                          float(loss_sum) / n, float(correct) / n, self.val_loss, self.val_acc, hold_acc, lr,
                          time.monotonic() - ep.t0, decision.action.value, decision.cycle_best)
        self.history.append(rec)
        self.say(_epoch_line(rec, cfg.epochs, model))
        self.last_log = time.monotonic()
        if self.progress:
            self.progress.update(1)
        if self.on_epoch is not None:
            self.on_epoch(rec)
        if epoch == 1 and cfg.fail_fast:
            _check_time_budget(rec.seconds, cfg)
        elapsed = time.monotonic() - self.start
        if not model.done and cfg.max_seconds and elapsed > 0.9 * cfg.max_seconds:
            self.say(f"stopping early: {elapsed:.0f}s used of the {cfg.max_seconds:.0f}s compute limit")
            self.finish()
        elif model.done or epoch == cfg.epochs:
            self.finish()

    def finish(self) -> None:
        if not self.model.done:
            self.model.finish()
        if self.progress:
            self.progress.close()
        self.finished = True

    def fail(self, error: BaseException) -> None:
        """The run raised (e.g. pruned by `on_epoch`, or over its time budget): it ends here, the others go on."""
        self.error, self.finished = error, True
        if self.progress:
            self.progress.close()

    def result(self) -> FitResult:
        if self.error is not None:
            raise self.error
        return FitResult(self.model, self.history, time.monotonic() - self.start, cycles_from_history(self.history))


def fit(run: RunConfig, data: Splits, log: Log = print, teacher: nn.Module | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None) -> FitResult:
    """Train until the schedule stops or the epoch/time budget runs out; return the best checkpoint.
    `teacher` (e.g. from `train_teacher`) turns on distillation with run.train's weight and temperature.
    `on_epoch` sees every epoch's record; it may raise to abandon the run (the sweep's pruning does)."""
    r = _Run(run, data, log, teacher, on_epoch)
    _train([r])
    return r.result()


def fit_many(runs: list[RunConfig], data: Splits, logs: list[Log],
             on_epochs: list[Callable[[EpochRecord], None] | None] | None = None) -> list[FitResult | BaseException]:
    """Train several runs on the same data side by side; each gives exactly what `fit` gives it alone.
    Runs of one network shape train their first neuron phase as ONE batched network along a leading model
    axis (kws/lockstep.py): at batch 32 these nets are bound by per-op dispatch, so M models cost
    little more than one. A run leaves its stack at its first restructure (a dendrite phase, new dendrites,
    its early stop) and goes on alone. A run that raises (e.g. pruned by its `on_epoch`) returns its
    exception; the others go on."""
    on_epochs = on_epochs or [None] * len(runs)
    if any(run.train.distill_weight > 0 for run in runs):
        raise ConfigError("distillation needs fit() with a teacher; fit_many trains without one")
    trainers = [_Run(run, data, log, None, on_epoch) for run, log, on_epoch in zip(runs, logs, on_epochs)]
    _train(trainers, catch=True)
    results: list[FitResult | BaseException] = []
    for r in trainers:
        try:
            results.append(r.result())
        except Exception as e:  # noqa: BLE001 - that run's failure, returned
            results.append(e)
    return results


def _train(trainers: list[_Run], catch: bool = False) -> None:
    """The epoch loop of `fit` (one run) and `fit_many`. Stackable runs (kws/lockstep.py) train in
    stacks, even alone; the rest train alone. `catch`: a run's exception ends that run only."""
    groups = Lockstep.form(trainers)
    for epoch in range(1, max(r.cfg.epochs for r in trainers) + 1):
        live = [r for r in trainers if not r.finished and epoch <= r.cfg.epochs]
        if not live:
            break
        eps = {}
        for r in live:
            with r.own_rng():
                eps[id(r)] = r.begin_epoch()
        done = {}
        for g in groups:
            done |= g.train_epoch([eps[id(r)] for r in g.members])
        for r in live:
            try:
                with r.own_rng():
                    losses_outs = done.get(id(r)) or r.train_alone(eps[id(r)])
                    r.end_epoch(epoch, eps[id(r)], *losses_outs)
            except Exception as e:
                if not catch:
                    raise
                r.fail(e)
        for g in groups:
            g.release([r for r in g.members if r.finished or r.restructured])
        groups = [g for g in groups if g.members]


def cycles_from_history(history: list[EpochRecord]) -> list[dict]:
    """One entry per dendrite count: params, best validation accuracy and the holdout accuracy at that
    epoch (never the best holdout: the holdout is a test set, not a selection criterion)."""
    best: dict[int, EpochRecord] = {}
    for rec in history:
        if rec.phase != Phase.NEURON.value or not rec.cycle_best:  # the same rule as the checkpoints
            continue
        cur = best.get(rec.dendrites)
        if cur is None or score(rec.val_acc, rec.val_loss) > score(cur.val_acc, cur.val_loss):
            best[rec.dendrites] = rec
    return [{"dendrites": k, "params": r.params, "best_val_accuracy": r.val_acc, "epoch": r.epoch,
             "holdout_accuracy": r.holdout_acc} for k, r in sorted(best.items())]


def _epoch_line(rec: EpochRecord, max_epochs: int, model: DendriticModel) -> str:
    hold = f" holdout_acc={rec.holdout_acc:.4f}" if rec.holdout_acc is not None else ""
    event = "" if rec.action == Action.CONTINUE.value else f" -> {rec.action} (now {model.num_dendrites} dendrites)"
    return (f"epoch {rec.epoch}/{max_epochs} phase={rec.phase} dendrites={rec.dendrites} loss={rec.train_loss:.4f} "
            f"acc={rec.train_acc:.4f} val_loss={rec.val_loss:.4f} val_acc={rec.val_acc:.4f}{hold} "
            f"params={rec.params} lr={rec.lr:.2e} ({rec.seconds:.2f}s){event}")


def _check_time_budget(epoch_seconds: float, cfg: TrainConfig) -> None:
    """EI's rule (ei-contract §3.2): estimate after epoch 1 and fail early if the run cannot fit."""
    if not cfg.max_seconds:
        return
    estimate = epoch_seconds * cfg.epochs
    if estimate > 1.2 * cfg.max_seconds:
        raise TimeLimitError(
            f"Estimated training time ({math.ceil(estimate)}s for {cfg.epochs} epochs) is larger than the compute "
            f"time limit ({cfg.max_seconds:.0f}s); lower the number of training cycles or raise the limit")


def _progress_bar(total: int):
    """A tqdm bar only when a human is watching a terminal; Studio gets plain log lines."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="epoch", leave=False)


def history_dicts(history: list[EpochRecord]) -> list[dict]:
    return [asdict(r) for r in history]
