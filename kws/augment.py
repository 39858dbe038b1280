"""Feature-domain augmentation of EI's flat, frame-major MFCC batches: shift, warp, masks, mixup.

Everything works on the whole batch at once (index arithmetic on [B, frames] and one gather, no loop
over rows), because the nets are tiny and a Python loop would cost more than the forward pass. Randomness
comes only from the `torch.Generator` passed in, so a run is reproducible from its seed and nothing
touches torch's global RNG. The generator is a CPU one: the draws (a few numbers per row) are made on the
CPU and moved to the batch's device, so the same seed gives the same augmentation on any device.

Gaussian input noise is not here: the model adds it itself (NetConfig.noise_std).

Design choices, for MFCC that are not mean-normalised:
- vacated frames after a shift (and positions past the ends after a warp) repeat the edge frame. Zero is
  not "silence" in MFCC space (c0 of silence is strongly negative), so zero-filling would paint an
  out-of-distribution block; the edge frame is usually background and is a plausible continuation.
- masks fill with the row's average frame: each coefficient's mean over time, taken from the input row.
  SpecAugment fills with 0 on features normalised per coefficient (CMVN), and 0 there *is* each
  coefficient's mean, so this is the same neutral value for raw MFCC. One scalar mean over the whole matrix
  would not be: c0 (energy) sits far from the other coefficients, so a scalar fill paints an
  out-of-distribution value into a masked c0 band or a masked frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import Tensor

from dendritic.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; every default is off."""

    time_shift: int = 0  # max |frames| of random integer shift per row (edge frames repeat)
    time_masks: int = 0  # time masks per row
    time_mask_width: int = 4  # max frames per time mask (width uniform in [0, max])
    freq_masks: int = 0  # frequency masks per row
    freq_mask_width: int = 2  # max coefficients per frequency mask (width uniform in [0, max])
    time_warp: float = 0.0  # max relative stretch: each row resampled by a factor in [1-w, 1+w]
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup, applied by `mixup` (needs labels); 0 = off

    def validate(self) -> None:
        """Raise ConfigError (a ValueError) with one readable line for an impossible setting."""
        for name in ("time_shift", "time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Integral) or v < 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be an integer >= 0, got {v!r}")
        if not 0.0 <= self.time_warp < 0.5:
            raise ConfigError(f"time warp must be in [0, 0.5), got {self.time_warp!r}")
        if not 0.0 <= self.mixup_alpha < float("inf"):
            raise ConfigError(f"mixup alpha must be >= 0 and finite, got {self.mixup_alpha!r}")

    @property
    def features_enabled(self) -> bool:
        """Whether `augment` changes anything (mixup is separate: it needs the labels)."""
        return bool(
            self.time_shift
            or self.time_warp
            or (self.time_masks and self.time_mask_width)
            or (self.freq_masks and self.freq_mask_width)
        )

    @property
    def enabled(self) -> bool:
        """Whether any augmentation, mixup included, is on."""
        return self.features_enabled or self.mixup_alpha > 0

    def to_dict(self) -> dict:
        return asdict(self)


def _check_shape(x: Tensor, frames: int, coeffs: int) -> None:
    if x.dim() != 2 or x.shape[1] != frames * coeffs:
        raise ValueError(f"expected a [B, {frames}*{coeffs}] batch, got shape {tuple(x.shape)}")


def _positions(offset: Tensor, inv_stretch: Tensor, frames: int) -> Tensor:
    """Source position of each output frame, laid out twice: [B, 2F], columns 2i and 2i+1 for frame i.

    Frame i reads c + (i - c) * inv_stretch + offset (c the centre frame), clamped to the edges, which is
    what replicates the edge frames. Each output frame becomes a bag of two source frames that
    embedding_bag wants side by side, so the pairs are laid out here instead of interleaved later.
    offset, inv_stretch: [B, 1].
    """
    c = (frames - 1) / 2.0
    rel = torch.arange(-c, c + 0.5, dtype=offset.dtype, device=offset.device).unsqueeze(1).expand(-1, 2)
    return torch.addcmul(offset + c, rel.reshape(-1), inv_stretch).clamp_(0, frames - 1)


def _keeps(bounds: Tensor, signs: Tensor, frames: int, coeffs: int) -> tuple[Tensor, Tensor]:
    """(time keep [B, 2F] in _positions' doubled layout, freq keep [B, C]), False inside any span.

    Spans live on one number line: frame i at 2i and 2i+1, coefficient j at 2F + j. bounds [B, 2k] holds
    every span's start, then every span's end; signs [1, 2k] is +1 for starts, -1 for ends. The running
    sum of the marks is > 0 inside a span: a few ops on [B, 2F+C] instead of comparing every span with
    every position.
    """
    n = 2 * frames + coeffs
    marks = torch.zeros(bounds.shape[0], n + 1, dtype=bounds.dtype, device=bounds.device)
    marks.scatter_add_(1, bounds.long(), signs.expand_as(bounds))
    keep = marks.cumsum_(1) == 0
    return keep[:, : 2 * frames], keep[:, 2 * frames : n]


def _transform(
    x: Tensor,
    frames: int,
    coeffs: int,
    pos: Tensor | None,
    interpolate: bool,
    time_keep: Tensor | None,
    freq_keep: Tensor | None,
) -> Tensor:
    """Read the frames of each row at positions pos [B, 2F] (None: unmoved), then fill the masked entries.

    Masks fill with the row's average frame. Frequency masks act on whole coefficient columns, so they
    commute with the time resampling and are applied to the source; time-masked output frames read the
    average frame, appended to the source as one extra row per batch row. A single gather (index_select,
    or embedding_bag summing two weighted frames when interpolating) then writes the output. This keeps
    the work to about two passes over the batch: torch's broadcasting ops over the short coefficient axis
    take a slow path on CPU, and every extra op costs microseconds on these small tensors.
    """
    b = x.shape[0]
    n = b * frames
    src = x.reshape(b, frames, coeffs)
    if time_keep is None and freq_keep is None:
        rows = x.reshape(n, coeffs)
    else:
        fill = src.mean(1)
        rows = torch.empty(n + (b if time_keep is not None else 0), coeffs, dtype=x.dtype, device=x.device)
        if freq_keep is not None:  # x * keep + fill * (1 - keep): exact for kept entries
            kf = freq_keep.to(x.dtype)
            fill_part = torch.addcmul(fill, fill, kf, value=-1.0).unsqueeze(1)
            torch.addcmul(fill_part, src, kf.unsqueeze(1), out=rows[:n].view(b, frames, coeffs))
            if pos is None and time_keep is None:
                return rows.view(b, frames * coeffs)
        else:
            rows[:n] = src.reshape(n, coeffs)
        if time_keep is not None:
            rows[n:] = fill
    if pos is None:  # masks only: every frame reads itself
        pos = torch.arange(frames, dtype=torch.float32, device=x.device).unsqueeze(1).expand(-1, 2)
        pos = pos.reshape(1, -1).expand(b, -1)
        interpolate = False
    first = torch.arange(0, n, frames, dtype=pos.dtype, device=pos.device).unsqueeze(1)  # row b's frame 0
    lo = pos.floor()
    frac = pos - lo if interpolate else None
    lo.add_(first)
    if time_keep is not None:  # masked frames read the appended average frame, with weight 1
        lo = torch.where(time_keep, lo, first.div(frames).add_(n))
        if frac is not None:
            frac.mul_(time_keep)
    if frac is None:
        return rows.index_select(0, lo[:, ::2].reshape(-1).long()).view(b, frames * coeffs)
    # each output frame is the bag (floor, next) with weights (1 - frac, frac); at frac 0 the bag is
    # (floor, floor) with weights (1, 0), so integer positions copy frames bit for bit
    odd = torch.tensor([0.0, 1.0], dtype=pos.dtype, device=pos.device).repeat(frames)
    pair = torch.addcmul(lo, frac.ceil(), odd).long().view(n, 2)
    weights = (frac - (1.0 - odd)).abs_().to(x.dtype).view(n, 2)
    return F.embedding_bag(pair, rows, per_sample_weights=weights, mode="sum").view(b, frames * coeffs)


def resample_time(x: Tensor, frames: int, coeffs: int, shift: Tensor, stretch: Tensor) -> Tensor:
    """Shift each row by `shift[b]` frames and stretch its time axis by `stretch[b]`, in one gather.

    Output frame i reads source position c + (i - c) / stretch - shift, c the centre frame, with linear
    interpolation between neighbouring frames; positions outside [0, frames-1] take the edge frame. The
    centre anchor keeps the word roughly in place and the frame count unchanged; stretch > 1 slows the
    word down. Integer shifts with stretch 1 copy frames exactly. shift, stretch: [B].
    """
    _check_shape(x, frames, coeffs)
    offset = -shift.to(x.device, torch.float32).view(-1, 1)
    inv = stretch.to(x.device, torch.float32).view(-1, 1).reciprocal()
    return _transform(x, frames, coeffs, _positions(offset, inv, frames), True, None, None)


def apply_masks(x: Tensor, frames: int, coeffs: int, time_spans: Tensor, freq_spans: Tensor) -> Tensor:
    """Fill time and frequency spans of each row with the row's average frame (see the module notes).

    time_spans: [B, n, 2] integer (start, width) in frames; freq_spans: [B, m, 2] in coefficients (n or m
    may be 0). A span covers [start, start + width), cut to the axis; width 0 masks nothing.
    """
    _check_shape(x, frames, coeffs)
    t = time_spans.to(x.device, torch.float32).reshape(x.shape[0], -1, 2).clamp(0, frames)
    f = freq_spans.to(x.device, torch.float32).reshape(x.shape[0], -1, 2).clamp(0, coeffs)
    t_end = (t[:, :, 0] + t[:, :, 1]).clamp_(max=frames)
    f_end = (f[:, :, 0] + f[:, :, 1]).clamp_(max=coeffs)
    bounds = torch.cat((2 * t[:, :, 0], f[:, :, 0] + 2 * frames, 2 * t_end, f_end + 2 * frames), 1)
    k = bounds.shape[1] // 2
    signs = torch.cat((torch.ones(1, k), -torch.ones(1, k)), 1).to(x.device)
    time_keep, freq_keep = _keeps(bounds, signs, frames, coeffs)
    return _transform(x, frames, coeffs, None, False, time_keep, freq_keep)


def augment(x: Tensor, frames: int, coeffs: int, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    """Randomly shift, warp and mask each row of x [B, frames*coeffs]; x itself is never modified.

    Returns x unchanged (the same object) when no feature augmentation is on. Mixup is not applied here:
    it needs labels, see `mixup`. All draws come from `gen` (a CPU generator, one draw per call, moved to
    x's device), so the output depends only on the generator state, the config and x.
    """
    _check_shape(x, frames, coeffs)
    if not cfg.features_enabled:
        return x
    b = x.shape[0]
    nt = cfg.time_masks if cfg.time_mask_width else 0
    nf = cfg.freq_masks if cfg.freq_mask_width else 0
    k = nt + nf
    u = torch.rand(b, 2 + 2 * k, generator=gen).to(x.device)
    u_shift, u_stretch, u_width, u_start = u.split([1, 1, k, k], 1)
    pos = None
    if cfg.time_shift or cfg.time_warp:
        s, w = cfg.time_shift, cfg.time_warp
        offset = u_shift.mul(-(2 * s + 1)).ceil_().add_(s)  # -shift, shift uniform in [-s, s]
        inv = u_stretch.mul(2 * w).add_(1.0 - w).reciprocal_()  # stretch uniform in [1 - w, 1 + w]
        pos = _positions(offset, inv, frames)
    time_keep = freq_keep = None
    if k:
        # per mask (time masks, then frequency masks): width uniform in [0, max], start uniform over the
        # starts that keep the span inside its axis; then both ends go onto _keeps' number line
        tw, fw = min(cfg.time_mask_width, frames), min(cfg.freq_mask_width, coeffs)
        c = torch.tensor(
            [
                [tw + 1] * nt + [fw + 1] * nf,  # width draw range
                [frames + 1] * nt + [coeffs + 1] * nf,  # start draw range + width
                [2] * nt + [1] * nf,  # number-line step
                [0] * nt + [2 * frames] * nf,  # number-line origin
                [1] * k,  # +1 marks at starts
                [-1] * k,  # -1 marks at ends
            ],
            dtype=u.dtype,
        ).to(u.device)
        width_range, start_range, step, origin = c[:4]
        width = u_width.mul(width_range).floor_()
        start = torch.addcmul(origin, u_start.mul(start_range - width).floor_(), step)
        bounds = torch.cat((start, torch.addcmul(start, width, step)), 1)
        time_keep, freq_keep = _keeps(bounds, c[4:].view(1, -1), frames, coeffs)
        time_keep, freq_keep = (time_keep if nt else None), (freq_keep if nf else None)
    return _transform(x, frames, coeffs, pos, cfg.time_warp > 0, time_keep, freq_keep)


def mixup(x: Tensor, y: Tensor, n_classes: int, alpha: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Mix each row with a random other row of the batch; returns (mixed x, soft targets [B, n_classes]).

    One lambda ~ Beta(alpha, alpha) per row, folded to max(l, 1 - l) so a row's own label always carries at
    least half the target (its sample weight and the metrics still make sense). alpha 0 returns x and the
    one-hot targets. Per-row class weights for the mixed targets: `losses.row_weights(targets, class_w)`.
    """
    if alpha < 0:
        raise ValueError(f"mixup alpha must be >= 0, got {alpha}")
    onehot = torch.nn.functional.one_hot(y.long(), n_classes).to(x.dtype)
    if alpha == 0 or x.shape[0] < 2:
        return x, onehot
    b = x.shape[0]
    # torch.distributions.Beta cannot take a generator; the Dirichlet sampler behind it can, and it stays
    # accurate for tiny alpha where gamma ratios underflow
    lam = torch._sample_dirichlet(torch.full((b, 2), float(alpha), dtype=torch.float64), generator=gen)[:, 0]
    lam = torch.maximum(lam, 1.0 - lam).nan_to_num_(1.0)
    perm = torch.randperm(b, generator=gen).to(x.device)
    lam = lam.to(x.device, x.dtype).unsqueeze(1)
    x_mix = torch.lerp(x[perm], x, lam)
    t_mix = torch.lerp(onehot[perm], onehot, lam)
    return x_mix, t_mix
