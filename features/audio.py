"""Audio files to the int16-scale 16 kHz mono windows that EI's time-series input block feeds the MFCC."""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from features.errors import InputError
from features.mfcc import mfcc

SAMPLE_RATE = 16000


@functools.cache
def _librosa_adds_decoders() -> bool:
    """librosa reads what libsndfile cannot only through audioread's ffmpeg/GStreamer/... backends; its raw
    backend (Python's wave module) adds nothing, so without those, skip librosa's 2 s import per run."""
    import audioread

    return any(b.__name__ != "RawAudioFile" for b in audioread.available_backends())


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) floats in [-1, 1) and the rate; librosa covers what libsndfile cannot open."""
    try:
        return sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.SoundFileError, OSError) as first:
        reason = f"{path}: unreadable audio ({str(first).splitlines()[0]})"
        if not _librosa_adds_decoders():
            raise InputError(reason) from None
        try:
            import librosa  # slow import, and only needed for files libsndfile rejects

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, rate = librosa.load(str(path), sr=None, mono=False, dtype=np.float64)
            return np.atleast_2d(data).T, int(rate)
        except Exception:  # noqa: BLE001 - audioread and librosa raise many types; all mean "unreadable"
            raise InputError(reason) from None


def read_audio(path: str | Path) -> np.ndarray:
    """Samples of any file soundfile or librosa reads, as EI sees them: 16 kHz, mono, int16 values as float64.

    Channels are averaged; other rates go through scipy's resample_poly (the resampler the parity fixture and
    fsdd-digits were built with), then round and clip to int16, so 16 kHz int16 files come back exactly.
    """
    path = Path(path)
    data, rate = _decode(path)
    if data.size == 0:
        raise InputError(f"{path}: no audio samples (zero-length file)")
    if not np.isfinite(data).all():
        raise InputError(f"{path}: NaN or infinite samples")
    x = data.mean(axis=1) * 32768.0
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly  # imports scipy.stats too: 1-2 s that 16 kHz input never needs

        g = math.gcd(SAMPLE_RATE, rate)
        x = resample_poly(x, SAMPLE_RATE // g, rate // g)
    return np.clip(np.round(x), -32768, 32767)


def ms_to_samples(ms: float) -> int:
    """Window lengths are given in ms, like EI's input block; reject ones that are not whole samples > 0."""
    n = ms * SAMPLE_RATE / 1000
    if n < 1 or n != int(n):
        raise InputError(f"{ms} ms is not a positive whole number of samples at {SAMPLE_RATE} Hz")
    return int(n)


def windows(x: np.ndarray, window: int, increase: int) -> np.ndarray:
    """(n, window) slices like EI's input block: a short clip is zero-padded at the end to one window; a long
    one gives a window every `increase` samples while a whole window fits (a shorter tail is dropped)."""
    if len(x) <= window:
        return np.pad(x, (0, window - len(x)))[None, :]
    return np.lib.stride_tricks.sliding_window_view(x, window)[::increase]


def wav_features(path: str | Path, window_ms: float = 1000, window_increase_ms: float = 500,
                 **mfcc_params) -> np.ndarray:
    """(windows, features) float32: the rows EI would put in X for this file."""
    x = read_audio(path)
    return np.stack([mfcc(w, SAMPLE_RATE, **mfcc_params)
                     for w in windows(x, ms_to_samples(window_ms), ms_to_samples(window_increase_ms))])


def compute_wav(path: str | Path, window_ms: float = 1000, **mfcc_params) -> np.ndarray:
    """Flat (frames*coefficients,) float32 features of a file's first window (zero-padded if shorter)."""
    window = ms_to_samples(window_ms)
    return mfcc(windows(read_audio(path), window, window)[0], SAMPLE_RATE, **mfcc_params)
