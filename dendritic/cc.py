"""The CC rule: train candidate dendrites to correlate with their own neuron's error (pb-algorithm §4).

Cascade-Correlation (Fahlman & Lebiere 1989) scores a candidate by |cov(V, E)| summed over outputs; PB
specialises it per neuron: candidate channel c only correlates with the error e_c = dL/dy_c of neuron c.
We maximise the *normalised* per-neuron correlation

    rho_c = cov(v_c, e_c) / (std(v_c) * std(e_c))

over all (sample, position) pairs of a batch, with the sign fixed by the running average of rho_c, so the
ascent is on |rho_c| as in CasCor. Normalising (pb-algorithm §4.4's recommendation) makes the objective
independent of the error's tiny magnitude and of the activation's scale, so a relu candidate cannot win by
growing without bound, and Adam's step sizes behave the same for every layer.

State per layer lives in `CandidateState`: running correlation (EMA), the per-channel best score, and a
per-channel best snapshot of the candidate's weights and cascade weights V (channels are independent rows,
so each neuron keeps the candidate from its own best moment).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layer import DendriticLayer

EMA_DECAY = 0.9  # running-average decay of the per-batch correlation
EPS = 1e-12


@dataclass
class CandidateState:
    running: torch.Tensor  # EMA of per-neuron correlation rho_c (signed)
    epoch_sum: torch.Tensor  # sum of batch rho_c this epoch, for the epoch score
    batches: int
    best_score: torch.Tensor  # best |epoch-mean rho_c| so far
    best_params: list[torch.Tensor]  # per-channel snapshot of candidate parameters (row c = neuron c)
    best_cascade: torch.Tensor  # per-channel snapshot of V, shape [k, C]
    best_mean: float = 0.0  # best mean |epoch rho| over the layer's channels (drives the phase's patience)


def begin_candidates(layer: DendriticLayer) -> list[nn.Parameter]:
    """Attach a fresh random candidate (and zero cascade weights V) to `layer`; return its parameters."""
    c, k, dev = layer.num_neurons, layer.num_dendrites, layer.main.weight.device
    layer.candidate = layer.fresh_copy()
    layer.candidate_cascade = nn.Parameter(torch.zeros(k, c, device=dev))
    params = list(layer.candidate.parameters()) + [layer.candidate_cascade]
    layer.cc_state = CandidateState(
        running=torch.zeros(c, device=dev), epoch_sum=torch.zeros(c, device=dev), batches=0,
        best_score=torch.full((c,), -1.0, device=dev),
        best_params=[p.detach().clone() for p in layer.candidate.parameters()],
        best_cascade=layer.candidate_cascade.detach().clone())
    return params


def neuron_correlation(v: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Per-neuron Pearson correlation over every axis but the neuron axis (dim 1). Returns [C]."""
    v = v.transpose(0, 1).reshape(v.shape[1], -1)
    e = e.transpose(0, 1).reshape(e.shape[1], -1)
    v = v - v.mean(dim=1, keepdim=True)
    e = e - e.mean(dim=1, keepdim=True)
    cov = (v * e).mean(dim=1)
    return cov / (v.pow(2).mean(dim=1).sqrt() * e.pow(2).mean(dim=1).sqrt() + EPS)


def candidate_loss(layers: list[DendriticLayer]) -> torch.Tensor:
    """Surrogate loss whose minimisation is gradient ascent on |rho_c| for every candidate channel.

    Call after the task loss's backward pass, which filled each layer's `neuron_error` via its hook.
    Also updates the running statistics (no host sync: everything stays on the device).
    """
    total = torch.zeros((), device=layers[0].main.weight.device)
    for layer in layers:
        st: CandidateState = layer.cc_state
        rho = neuron_correlation(layer.candidate_out, layer.neuron_error)
        with torch.no_grad():
            r = rho.detach()
            st.running = r if st.batches == 0 else EMA_DECAY * st.running + (1 - EMA_DECAY) * r
            st.epoch_sum += r
            st.batches += 1
        total = total - (torch.sign(st.running) * rho).sum()
        layer.candidate_out = layer.neuron_error = None
    return total


def end_candidate_epoch(layers: list[DendriticLayer], rel_gain: float = 0.02) -> bool:
    """Snapshot every channel whose epoch correlation beat its best. Returns True if some layer's mean
    epoch |rho| beat its best mean by >= rel_gain: per-channel gains alone are too noisy to end on."""
    improved = False
    for layer in layers:
        st: CandidateState = layer.cc_state
        if st.batches == 0:
            continue
        score = (st.epoch_sum / st.batches).abs()
        better = score > st.best_score
        with torch.no_grad():
            for best, p in zip(st.best_params, layer.candidate.parameters()):
                best[better] = p.detach()[better]
            st.best_cascade[:, better] = layer.candidate_cascade.detach()[:, better]
            st.best_score = torch.where(better, score, st.best_score)
        mean = float(score.mean())  # one host sync per layer per epoch
        if mean > st.best_mean * (1 + rel_gain) + 1e-6:
            st.best_mean, improved = mean, True
        st.epoch_sum.zero_()
        st.batches = 0
    return improved


def install_candidates(layers: list[DendriticLayer]) -> None:
    """Install each layer's per-channel best candidate as a new dendrite with a zero output weight."""
    for layer in layers:
        st: CandidateState = layer.cc_state
        cand = layer.candidate
        with torch.no_grad():
            for p, best in zip(cand.parameters(), st.best_params):
                p.copy_(best)
        layer.candidate = layer.candidate_cascade = None
        del layer.cc_state
        layer.add_dendrite(cand, st.best_cascade)


def drop_candidates(layers: list[DendriticLayer]) -> None:
    """Discard candidates without installing them (e.g. training ended inside a dendrite phase)."""
    for layer in layers:
        layer.candidate = layer.candidate_cascade = layer.candidate_out = layer.neuron_error = None
        if hasattr(layer, "cc_state"):
            del layer.cc_state

