"""Edge Impulse's MFCC block (implementation version 4) in plain numpy.

Written from the algorithm in ../shared/docs/ei-contract.md §7 (not from EI's or speechpy's code) so
that features computed locally match the X arrays EI hands to a learning block to ~1e-5. Only version 4
is implemented: every new EI project gets it, and older versions differ in framing and mel bins.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
from scipy.fft import dct

from features.errors import InputError

_ZERO = 1e-10  # EI replaces exact zeros by this before log() and adds it to the CMVN std.


def _samples(seconds: float, sample_rate: int) -> int:
    """Seconds to samples the way EI does: ceil, unless within 0.001 of the floor (float noise)."""
    x = sample_rate * seconds
    return math.floor(x) if x - math.floor(x) < 0.001 else math.ceil(x)


def frame_count(n_samples: int, sample_rate: int = 16000, frame_length: float = 0.02,
                frame_stride: float = 0.02) -> int:
    """Frames EI makes from n samples (no padding); lets callers size models without running the DSP."""
    length, stride = _samples(frame_length, sample_rate), _samples(frame_stride, sample_rate)
    return (n_samples - (length - stride)) // stride


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * np.expm1(mel / 1127.0)


def mel_filterbank(num_filters: int, fft_length: int, sample_rate: int, low_frequency: float,
                   high_frequency: float) -> np.ndarray:
    """(num_filters, fft_length//2+1) HTK-mel triangles of peak 1, no area normalisation (EI, not Slaney)."""
    n_bins = fft_length // 2 + 1
    hz = _mel_to_hz(np.linspace(_hz_to_mel(low_frequency), _hz_to_mel(high_frequency), num_filters + 2))
    hz[-1] -= 0.001  # keeps the top edge of the last triangle inside the spectrum
    edges = np.floor((fft_length + 1) * hz / sample_rate).astype(int)
    left, mid, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    k = np.arange(n_bins)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((k > left) & (k <= mid), (k - left) / (mid - left), 0.0)
        falling = np.where((k >= mid) & (k < right), (right - k) / (right - mid), 0.0)
    bank = np.maximum(rising, falling)  # both are 1 at the peak; a filter with left == right stays empty
    if not np.all(bank.any(axis=1)):
        raise InputError(f"mel filterbank has an empty filter: use fewer than {num_filters} filters, a "
                         f"larger FFT or a wider frequency range")
    return bank


def cmvn_window(feats: np.ndarray, win_size: int) -> np.ndarray:
    """Sliding-window mean and variance normalisation over frames, mirrored ('symmetric') at both ends."""
    half = (win_size - 1) // 2

    def window_stat(a: np.ndarray, stat) -> np.ndarray:
        padded = np.pad(a, ((half, half), (0, 0)), mode="symmetric")
        return stat(np.lib.stride_tricks.sliding_window_view(padded, win_size, axis=0), axis=-1)

    centred = feats - window_stat(feats, np.mean)
    return centred / (window_stat(centred, np.std) + _ZERO)


def check_params(sample_rate: int, num_cepstral: int, num_filters: int, fft_length: int, low_frequency: float,
                 high_frequency: float, win_size: int, frame_length: float, frame_stride: float) -> None:
    """Reject the settings EI's block rejects, with a message that says which one and why."""
    problems = [
        (not 1 <= num_cepstral <= num_filters, f"num_cepstral {num_cepstral} must be 1..num_filters"),
        (fft_length < 2 or fft_length & (fft_length - 1), f"fft_length {fft_length} must be a power of 2"),
        (win_size < 0 or (win_size > 0 and win_size % 2 == 0), f"win_size {win_size} must be 0 or odd"),
        (frame_length <= 0 or frame_stride <= 0, "frame_length and frame_stride must be > 0"),
        (not 0 <= low_frequency < high_frequency <= sample_rate / 2,
         f"need 0 <= low_frequency < high_frequency <= {sample_rate / 2:g} Hz"),
    ]
    for bad, message in problems:
        if bad:
            raise InputError(message)


def mfcc(signal: np.ndarray, sample_rate: int = 16000, *, num_cepstral: int = 13, frame_length: float = 0.02,
         frame_stride: float = 0.02, num_filters: int = 32, fft_length: int = 256, low_frequency: float = 0.0,
         high_frequency: float = 0.0, win_size: int = 101, pre_cof: float = 0.98,
         pre_shift: int = 1) -> np.ndarray:
    """EI MFCC of a 1-D signal of int16-scale samples: flat (frames*num_cepstral,) float32, frame-major.

    The signal is used as given (no window padding, see features.audio for that); int16 scale matters only
    where frames are digital silence, because CMVN removes any overall gain.
    """
    high_frequency = high_frequency or sample_rate / 2
    check_params(sample_rate, num_cepstral, num_filters, fft_length, low_frequency, high_frequency, win_size,
                 frame_length, frame_stride)
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(f"signal must be 1-D, got shape {x.shape}")
    x = x - pre_cof * np.roll(x, pre_shift)  # wraps around: y[0] uses the last sample, like EI
    length, stride = _samples(frame_length, sample_rate), _samples(frame_stride, sample_rate)
    n_frames = frame_count(len(x), sample_rate, frame_length, frame_stride)
    if n_frames < 1:
        raise InputError(f"{len(x)} samples are too short for one {length}-sample frame")
    frames = np.lib.stride_tricks.sliding_window_view(x, length)[::stride][:n_frames]  # rectangular window
    power = np.abs(np.fft.rfft(frames, n=fft_length)) ** 2 / fft_length
    energy = power.sum(axis=1)
    bank = mel_filterbank(num_filters, fft_length, sample_rate, low_frequency, high_frequency)
    mel_energy = power @ bank.T
    log_mel = np.log(np.where(mel_energy == 0, _ZERO, mel_energy))
    cepstra = dct(log_mel, type=2, norm="ortho")[:, :num_cepstral]
    cepstra[:, 0] = np.log(np.where(energy == 0, _ZERO, energy))  # EI's "DC elimination"
    if win_size > 0:
        cepstra = cmvn_window(cepstra, win_size)
    return cepstra.astype(np.float32).ravel()


# EI's parameters.json defaults for implementation version 4 (§6.2), taken from mfcc()'s signature so the CLI
# options cannot drift from it. high_frequency 0 means fs/2.
DEFAULTS: dict[str, float | int] = {
    name: p.default for name, p in inspect.signature(mfcc).parameters.items() if p.kind is p.KEYWORD_ONLY
}
