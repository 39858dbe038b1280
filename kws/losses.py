"""Losses of the training recipe: class weighting, soft-target cross-entropy and Hinton distillation.

Each loss comes twice: `*_grad` returns (loss, dL/dlogits) in closed form, for the autograd-free training
pass (the gradient of softmax cross-entropy is just p - t, so autograd's graph would only add overhead);
the plain version uses autograd for ordinary loops and is written with independent torch primitives, so the
two check each other. Per-sample weights normalise like `F.cross_entropy(weight=...)`: by their sum.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def class_weights(counts: Sequence[int] | np.ndarray) -> Tensor:
    """Balanced weights n_total / (n_classes * count_c): what EI's "auto-weight classes" does.

    Same formula as scikit-learn's compute_class_weight('balanced'), so the average weight over the
    training samples is 1 and the loss scale (hence the learning rate) does not change. A class with count 0
    gets weight 0 and is not counted in n_classes (it cannot appear in training; sklearn only counts the
    labels present too). Returns a float32 tensor [n_classes].
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"class counts must be a 1-D list of counts >= 0, got {counts!r}")
    present = c > 0
    k = int(present.sum())
    w = np.zeros_like(c)
    w[present] = c.sum() / (k * c[present])
    return torch.from_numpy(w).float()


def row_weights(labels_or_targets: Tensor, class_w: Tensor) -> Tensor:
    """Per-row weights [B] from class weights: class_w[y] for labels, targets @ class_w for soft targets.

    The soft form gives a mixup row the mixture of its two classes' weights, and equals class_w[y] for
    one-hot rows.
    """
    t = labels_or_targets
    if t.is_floating_point():
        return t @ class_w.to(t.device, t.dtype)
    return class_w.to(t.device)[t.long()]


def _weighted_mean(per_row: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """(weighted mean of per_row, d mean / d per_row). All-zero weights give loss 0 and zero gradient."""
    if weights is None:
        scale = torch.full_like(per_row, 1.0 / per_row.shape[0])
    else:
        w = weights.to(per_row.device, per_row.dtype)
        total = w.sum()
        scale = w / torch.where(total > 0, total, torch.ones_like(total))
    return (per_row * scale).sum(), scale


def soft_cross_entropy_grad(
    logits: Tensor, targets: Tensor, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Closed-form (loss, dL/dlogits) of weighted-mean cross-entropy against target probabilities [B, C].

    Per row: l_b = -sum_c t_bc log softmax(z_b)_c, gradient softmax(z_b) * sum_c t_bc - t_b (= p - t for
    targets that sum to 1). Loss = sum_b w_b l_b / sum_b w_b; weights [B] (e.g. `row_weights`) optional.
    With one-hot targets and weights = class_w[y] this is F.cross_entropy(logits, y, weight=class_w).
    """
    z = logits.detach()
    t = targets.to(z.dtype)
    logp = z - torch.logsumexp(z, 1, keepdim=True)
    per_row = -(t * logp).sum(1)
    loss, scale = _weighted_mean(per_row, weights)
    grad = logp.exp_().mul_(t.sum(1, keepdim=True)).sub_(t).mul_(scale.unsqueeze(1))
    return loss, grad


def soft_cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """The loss of `soft_cross_entropy_grad`, differentiable by autograd."""
    per_row = F.cross_entropy(logits, targets.to(logits.dtype), reduction="none")
    return _weighted_mean(per_row, weights)[0]


def _check_distill(temperature: float, weight: float) -> None:
    if not temperature > 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight must be in [0, 1], got {weight}")


class DistillTargets(NamedTuple):
    """What the student's distillation loss needs from the teacher, fixed for the batch."""

    soft: Tensor  # softmax(teacher_logits / T), [B, C]
    hard: Tensor  # one-hot labels, [B, C]
    soft_neg_entropy: Tensor  # sum_c soft log soft, [B]: turns the soft cross-entropy into a true KL
    temperature: float
    weight: float


def distill_targets(
    teacher_logits: Tensor, y: Tensor, n_classes: int, temperature: float, weight: float
) -> DistillTargets:
    """Split Hinton's loss into two soft-target cross-entropies, each with the closed-form gradient p - t.

    weight * T^2 * KL(q || softmax(z/T)) + (1 - weight) * CE(z, y), q = softmax(teacher/T), equals
    weight * T^2 * (CE(z/T, q) + sum q log q) + (1 - weight) * CE(z, onehot(y)). The teacher is constant,
    so q, its entropy and the one-hot targets are computed once here, without autograd.
    """
    _check_distill(temperature, weight)
    tl = teacher_logits.detach()
    log_q = F.log_softmax(tl / temperature, 1)
    q = log_q.exp()
    hard = F.one_hot(y.long(), n_classes).to(tl.dtype)
    return DistillTargets(q, hard, (q * log_q).sum(1), float(temperature), float(weight))


def distillation_loss_grad(logits: Tensor, y: Tensor, teacher_logits: Tensor, temperature: float, weight: float,
                           sample_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Closed-form (loss, dL/dlogits) of weight * T^2 * KL(teacher_T || student_T) + (1 - weight) * CE.

    The T^2 factor cancels the 1/T^2 that softening puts on the KL gradient (T * (softmax(z/T) - q) after
    the scaling), so the soft term's gradient keeps its size when T changes and `weight` means the same
    at every T. sample_weights [B] weight each row's combined loss (weighted mean, as in cross_entropy).
    """
    d = distill_targets(teacher_logits.to(logits.dtype), y, logits.shape[1], temperature, weight)
    z = logits.detach()
    t, a = d.temperature, d.weight
    per_row = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    grad = torch.zeros_like(z)
    if a > 0:
        logp_t = F.log_softmax(z / t, 1)
        per_row += (a * t * t) * (d.soft_neg_entropy - (d.soft * logp_t).sum(1))
        grad += (a * t) * (logp_t.exp() - d.soft)
    if a < 1:
        logp = F.log_softmax(z, 1)
        per_row -= (1 - a) * (d.hard * logp).sum(1)
        grad += (1 - a) * (logp.exp() - d.hard)
    loss, scale = _weighted_mean(per_row, sample_weights)
    return loss, grad.mul_(scale.unsqueeze(1))


def distillation_loss(logits: Tensor, y: Tensor, teacher_logits: Tensor, temperature: float, weight: float,
                      sample_weights: Tensor | None = None) -> Tensor:
    """The loss of `distillation_loss_grad`, differentiable by autograd (the teacher is detached)."""
    _check_distill(temperature, weight)
    t = temperature
    student = F.log_softmax(logits / t, 1)
    teacher = F.log_softmax(teacher_logits.detach() / t, 1)
    kl = F.kl_div(student, teacher, reduction="none", log_target=True).sum(1)
    ce = F.cross_entropy(logits, y.long(), reduction="none")
    return _weighted_mean(weight * t * t * kl + (1 - weight) * ce, sample_weights)[0]
