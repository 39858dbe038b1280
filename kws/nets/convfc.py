"""The conv+FC keyword-spotting network: one config dataclass, one module, named presets.

The model always takes EI's flat, frame-major feature vector (B, frames*coeffs) and reshapes inside,
so the exported graph has the (1, F) input the Edge Impulse SDK copies features into.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from typing import Literal

import torch
from torch import nn

from dendritic import ops
from dendritic.errors import ConfigError

ConvType = Literal["conv1d", "conv2d"]
Growth = Literal["uniform", "doubling"]
PoolMode = Literal["same", "floor"]


@dataclass(frozen=True)
class NetConfig:
    """Architecture of the classifier. Shapes derive from n_features and n_coeffs (never hard-coded)."""

    n_features: int
    n_classes: int
    n_coeffs: int = 13
    conv_type: ConvType = "conv1d"
    conv_layers: int = 2
    width: int = 8  # channels of the first conv layer
    growth: Growth = "doubling"  # channel count per later conv layer: same, or x2 each layer
    kernel_size: int = 3
    pool: PoolMode = "same"  # "same": Keras-style ceil pooling done as zero pad + floor pool (int8-safe)
    linear_layers: int = 1  # including the classifier
    linear_width: int = 16  # width of hidden linear layers (only when linear_layers > 1)
    dropout: float = 0.25
    noise_std: float = 0.0  # Gaussian input noise during training only
    channels: tuple[int, ...] | None = None  # explicit conv widths; overrides width/growth when set

    @property
    def frames(self) -> int:
        return self.n_features // self.n_coeffs

    def validate(self) -> None:
        """Raise ValueError with one readable line for an impossible architecture."""
        if self.n_features % self.n_coeffs:
            raise ConfigError(f"feature count {self.n_features} is not divisible by {self.n_coeffs} MFCC coefficients")
        if not 0 <= self.conv_layers <= 4:
            raise ConfigError(f"conv layers must be 0-4, got {self.conv_layers}")
        if not 1 <= self.linear_layers <= 3:
            raise ConfigError(f"linear layers must be 1-3, got {self.linear_layers}")
        if self.n_classes < 2:
            raise ConfigError(f"need at least 2 classes, got {self.n_classes}")
        if self.width < 1 or self.linear_width < 1:
            raise ConfigError("width and linear width must be positive")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel size must be a positive odd number (keeps 'same' length), got {self.kernel_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.noise_std < 0:
            raise ConfigError(f"input noise must be >= 0, got {self.noise_std}")
        if self.conv_type not in ("conv1d", "conv2d"):
            raise ConfigError(f"conv type must be conv1d or conv2d, got {self.conv_type!r}")
        if self.growth not in ("uniform", "doubling"):
            raise ConfigError(f"width growth must be uniform or doubling, got {self.growth!r}")
        if self.channels is not None and (len(self.channels) != self.conv_layers or min(self.channels, default=1) < 1):
            raise ConfigError(f"channels {self.channels} must give one positive width per conv layer")
        if self.pool not in ("same", "floor"):
            raise ConfigError(f"pool must be same or floor, got {self.pool!r}")
        h, w = self.frames, self.n_coeffs
        for _ in range(self.conv_layers):
            h, w = _pooled(h, self.pool), (_pooled(w, self.pool) if self.conv_type == "conv2d" else w)
            if h < 1 or w < 1:
                raise ConfigError(f"{self.conv_layers} pooled conv layers shrink {self.frames}x{self.n_coeffs} to nothing")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    # The block's default until issue 23 (now `auto` is the DS-TCN, kws/nets/dstcn.py): the conv+FC shape that
    # won bench/frontier.py's validation selection at every budget (1k-16k params) on all three benchmark
    # sets, 3 conv layers of one width. Width 14 (2,952 params at 12 classes, 650 features) when no budget
    # sizes it; the block's --max-params 'auto' sizes it to EI's default net.
    "conv3": {"conv_type": "conv1d", "conv_layers": 3, "width": 14, "growth": "uniform", "kernel_size": 3,
             "pool": "same", "linear_layers": 1, "dropout": 0.25},
    # EI's default MFCC classifier (ei-contract §6.3): Conv1D 8 -> Conv1D 16 -> Dense; 1,347 params at 3 classes.
    "ei-default": {"conv_type": "conv1d", "conv_layers": 2, "width": 8, "growth": "doubling", "kernel_size": 3,
                   "pool": "same", "linear_layers": 1, "dropout": 0.25},
    # The PerforatedAI hackathon AudioClassifier baseline (ei-contract §6.4): 3,859 params at 3 classes.
    "paper-baseline": {"conv_type": "conv2d", "conv_layers": 3, "channels": (8, 16, 16), "kernel_size": 3,
                       "pool": "floor", "linear_layers": 1, "dropout": 0.25},
}


def preset(name: str, n_features: int, n_classes: int, n_coeffs: int = 13, **overrides) -> NetConfig:
    """A preset config; `overrides` (e.g. dropout) replace preset fields."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})")
    cfg = NetConfig(n_features=n_features, n_classes=n_classes, n_coeffs=n_coeffs, **PRESETS[name])
    return replace(cfg, **overrides)


def _pooled(n: int, mode: PoolMode) -> int:
    return (n + 1) // 2 if mode == "same" else n // 2


def conv_channels(cfg: NetConfig) -> list[int]:
    """Output channels per conv layer: explicit, or width grown uniformly / doubling each layer."""
    if cfg.channels is not None:
        return list(cfg.channels)
    step = 2 if cfg.growth == "doubling" else 1
    return [cfg.width * step**i for i in range(cfg.conv_layers)]


class Pool(nn.Module):
    """2x max pool. 'same' mode pads odd sizes with zeros first: equal to Keras 'same' after a ReLU, and it
    converts to a plain PAD (ceil_mode would become PADV2(-FLT_MAX) and break int8, conversion.md pitfall 4).
    The padding is fixed at construction from the known input size, so the exported graph has no shape ops."""

    def __init__(self, dims: int, mode: PoolMode, size: tuple[int, ...]):
        super().__init__()
        self.dims = dims
        self.pad: list[int] = []
        for n in reversed(size):  # F.pad lists the last dimension first
            self.pad += [0, n % 2 if mode == "same" else 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = nn.functional.pad(x, self.pad, value=0.0)
        return nn.functional.max_pool1d(x, 2) if self.dims == 1 else nn.functional.max_pool2d(x, 2)


class KWSNet(nn.Module):
    """conv blocks (Conv -> ReLU -> Pool -> Dropout) then linear layers (Linear -> ReLU -> Dropout) -> logits.

    Every Conv/Linear sits directly in a named slot (`convs[i]`, `linears[i]`) so dendritic wrapping can
    swap it in place; activations stay outside the wrapped layer, as PB requires.
    """

    def __init__(self, cfg: NetConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        dims = 1 if cfg.conv_type == "conv1d" else 2
        conv_cls = nn.Conv1d if dims == 1 else nn.Conv2d
        c_in = cfg.n_coeffs if dims == 1 else 1
        h, w = cfg.frames, cfg.n_coeffs
        self.convs = nn.ModuleList()
        self.pools = nn.ModuleList()
        for c_out in conv_channels(cfg):
            self.convs.append(conv_cls(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2))
            self.pools.append(Pool(dims, cfg.pool, (h,) if dims == 1 else (h, w)))
            c_in = c_out
            h = _pooled(h, cfg.pool)
            w = _pooled(w, cfg.pool) if dims == 2 else w
        flat = c_in * h * (w if dims == 2 else 1) if cfg.conv_layers else cfg.n_features
        sizes = [flat] + [cfg.linear_width] * (cfg.linear_layers - 1) + [cfg.n_classes]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, _Modules(self.drop, self.cfg.conv_type, self.cfg.noise_std))

    def cross_entropy_step(self, x: torch.Tensor, y, loss_grad: ops.LossGrad = ops.cross_entropy_grad,
                           rand: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One training pass for mean cross-entropy without autograd (ops.Tape: the same maths, ~1.7x
        faster at batch 32): sets every trainable parameter's .grad (no zero_grad needed) and returns
        (loss, logits), inference tensors. `loss_grad(logits, y) -> (loss, dL/dlogits)` swaps in another
        loss with a closed-form gradient (soft targets, class weights, distillation: kws/losses.py).
        None when a layer has no fused op (unusual conv options, dilated or resized dendrites): use autograd
        then. inference_mode, not no_grad: it skips version counters and view tracking, another -8 % per step
        here. `rand` draws the dropout and input noise (default: the global
        generator); kws/lockstep.py gives each model its own, so a batch of models draws like each alone."""
        if not self.training:
            return None
        args = {id(m): ops.module_args(m) for m in [*self.convs, *self.linears]}
        if any(a is None for a in args.values()):
            return None
        with torch.inference_mode():
            tape = ops.Tape(self.cfg.dropout, args, self.cfg.noise_std, *random_sources(rand, x),
                            conv2d=self.cfg.conv_type == "conv2d")
            logits = self._run(x, tape)
            loss, grad = loss_grad(logits, y)
            tape.backward(grad)
        return loss, logits

    def _run(self, x: torch.Tensor, ex: _Modules | ops.Tape) -> torch.Tensor:
        """The network, once: `ex` runs each layer and each ReLU -> pool -> dropout block."""
        cfg = self.cfg
        if self.training:
            x = ex.noise(x)
        if cfg.conv_layers:  # EI order is frame-major: (time, cepstrum); a leading model axis stays in front
            x = ex.conv_input(x.reshape(*x.shape[:-1], cfg.frames, cfg.n_coeffs))
            for conv, pool in zip(self.convs, self.pools):
                x = ex.block(ex.layer(conv, x), pool)
            x = ex.flatten(x)
        for i, lin in enumerate(self.linears):
            x = ex.layer(lin, x)
            if i < len(self.linears) - 1:
                x = ex.block(x, None)
        return x


def random_sources(gen: torch.Generator | None, like: torch.Tensor) -> tuple[ops.Random | None, ops.Random | None]:
    """(uniform, normal) draws of `like`'s dtype and device from `gen`; (None, None): the global generator."""
    if gen is None:
        return None, None
    kw = {"generator": gen, "dtype": like.dtype, "device": like.device}
    return (lambda shape: torch.rand(shape, **kw)), (lambda shape: torch.randn(shape, **kw))


class _Modules:
    """Runs KWSNet's layers as ordinary modules and ops: eval, export, any autograd loop (losses other than
    cross-entropy, layers the fused ops do not cover)."""

    def __init__(self, drop: nn.Module, conv_type: ConvType, noise_std: float = 0.0):
        self.drop = drop
        self.conv_type = conv_type
        self.noise_std = noise_std

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x) * self.noise_std if self.noise_std > 0 else x

    def conv_input(self, x: torch.Tensor) -> torch.Tensor:
        """[B, frames, coeffs] -> Conv1d's [B, coeffs, frames] or Conv2d's [B, 1, frames, coeffs]."""
        return x.transpose(1, 2) if self.conv_type == "conv1d" else x.unsqueeze(1)

    @staticmethod
    def layer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m(x)

    def block(self, x: torch.Tensor, pool: Pool | None) -> torch.Tensor:
        x = torch.relu(x)
        return self.drop(x if pool is None else pool(x))

    @staticmethod
    def flatten(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
