"""EI-exact MFCC features for keyword spotting: WAVs -> EI learning-block data, and local prediction.

- features.mfcc(signal, sample_rate=16000, **params): EI's MFCC (implementation v4) of int16-scale samples.
- features.compute_wav(path, **params): the flat float32 vector EI would feed the model for a WAV.
- python -m features WAV_DIR --out-directory DATA_DIR: build an EI data directory from labelled WAVs.
- python -m features.predict MODEL WAV_OR_DIR: run an exported .onnx/.tflite model on WAVs.
"""

from features.audio import compute_wav, read_audio, wav_features
from features.errors import InputError
from features.mfcc import DEFAULTS, mfcc

__all__ = ["DEFAULTS", "InputError", "compute_wav", "mfcc", "read_audio", "wav_features"]
