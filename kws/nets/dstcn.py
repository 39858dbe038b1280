"""A tiny depthwise-separable temporal conv net (DS-TCN): the published tiny-KWS recipe (DS-CNN, TENet,
BC-ResNet) at microcontroller size.

    (B, frames*coeffs) -> (B, coeffs, frames, 1)    MFCC coefficients as channels, time as the conv axis
    stem:  Conv(coeffs -> C, k=3) + BN + ReLU
    block: depthwise Conv(k=9, stride 2 or 1) + BN + ReLU -> pointwise Conv(1x1) + BN, + skip, ReLU
    global average pool over time -> dropout -> Linear(C -> classes)

The temporal convolutions are Conv2d with (k, 1) kernels on a (frames, 1) image: onnx2tf turns only a
rank-4 grouped Conv with equal strides into DEPTHWISE_CONV_2D (a depthwise Conv1d became a grouped CONV_2D
between RESHAPEs, measured: not the op the issue asks for, nor the one MCU kernel libraries tune), so strides
are (s, s), which change nothing on the width-1 axis.

Why this shape: at 12 classes the conv+FC `auto` net spends 40 % of its params on a classifier that reads
7 frames x 14 channels; here the classifier reads C averaged channels, and a depthwise k=9 sees 9 frames for
9 params per channel. The skip of a strided block is a stride-2 subsample (a 1-wide average pool: an int8
AVERAGE_POOL_2D), which lines up exactly with the strided convolution's centre taps.

`branch_kernels` trains the depthwise as TENet's parallel kernels (e.g. 3/5/7/9, each with its own BN),
summed: more capacity while training, and export/fold.py merges them into the single k=9 kernel the
deployed model has (zero deployed params). Every conv has a bias (PB's dendritic layers need one) and every
BN folds into its conv at export, so `training_only_params` is what the export folds away.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from dendritic.errors import ConfigError

FAMILY = "dstcn"


@dataclass(frozen=True)
class DSConfig:
    """Architecture of the DS-TCN. Shapes derive from n_features and n_coeffs (never hard-coded)."""

    n_features: int
    n_classes: int
    n_coeffs: int = 13
    family: str = FAMILY  # tells RunConfig.from_dict which family a saved config is (convfc's has no field)
    width: int = 24  # channels of the stem and of every block
    blocks: int = 2
    downsample: int = 2  # the first `downsample` blocks use stride 2 (50 frames -> 25 -> 13)
    stem_kernel: int = 3
    kernel: int = 9  # depthwise kernel (frames)
    # non-empty: train the depthwise as these kernels in parallel (TENet); None (the `auto` preset): the budget
    # decides (`shape_for_budget`), and without a budget one kernel
    branch_kernels: tuple[int, ...] | None = ()
    dropout: float = 0.1  # before the classifier only: BN already regularises the convs
    noise_std: float = 0.0  # Gaussian input noise during training only

    @property
    def frames(self) -> int:
        return self.n_features // self.n_coeffs

    def validate(self) -> None:
        """Raise ConfigError with one readable line for an impossible architecture."""
        if self.family != FAMILY:
            raise ConfigError(f"not a {FAMILY} config: family {self.family!r}")
        if self.n_features % self.n_coeffs:
            raise ConfigError(f"feature count {self.n_features} is not divisible by {self.n_coeffs} MFCC coefficients")
        if self.n_classes < 2:
            raise ConfigError(f"need at least 2 classes, got {self.n_classes}")
        if self.width < 1 or not 1 <= self.blocks <= 8 or not 0 <= self.downsample <= self.blocks:
            raise ConfigError(f"width must be >= 1, blocks 1-8 and downsample 0-blocks, got width {self.width}, "
                              f"{self.blocks} blocks, {self.downsample} strided")
        kernels = (self.stem_kernel, self.kernel, *(self.branch_kernels or ()))
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(f"kernel sizes must be positive odd numbers ('same' length), got {kernels}")
        if self.branch_kernels and max(self.branch_kernels) != self.kernel:
            raise ConfigError(f"the largest branch kernel must be the deployed kernel {self.kernel}, "
                              f"got {self.branch_kernels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.noise_std < 0:
            raise ConfigError(f"input noise must be >= 0, got {self.noise_std}")
        if self.frames < 1:
            raise ConfigError(f"{self.n_features} features hold no frame of {self.n_coeffs} coefficients")

    def to_dict(self) -> dict:
        return asdict(self)


MULTI_KERNEL = (3, 5, 7, 9)  # TENet's training branches of a k=9 depthwise
MULTI_KERNEL_MAX_BUDGET = 2000  # `auto` trains them up to this budget (params): `shape_for_budget`

# The probe of issue 23 (stem 24 -> 2 strided k=9 blocks -> average pool -> dense: 2,940 params at 12
# classes); under a budget block/sizing.py picks the blocks (`blocks_for_budget`: 2 or 3) and the width.
PROBE = {"width": 24, "blocks": 2, "downsample": 2, "kernel": 9}
PRESETS: dict[str, dict] = {
    # The block's default (issue 23): the frontier's pick per budget (bench/RESULTS.md, "Frontier rerun"),
    # `dstcn` with multi-kernel training branches where they won on validation (`shape_for_budget`).
    "auto": {**PROBE, "branch_kernels": None},
    "dstcn": PROBE,
    # The same net trained with TENet's parallel depthwise kernels 3/5/7/9, merged into one k=9 at export.
    "dstcn-multikernel": {**PROBE, "branch_kernels": MULTI_KERNEL},
}


def preset(name: str, n_features: int, n_classes: int, n_coeffs: int = 13, **overrides) -> DSConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown {FAMILY} preset {name!r} (choose from {', '.join(PRESETS)})")
    return replace(DSConfig(n_features, n_classes, n_coeffs, **PRESETS[name]), **overrides)


CUSTOM_TYPES = ("dstcn", "dstcn-multikernel")  # `--model-preset custom --conv-type ...`: a DS-TCN by hand


def custom(conv_type: str, n_features: int, n_classes: int, n_coeffs: int, blocks: int, width: int, kernel: int,
           **overrides) -> DSConfig:
    """A DS-TCN of a given shape (the custom preset's layers, width and kernel): what a search trial trains.
    The first two blocks are strided, as in the presets; the multi-kernel form trains every odd kernel from 3
    up to `kernel` in parallel (TENet's 3/5/7/9 for kernel 9)."""
    branches = tuple(range(3, kernel + 1, 2)) if conv_type == "dstcn-multikernel" and kernel > 3 else ()
    return DSConfig(n_features, n_classes, n_coeffs, width=width, blocks=blocks, downsample=min(2, blocks),
                    kernel=kernel, branch_kernels=branches, **overrides)


def blocks_for_budget(budget: int) -> int:
    """Depth for a parameter budget: 2 strided blocks up to 4k params, 3 (the third unstrided) above.
    Measured on gsc12-real validation, one seed, each depth the widest net under the budget
    (bench/tiny_family.py --depth, RESULTS.md): 3 blocks won at 8k (91.9 % vs 90.5 with 2 and 91.7 with 4)
    and 16k (92.4 vs 91.2 and 91.9), 2 at 3.2k (89.4 vs 88.7 and 88.4); at 1k 3 blocks of 8 channels led
    (80.4 vs 78.1) but 2 blocks stay until more seeds confirm it. The frontier rerun refines the split."""
    return 2 if budget <= 4000 else 3


def shape_for_budget(cfg: DSConfig, budget: int) -> DSConfig:
    """Depth from the budget (`blocks_for_budget`); for `auto` (branch_kernels None) the multi-kernel training
    branches up to MULTI_KERNEL_MAX_BUDGET params, where they won the frontier's validation selection on
    gsc12-real, one kernel above (where they did not pay, and training is 1.5-2.5x slower with them)."""
    cfg = replace(cfg, blocks=blocks_for_budget(budget))
    if cfg.branch_kernels is None:
        cfg = replace(cfg, branch_kernels=MULTI_KERNEL if budget <= MULTI_KERNEL_MAX_BUDGET else ())
    return cfg


CLASSIFIER_DROPOUT = 0.1  # `--dropout auto` above MULTI_KERNEL_MAX_BUDGET params (and with no budget)


def dropout_for_budget(budget: int) -> float:
    """`--dropout auto` for a DS-TCN: none up to MULTI_KERNEL_MAX_BUDGET params, CLASSIFIER_DROPOUT above or
    with no budget (0). Measured on gsc12-real validation, learning rate 0.01, 5 seeds (bench/recipe_scan.py):
    at Edge Impulse's size (25 channels) dropout 0.1 before the classifier gained 0.7 points (89.6 against
    88.9 %), at 1k params (10 channels, multi-kernel) it lost 1.8 (80.5 against 82.3 %): dropping a tenth of
    ten pooled features is too much for a net that is short of capacity, not of data."""
    return 0.0 if 0 < budget <= MULTI_KERNEL_MAX_BUDGET else CLASSIFIER_DROPOUT


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A temporal Conv2d ((kernel, 1), 'same' padding in time) + BatchNorm2d as one Sequential: export/fold.py
    folds such pairs exactly, and PB can wrap the conv (index 0) in place."""
    conv = nn.Conv2d(c_in, c_out, (kernel, 1), stride, (kernel // 2, 0), groups=groups)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


class MultiKernel(nn.Module):
    """A depthwise conv trained as parallel branches of different kernels (each conv + BN), summed.
    export/fold.py merges `branches` (by name: plain sum of same-stride, 'same'-padded convs) into one conv;
    PB never wraps them (`no_dendrites`)."""

    no_dendrites = True

    def __init__(self, channels: int, kernels: tuple[int, ...], stride: int):
        super().__init__()
        self.branches = nn.ModuleList(conv_bn(channels, channels, k, stride, channels) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for b in self.branches[1:]:
            out = out + b(x)
        return out


class Block(nn.Module):
    """depthwise + BN + ReLU -> pointwise + BN, plus the input (subsampled when strided), then ReLU."""

    def __init__(self, cfg: DSConfig, stride: int):
        super().__init__()
        c = cfg.width
        self.dw = MultiKernel(c, cfg.branch_kernels, stride) if cfg.branch_kernels else \
            conv_bn(c, c, cfg.kernel, stride, groups=c)
        self.pw = conv_bn(c, c, 1)
        self.skip = nn.AvgPool2d(1, stride) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pw(torch.relu(self.dw(x))) + self.skip(x))


class DSTCN(nn.Module):
    """The DS-TCN classifier: EI's flat frame-major features in, logits out."""

    def __init__(self, cfg: DSConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.stem = conv_bn(cfg.n_coeffs, cfg.width, cfg.stem_kernel)
        self.blocks = nn.ModuleList(Block(cfg, 2 if i < cfg.downsample else 1) for i in range(cfg.blocks))
        self.drop = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.width, cfg.n_classes)
        # channels-last conv weights take oneDNN's faster CPU kernels, the same maths: an epoch 17 % shorter
        # on the busy 2-core machine, 3 % idle (gsc12-real's training set at width 25, fused Adam, one thread)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if self.training and cfg.noise_std > 0:
            x = x + torch.randn_like(x) * cfg.noise_std
        x = x.reshape(x.shape[0], cfg.frames, cfg.n_coeffs, 1).transpose(1, 2)  # EI order: (time, cepstrum)
        x = torch.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.drop(x.mean((2, 3))))

    def training_only_params(self) -> int:
        """Params the export folds away: every BatchNorm (into its conv's bias) and, per multi-kernel
        depthwise, its branches beyond the one merged kernel. DendriticModel.deployed_params subtracts it."""
        bn = sum(p.numel() for m in self.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
        merged = 0
        for m in self.modules():
            if isinstance(m, MultiKernel):
                convs = [b[0] for b in m.branches]
                kept = max(c.weight.numel() for c in convs) + convs[0].out_channels
                merged += sum(c.weight.numel() + c.bias.numel() for c in convs) - kept
        return bn + merged


def deployed_params(net: DSTCN) -> int:
    """Params of the exported (folded) plain network."""
    return sum(p.numel() for p in net.parameters()) - net.training_only_params()
