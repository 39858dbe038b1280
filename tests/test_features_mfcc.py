"""EI-exact MFCC: parity with EI's own features on every clip of the wav-samples fixture; the options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from features_wavs import FIXTURE, ROWS

from features import DEFAULTS, InputError, compute_wav, mfcc, read_audio
from features.mfcc import frame_count

pytestmark = pytest.mark.skipif(not ROWS, reason=f"parity fixture not found at {FIXTURE}")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return np.load(FIXTURE / "features.npy")


@pytest.mark.parametrize("i", range(len(ROWS)), ids=[r["file"] for r in ROWS])
def test_parity_with_ei_features(i: int, reference: np.ndarray) -> None:
    """Every clip, edge cases included (silence, 0.5 s zero-padded, 8 kHz resampled), within 1e-3 / 1e-4."""
    ours = compute_wav(FIXTURE / ROWS[i]["file"])
    assert ours.dtype == np.float32 and ours.shape == (650,)
    diff = np.abs(ours - reference[i])
    assert diff.max() <= 1e-3 and diff.mean() <= 1e-4, (diff.max(), diff.mean())


def test_resampler_is_the_fixture_resampler() -> None:
    """8 kHz -> 16 kHz gives exactly the samples the fixture's EI features were computed from."""
    expected, rate = sf.read(FIXTURE / "edge__8khz_seven_resampled16k.wav", dtype="int16")
    assert rate == 16000
    np.testing.assert_array_equal(read_audio(FIXTURE / "edge__8khz_seven.wav"), expected)


def test_stereo_and_float_wavs_read_as_int16_mono(tmp_path: Path) -> None:
    x, _ = sf.read(FIXTURE / "hello-world__helloworld_0.wav", dtype="int16")
    sf.write(tmp_path / "stereo.wav", np.stack([x, x], axis=1), 16000, subtype="PCM_16")
    sf.write(tmp_path / "float.wav", x / 32768.0, 16000, subtype="FLOAT")
    for name in ("stereo.wav", "float.wav"):
        np.testing.assert_array_equal(read_audio(tmp_path / name), x)


def test_silence_is_finite_and_near_zero() -> None:
    f = compute_wav(FIXTURE / "edge__silence_1s.wav")
    assert np.isfinite(f).all() and np.abs(f).max() < 1e-3


def test_gain_does_not_change_features() -> None:
    """CMVN removes the scale, so int16-scale and /32768 inputs agree (EI SDK versions differ on this)."""
    x = read_audio(FIXTURE / "commands12__yes_0.wav")
    np.testing.assert_allclose(mfcc(x), mfcc(x / 32768.0), atol=1e-4)


def test_shapes_follow_the_options() -> None:
    x = np.random.default_rng(0).normal(0, 1000, 16000)
    assert DEFAULTS == {"num_cepstral": 13, "frame_length": 0.02, "frame_stride": 0.02, "num_filters": 32,
                        "fft_length": 256, "low_frequency": 0.0, "high_frequency": 0.0, "win_size": 101,
                        "pre_cof": 0.98, "pre_shift": 1}
    assert frame_count(16000) == 50
    assert mfcc(x, frame_stride=0.01).shape == (99 * 13,)  # EI forum: 1 s at 0.02/0.01 -> 99 frames
    assert mfcc(x, num_cepstral=20, num_filters=40, fft_length=512).shape == (50 * 20,)
    raw = mfcc(x, win_size=0).reshape(50, 13)
    assert abs(raw[:, 1:].mean()) > 0.1  # no CMVN: not centred
    normalised = mfcc(x).reshape(50, 13)
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=0.01)  # each window spans most of the clip


@pytest.mark.parametrize("bad", [{"fft_length": 300}, {"num_cepstral": 33}, {"win_size": 100},
                                 {"high_frequency": 9000}, {"num_filters": 128, "fft_length": 64}])
def test_bad_options_raise_input_error(bad: dict) -> None:
    with pytest.raises(InputError):
        mfcc(np.ones(16000), **bad)


def test_librosa_fallback_still_reports_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where audioread has real decoders librosa gets a second try; a corrupt file is still a clear error."""
    import features.audio

    monkeypatch.setattr(features.audio, "_librosa_adds_decoders", lambda: True)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError, match="bad.wav: unreadable audio"):
        read_audio(tmp_path / "bad.wav")


def test_non_finite_float_wav_is_rejected(tmp_path: Path) -> None:
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2] * 100), 16000, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN or infinite"):
        read_audio(tmp_path / "nan.wav")
