"""Feature augmentation (kws/augment.py) and the recipe's losses (kws/losses.py).

Augmentations are checked for exact, known outcomes through the explicit helpers (resample_time,
apply_masks) and for bounds on the random path; every closed-form gradient is checked against autograd.
"""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kws.augment import AugmentConfig, apply_masks, augment, mixup, resample_time
from kws.losses import (
    class_weights,
    distill_targets,
    distillation_loss,
    distillation_loss_grad,
    row_weights,
    soft_cross_entropy,
    soft_cross_entropy_grad,
)

FRAMES, COEFFS = 12, 5
ALL_ON = AugmentConfig(
    time_shift=3, time_masks=2, time_mask_width=3, freq_masks=2, freq_mask_width=2, time_warp=0.2
)


def _batch(b: int = 6, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, FRAMES * COEFFS, generator=g, dtype=dtype)


def _aug(x: torch.Tensor, cfg: AugmentConfig, seed: int = 0) -> torch.Tensor:
    return augment(x, FRAMES, COEFFS, cfg, torch.Generator().manual_seed(seed))


# ---- augment -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        ALL_ON,
        AugmentConfig(time_shift=2),
        AugmentConfig(time_warp=0.3),
        AugmentConfig(time_masks=3),
        AugmentConfig(freq_masks=1, freq_mask_width=COEFFS + 4),
        AugmentConfig(time_masks=1, time_mask_width=FRAMES + 4, freq_masks=1),
    ],
)
def test_shape_dtype_and_input_untouched(cfg):
    for dtype in (torch.float32, torch.float64):
        x = _batch(dtype=dtype)
        before = x.clone()
        out = _aug(x, cfg)
        assert out.shape == x.shape and out.dtype == dtype
        assert torch.equal(x, before)
        assert torch.isfinite(out).all()


def test_disabled_is_identity():
    x = _batch()
    off = (AugmentConfig(), AugmentConfig(time_masks=2, time_mask_width=0), AugmentConfig(mixup_alpha=0.4))
    for cfg in off:
        assert _aug(x, cfg) is x
    assert not AugmentConfig().enabled and AugmentConfig(mixup_alpha=0.4).enabled
    assert not AugmentConfig(mixup_alpha=0.4).features_enabled


def test_deterministic_per_seed():
    x = _batch(b=16)
    assert torch.equal(_aug(x, ALL_ON, seed=3), _aug(x, ALL_ON, seed=3))
    assert not torch.equal(_aug(x, ALL_ON, seed=3), _aug(x, ALL_ON, seed=4))
    g = torch.Generator().manual_seed(3)  # successive calls draw fresh augmentations
    assert not torch.equal(augment(x, FRAMES, COEFFS, ALL_ON, g), augment(x, FRAMES, COEFFS, ALL_ON, g))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_augmentation_on_gpu():
    x = _batch(b=16)
    gpu = _aug(x.cuda(), ALL_ON, seed=5)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), _aug(x, ALL_ON, seed=5))
    y = torch.arange(16) % 3
    xm, t = mixup(x.cuda(), y.cuda(), 3, 0.3, torch.Generator().manual_seed(1))
    xc, tc = mixup(x, y, 3, 0.3, torch.Generator().manual_seed(1))
    torch.testing.assert_close((xm.cpu(), t.cpu()), (xc, tc))


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="expected"):
        _aug(torch.zeros(2, FRAMES * COEFFS + 1), ALL_ON)


def _masked(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return (out != x).view(-1, FRAMES, COEFFS)


def test_time_masks_bounds():
    x = _batch(b=64)
    cfg = AugmentConfig(time_masks=2, time_mask_width=3)
    changed = _masked(x, _aug(x, cfg))
    frames = changed.any(2)  # [B, F]
    assert torch.equal(changed, frames.unsqueeze(2).expand_as(changed))  # whole frames only
    assert (frames.sum(1) <= 2 * 3).all() and frames.any()
    one = _masked(x, _aug(x, AugmentConfig(time_masks=1, time_mask_width=4)))
    for row in one.any(2):  # a single mask is one contiguous run of at most 4 frames
        idx = row.nonzero().flatten()
        assert len(idx) <= 4 and (len(idx) == 0 or idx[-1] - idx[0] + 1 == len(idx))


def test_freq_masks_bounds():
    x = _batch(b=64)
    changed = _masked(x, _aug(x, AugmentConfig(freq_masks=2, freq_mask_width=2)))
    cols = changed.any(1)  # [B, C]
    assert torch.equal(changed, cols.unsqueeze(1).expand_as(changed))  # whole coefficient columns only
    assert (cols.sum(1) <= 2 * 2).all() and cols.any()
    one = _masked(x, _aug(x, AugmentConfig(freq_masks=1, freq_mask_width=3)))
    for row in one.any(1):
        idx = row.nonzero().flatten()
        assert len(idx) <= 3 and (len(idx) == 0 or idx[-1] - idx[0] + 1 == len(idx))


def test_masks_exact_fill_and_untouched_rest():
    x = _batch(b=3, dtype=torch.float64)
    time_spans = torch.tensor([[[2, 3]], [[0, 0]], [[FRAMES - 1, 5]]])  # the last one is cut to the axis
    freq_spans = torch.tensor([[[0, 0]], [[1, 2]], [[4, 1]]])
    out = apply_masks(x, FRAMES, COEFFS, time_spans, freq_spans).view(3, FRAMES, COEFFS)
    x3 = x.view(3, FRAMES, COEFFS)
    fill = x3.mean(1)  # the row's average frame
    mask = torch.zeros(3, FRAMES, COEFFS, dtype=torch.bool)
    mask[0, 2:5] = True
    mask[1, :, 1:3] = True
    mask[2, FRAMES - 1 :] = True
    mask[2, :, 4] = True
    expected = torch.where(mask, fill.unsqueeze(1).expand_as(x3), x3)
    assert torch.equal(out, expected)


def _edge_roll(x3: torch.Tensor, shift: int) -> torch.Tensor:
    """Reference: frame i of the result is frame i - shift of x3, edge frames repeated."""
    src = (torch.arange(x3.shape[0]) - shift).clamp(0, x3.shape[0] - 1)
    return x3[src]


def test_time_shift_exact_with_edge_fill():
    x = _batch(b=4)
    shifts = torch.tensor([0, 2, -3, FRAMES + 5])
    out = resample_time(x, FRAMES, COEFFS, shifts, torch.ones(4)).view(4, FRAMES, COEFFS)
    for row, src, s in zip(out, x.view(4, FRAMES, COEFFS), shifts.tolist(), strict=True):
        assert torch.equal(row, _edge_roll(src, s))


def test_random_shift_is_an_edge_roll():
    x = _batch(b=32)
    out = _aug(x, AugmentConfig(time_shift=3)).view(32, FRAMES, COEFFS)
    x3 = x.view(32, FRAMES, COEFFS)
    seen = set()
    for row, src in zip(out, x3, strict=True):
        matches = [s for s in range(-3, 4) if torch.equal(row, _edge_roll(src, s))]
        assert matches
        seen.update(matches)
    assert len(seen) > 3  # shifts actually vary


def test_shift_and_masks_compose():
    """Every output frame is an input frame or the average frame, apart from whole masked columns."""
    x = _batch(b=32, dtype=torch.float64)
    cfg = AugmentConfig(time_shift=3, time_masks=2, time_mask_width=3, freq_masks=1, freq_mask_width=2)
    out = _aug(x, cfg).view(32, FRAMES, COEFFS)
    x3 = x.view(32, FRAMES, COEFFS)
    fill = x3.mean(1)
    for row, src, avg in zip(out, x3, fill, strict=True):
        cols = ~(row == avg).all(0)  # columns not frequency-masked
        assert (~cols).sum() <= 2
        for frame in row[:, cols]:
            candidates = torch.cat((src[:, cols], avg[cols].unsqueeze(0)))
            assert (candidates == frame).all(1).any()


def test_warp_identity_and_bounds():
    x = _batch(b=8, dtype=torch.float64)
    assert torch.equal(resample_time(x, FRAMES, COEFFS, torch.zeros(8), torch.ones(8)), x)
    stretch = torch.tensor([0.5, 0.8, 0.95, 1.0, 1.05, 1.3, 1.49, 0.6])
    out = resample_time(x, FRAMES, COEFFS, torch.zeros(8), stretch)
    assert (out >= x.amin(1, keepdim=True) - 1e-12).all() and (out <= x.amax(1, keepdim=True) + 1e-12).all()
    # linear interpolation along time: a matrix linear in the frame index stays linear about the centre
    ramp = torch.arange(FRAMES, dtype=torch.float64).repeat_interleave(COEFFS).expand(2, -1).contiguous()
    out = resample_time(ramp, FRAMES, COEFFS, torch.zeros(2), torch.full((2,), 1.25)).view(2, FRAMES, COEFFS)
    c = (FRAMES - 1) / 2
    expected = (c + (torch.arange(FRAMES, dtype=torch.float64) - c) / 1.25).clamp(0, FRAMES - 1)
    torch.testing.assert_close(out[0, :, 0], expected)
    rand = _aug(x, AugmentConfig(time_warp=0.4))
    assert (rand >= x.amin(1, keepdim=True) - 1e-12).all() and (rand <= x.amax(1, keepdim=True) + 1e-12).all()


def test_mixup():
    x = _batch(b=32)
    y = torch.arange(32) % 4
    xm, t = mixup(x, y, 4, 0.4, torch.Generator().manual_seed(0))
    assert xm.shape == x.shape and t.shape == (32, 4)
    torch.testing.assert_close(t.sum(1), torch.ones(32))
    own = t.gather(1, y.unsqueeze(1)).squeeze(1)
    assert (own >= 0.5 - 1e-6).all() and (own < 1).any()
    xm2, t2 = mixup(x, y, 4, 0.4, torch.Generator().manual_seed(0))
    assert torch.equal(xm, xm2) and torch.equal(t, t2)
    x0, t0 = mixup(x, y, 4, 0.0, torch.Generator())
    assert x0 is x and torch.equal(t0, F.one_hot(y, 4).float())
    _, tiny = mixup(x, y, 4, 1e-3, torch.Generator().manual_seed(0))  # tiny alpha: nearly no mixing, no NaN
    assert torch.isfinite(tiny).all()


def test_validate():
    ALL_ON.validate()
    AugmentConfig().validate()
    bad = [
        {"time_shift": -1},
        {"time_masks": -2},
        {"time_mask_width": -1},
        {"freq_masks": -1},
        {"freq_mask_width": -3},
        {"time_shift": 1.5},
        {"time_warp": 0.5},
        {"time_warp": -0.1},
        {"time_warp": float("nan")},
        {"mixup_alpha": -0.1},
    ]
    for kw in bad:
        with pytest.raises(ValueError) as e:
            AugmentConfig(**kw).validate()
        assert "\n" not in str(e.value)
    assert AugmentConfig(time_shift=2).to_dict()["time_shift"] == 2


# ---- losses --------------------------------------------------------------------------------------


def test_class_weights():
    w = class_weights([10, 30, 0, 20])
    np.testing.assert_allclose(w.numpy(), [60 / (3 * 10), 60 / (3 * 30), 0.0, 60 / (3 * 20)], rtol=1e-6)
    assert w.dtype == torch.float32
    counts = np.array([5, 15, 30])
    w = class_weights(counts)
    # the average weight over the samples is 1
    assert float((w.double() * torch.from_numpy(counts)).sum()) == pytest.approx(counts.sum())
    assert torch.equal(class_weights([0, 0]), torch.zeros(2))
    with pytest.raises(ValueError):
        class_weights([3, -1])


def _logits(b: int = 7, c: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def _autograd(fn, logits):
    z = logits.clone().requires_grad_(True)
    loss = fn(z)
    loss.backward()
    return loss.detach(), z.grad


def test_soft_ce_matches_torch_cross_entropy():
    z = _logits()
    y = torch.tensor([0, 1, 2, 3, 1, 1, 0])
    onehot = F.one_hot(y, 4).double()
    loss, grad = soft_cross_entropy_grad(z, onehot)
    ref_loss, ref_grad = _autograd(lambda t: F.cross_entropy(t, y), z)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad, ref_grad)
    cw = class_weights([3, 10, 1, 6]).double()
    loss, grad = soft_cross_entropy_grad(z, onehot, row_weights(y, cw))
    ref_loss, ref_grad = _autograd(lambda t: F.cross_entropy(t, y, weight=cw), z)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad, ref_grad)
    torch.testing.assert_close(row_weights(onehot, cw), row_weights(y, cw))


@pytest.mark.parametrize("weighted", [False, True])
def test_soft_ce_grad_matches_autograd(weighted):
    z = _logits(9, 5, seed=1)
    t = torch.softmax(_logits(9, 5, seed=2), 1)
    w = torch.rand(9, generator=torch.Generator().manual_seed(3), dtype=torch.float64) if weighted else None
    loss, grad = soft_cross_entropy_grad(z, t, w)
    ref_loss, ref_grad = _autograd(lambda v: soft_cross_entropy(v, t, w), z)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad, ref_grad)
    zero_loss, zero_grad = soft_cross_entropy_grad(z, t, torch.zeros(9, dtype=torch.float64))
    assert zero_loss == 0 and not zero_grad.any()


@pytest.mark.parametrize("temperature,weight", itertools.product([1.0, 2.0, 4.0], [0.0, 0.5, 1.0]))
def test_distillation_grad_matches_autograd(temperature, weight):
    z, teacher = _logits(8, 5, seed=4), _logits(8, 5, seed=5)
    y = torch.tensor([0, 4, 2, 2, 1, 3, 0, 4])
    sw = torch.rand(8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for w in (None, sw):
        loss, grad = distillation_loss_grad(z, y, teacher, temperature, weight, w)
        ref_loss, ref_grad = _autograd(
            lambda v, w=w: distillation_loss(v, y, teacher, temperature, weight, w), z
        )
        torch.testing.assert_close(loss, ref_loss)
        torch.testing.assert_close(grad, ref_grad)
    if weight == 0:  # pure hard-label cross-entropy
        torch.testing.assert_close(loss, soft_cross_entropy(z, F.one_hot(y, 5).double(), sw))
    if temperature == 1:  # at T = 1 both terms merge into one soft cross-entropy (plus a constant)
        d = distill_targets(teacher, y, 5, 1.0, weight)
        _, merged = soft_cross_entropy_grad(z, weight * d.soft + (1 - weight) * d.hard, sw)
        torch.testing.assert_close(grad, merged)


def test_distillation_identical_teacher_and_bad_args():
    z = _logits(6, 3)
    y = z.argmax(1)
    loss, grad = distillation_loss_grad(z, y, z, 3.0, 1.0)
    assert float(loss) == pytest.approx(0.0, abs=1e-12) and grad.abs().max() < 1e-12  # KL(p || p) = 0
    with pytest.raises(ValueError):
        distillation_loss_grad(z, y, z, 0.0, 0.5)
    with pytest.raises(ValueError):
        distillation_loss(z, y, z, 2.0, 1.5)


def test_fit_runs_every_recipe_option_on_both_paths() -> None:
    """Augmentation, mixup, label smoothing, class weights and distillation train through the fused Tape and
    through autograd (TrainConfig.fused=False) to the same first-epoch loss: the closed-form gradients and
    the autograd losses describe the same recipe."""
    from dataclasses import replace

    from dendritic import PBConfig
    from kws.nets.convfc import preset
    from kws.trainer import RunConfig, Splits, TrainConfig, fit, train_teacher

    gen = np.random.default_rng(0)
    x = gen.normal(size=(64, 650)).astype(np.float32)
    y = np.arange(64) % 3
    data = Splits(x, y, x[:16], y[:16])
    aug = AugmentConfig(time_shift=2, time_masks=1, freq_masks=1, time_warp=0.1, mixup_alpha=0.2)
    base = TrainConfig(epochs=2, augment=aug, class_weights=True, label_smoothing=0.1, seed=1)
    run = RunConfig(preset("ei-default", 650, 3, dropout=0.0), PBConfig(mode="traditional"), train=base)
    losses_by_path = []
    for fused in (True, False):
        r = replace(run, train=replace(base, fused=fused))
        losses_by_path.append([h.train_loss for h in fit(r, data, lambda s: None).history])
    np.testing.assert_allclose(losses_by_path[0][0], losses_by_path[1][0], rtol=1e-4)
    distill = replace(run, train=replace(base, augment=replace(aug, mixup_alpha=0.0), distill_weight=0.5,
                                         teacher_width=2.0))
    teacher = train_teacher(distill, data, lambda s: None)
    assert teacher.net.convs[0].out_channels == 16  # 2x the student's 8
    result = fit(distill, data, lambda s: None, teacher=teacher)
    assert np.isfinite(result.history[-1].train_loss)
