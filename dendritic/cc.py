"""The CC rule: train candidate dendrites to correlate with their own neuron's error (pb-algorithm §4).

Cascade-Correlation (Fahlman & Lebiere 1989) scores a candidate by |cov(V, E)| summed over outputs; PB
specialises it per neuron: candidate channel c only correlates with the error e_c = dL/dy_c of neuron c.
We maximise the *normalised* per-neuron correlation

    rho_c = cov(v_c, e_c) / (std(v_c) * std(e_c))

over all (sample, position) pairs of a batch, with the sign fixed by the running average of rho_c, so the
ascent is on |rho_c| as in CasCor. Normalising (pb-algorithm §4.4's recommendation) makes the objective
independent of the error's tiny magnitude and of the activation's scale, so a relu candidate cannot win by
growing without bound, and Adam's step sizes behave the same for every layer.

State per layer lives in one `Candidate` (layer.py) on `layer.candidate`: running correlation (EMA), the per-channel best score, and a
per-channel best snapshot of the candidate's weights and cascade weights V (channels are independent rows,
so each neuron keeps the candidate from its own best moment).

A *candidate pool* (as in Cascade-Correlation, which trains several candidates and installs the best) is
P candidates per neuron, trained side by side as one module of P x C channels: channel p*C + c is candidate
p of neuron c and correlates with e_c. Installation keeps, per neuron, the pool member with the best score.
Training cost grows with P; the installed dendrite, and so the deployed model, is the same size for any P.

*Selective installation*: a neuron only gets its dendrite when the candidate's correlation is clearly above
noise. The noise level is measured, not assumed: every batch the same candidate output is also correlated
with the neuron error of *another* clip of the (shuffled) batch (rolled by one clip, which keeps each clip's
own time structure and draws no random numbers), and kept as the best epoch |rho| exactly like the real
score. A neuron passes when its score >= ratio x its noise (and it has a score at all: a dead neuron's error
is 0). Channels that do not pass are installed as
exact zeros (weights, bias, cascade weights, T); with tanh/relu they stay exactly zero in training (every
gradient they see is 0), contribute exactly 0, and export/fold.py leaves them out of the deployed model.
A later dendrite only goes to neurons that got the earlier ones, so the installed channels are nested.
"""
from __future__ import annotations

import torch
from torch import nn

from .layer import Candidate, DendriticLayer

EMA_DECAY = 0.9  # running-average decay of the per-batch correlation
EPS = 1e-12


def begin_candidates(layer: DendriticLayer, pool: int = 1, noise: bool = False) -> list[nn.Parameter]:
    """Attach `pool` fresh random candidates per neuron (and zero cascade weights V) to `layer`; return
    their parameters. `noise`: also measure each candidate's noise level (for selective installation)."""
    c, k, dev = pool * layer.num_neurons, layer.num_dendrites, layer.main.weight.device
    module = layer.fresh_copy(pool)
    cascade = nn.Parameter(torch.zeros(k, c, device=dev, dtype=layer.main.weight.dtype))
    layer.candidate = Candidate(
        module, cascade, running=torch.zeros(c, device=dev), epoch_sum=torch.zeros(c, device=dev),
        best_score=torch.full((c,), -1.0, device=dev),
        best_params=[p.detach().clone() for p in module.parameters()], best_cascade=cascade.detach().clone(),
        pool=pool, null_sum=torch.zeros(c, device=dev) if noise else None,
        null_best=torch.zeros(c, device=dev) if noise else None)
    return layer.candidate.parameters()


def _samples(t: torch.Tensor) -> torch.Tensor:
    """[B, C, ...] -> [samples, C]: a column of samples per neuron (a view for ops.Tape's layouts)."""
    return t.movedim(1, -1).reshape(-1, t.shape[1])


def neuron_correlation(v: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Per-neuron Pearson correlation over every axis but the neuron axis (dim 1). Returns [C]."""
    v, e = _samples(v), _samples(e)
    v = v - v.mean(dim=0)
    e = e - e.mean(dim=0)
    cov = (v * e).mean(dim=0)
    return cov / (v.pow(2).mean(dim=0).sqrt() * e.pow(2).mean(dim=0).sqrt() + EPS)


@torch.no_grad()
def correlation_and_grad(v: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rho = neuron_correlation(v, e) and d rho_c / d v in closed form (shaped like v).

    With v', e' centred over the N samples of a neuron, sigma their RMS and D = sigma_v * sigma_e + eps:
    d rho / d v_n = (e'_n / D - rho * sigma_e * v'_n / (sigma_v * D)) / N. Why not autograd: the
    statistics graph is ~20 tiny ops per layer whose backward cost more than the candidates' own; and
    at a dead (constant) candidate channel sqrt's gradient made autograd's 0 * inf = NaN, here it is 0."""
    sv, se = _samples(v), _samples(e)
    vc, ec = sv - sv.mean(dim=0), se - se.mean(dim=0)
    sd_v, sd_e = vc.pow(2).mean(dim=0).sqrt(), ec.pow(2).mean(dim=0).sqrt()
    d = sd_v * sd_e + EPS
    rho = (vc * ec).mean(dim=0) / d
    grad = (ec / d - (rho * sd_e / ((sd_v + EPS) * d)) * vc) / len(sv)
    grad.mul_(sd_v > 0)  # a constant channel has no correlation to climb
    return rho, grad.view(*v.movedim(1, -1).shape).movedim(-1, 1)


def candidate_backward(layers: list[DendriticLayer]) -> None:
    """Backward pass of the surrogate loss -sum_c sign(running rho_c) * rho_c: gradient ascent on |rho_c|
    for every candidate channel, into the candidates' .grad.

    Call after the task loss's backward pass, which filled each candidate's `error`. Also updates the
    running statistics (no host sync: everything stays on the device).
    """
    outs, grads = [], []
    for layer in layers:
        st = layer.candidate
        e = st.error if st.pool == 1 else st.error.repeat(1, st.pool, *[1] * (st.error.dim() - 2))
        rho, drho = correlation_and_grad(st.out.detach(), e)
        if st.null_sum is not None:  # the noise level: the same output against another clip's error
            st.null_sum += neuron_correlation(st.out.detach(), e.roll(1, 0))
        st.running = rho if st.batches == 0 else EMA_DECAY * st.running + (1 - EMA_DECAY) * rho
        st.epoch_sum += rho
        st.batches += 1
        grad = -torch.sign(st.running).view(1, -1, *([1] * (drho.dim() - 2))) * drho
        if st.out_backward is not None:  # produced by ops.Tape: a hand-written backward
            st.out_backward(grad)
        else:
            outs.append(st.out)
            grads.append(grad)
        st.out = st.error = st.out_backward = None
    if outs:
        torch.autograd.backward(outs, grads)


def end_candidate_epoch(layers: list[DendriticLayer], rel_gain: float = 0.02) -> bool:
    """Snapshot every channel whose epoch correlation beat its best. Returns True if some layer's mean
    epoch |rho| beat its best mean by >= rel_gain: per-channel gains alone are too noisy to end on."""
    improved = False
    for layer in layers:
        st = layer.candidate
        if st.batches == 0:
            continue
        score = (st.epoch_sum / st.batches).abs()
        better = score > st.best_score
        with torch.no_grad():
            for best, p in zip(st.best_params, st.module.parameters()):
                best[better] = p.detach()[better]
            st.best_cascade[:, better] = st.cascade.detach()[:, better]
            st.best_score = torch.where(better, score, st.best_score)
            if st.null_sum is not None:
                torch.maximum(st.null_best, (st.null_sum / st.batches).abs(), out=st.null_best)
                st.null_sum.zero_()
        # one host sync per layer per epoch; a pool counts each neuron's best member
        mean = float(st.best_score.view(st.pool, -1).amax(0).mean() if st.pool > 1 else score.mean())
        if mean > st.best_mean * (1 + rel_gain) + 1e-6:
            st.best_mean, improved = mean, True
        st.epoch_sum.zero_()
        st.batches = 0
    return improved


def _best_rows(layer: DendriticLayer) -> torch.Tensor:
    """Per neuron c, the candidate row p*C + c of its best-scoring pool member (c itself without a pool)."""
    st, c = layer.candidate, layer.num_neurons
    return st.best_score.view(st.pool, c).argmax(0) * c + torch.arange(c, device=st.best_score.device)


def selected_channels(layer: DendriticLayer, noise_ratio: float) -> torch.Tensor:
    """Bool [C]: the neurons whose (best pool member's) candidate scores >= noise_ratio x its noise level,
    and that carry every earlier dendrite (installed channels stay nested). noise_ratio 0: every neuron."""
    st, c = layer.candidate, layer.num_neurons
    keep = torch.ones(c, dtype=torch.bool, device=st.best_score.device)
    if noise_ratio > 0 and layer.activation != "linear":  # (linear dendrites deploy at zero params anyway)
        if st.null_best is None:
            raise ValueError("selective installation needs candidates begun with noise=True")
        rows = _best_rows(layer)
        score, null = st.best_score[rows], st.null_best[rows]
        keep = (score > 0) & (score >= noise_ratio * null)
    if layer.num_dendrites:
        keep &= layer.installed_channels()[-1]
    return keep


def install_candidates(layers: list[DendriticLayer], noise_ratio: float = 0.0) -> None:
    """Install each layer's per-channel best candidate (with a pool: each neuron's best-scoring member) as a
    new dendrite with a zero output weight; with noise_ratio > 0 only on `selected_channels`, the other
    channels installed as exact zeros."""
    for layer in layers:
        st = layer.candidate
        keep = selected_channels(layer, noise_ratio)
        module, rows = st.module, slice(None)
        if st.pool > 1:
            module, rows = layer.dendrite_shell(), _best_rows(layer)
        with torch.no_grad():
            for p, best in zip(module.parameters(), st.best_params):
                p.copy_(best[rows] * keep.view(-1, *[1] * (best.dim() - 1)))
        layer.candidate = None
        layer.add_dendrite(module, st.best_cascade[:, rows] * keep)


def drop_candidates(layers: list[DendriticLayer]) -> None:
    """Discard candidates without installing them (e.g. training ended inside a dendrite phase)."""
    for layer in layers:
        layer.candidate = None

