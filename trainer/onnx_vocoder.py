"""Vocode with a generator exported by ``vocodertui export --format onnx``, through onnxruntime and
without torch: ``OnnxVocoder`` has ``Vocoder``'s call shape (a mel [num_mels, frames] in, a float32
waveform [frames * hop_size] out; a batch; a list), its input checks and its ``mel``/``from_audio``.

Everything it needs (rate, hop, the mel's settings) is in the model's metadata, written at export.

A list of mels of different lengths runs one mel at a time, not padded into one batch as ``Vocoder``
does: ``Vocoder`` keeps each item's padded tail from leaking into its last samples with forward hooks on
the torch modules (``trainer.inference._tails_neutralised``), which an exported graph does not carry, and
onnxruntime prepares no kernels per shape, so a batch saves it little (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from trainer.errors import UserError
from trainer.inference_input import checked_audio, checked_mel, resampled_for_mel
from trainer.mel_numpy import MelParams, NumpyMel

# metadata_props of an exported model, each value JSON text (so a missing fmax is "null")
METADATA_KEYS = ("sampling_rate", "hop_size", "num_mels", "n_fft", "win_size", "fmin", "fmax", "generator",
                 "config_name", "step", "opset", "source_checkpoint", "vocodertui_version")
INPUT_NAME = "mel"  # [batch, num_mels, frames], float32
OUTPUT_NAME = "audio"  # [batch, 1, frames * hop_size], float32
ONNX_SUFFIX = ".onnx"


def is_onnx_file(path: Path) -> bool:
    """Whether ``path`` is meant as an ONNX model: its suffix (the format has no magic bytes)."""
    return path.suffix.lower() == ONNX_SUFFIX


def read_metadata(session: object, path: Path) -> dict:
    props = session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    missing = [key for key in METADATA_KEYS if key not in props]
    if missing:
        raise UserError(f"{path} is an ONNX model without vocodertui's metadata ({', '.join(missing[:3])}…): "
                        f"export it with vocodertui export --format onnx")
    try:
        return {key: json.loads(props[key]) for key in METADATA_KEYS}
    except ValueError:
        raise UserError(f"{path} has unreadable vocodertui metadata; export it again") from None


class OnnxVocoder:
    """An exported generator in an onnxruntime session, on the CPU, in fp32.

    Attributes: ``sampling_rate``, ``hop_size``, ``num_mels``, ``n_fft``, ``metadata`` (all of it, see
    ``METADATA_KEYS``), ``step``, ``precision`` (always ``fp32``).
    """

    precision = "fp32"

    def __init__(self, path: Union[str, Path]):
        """Open ``path`` (an .onnx file that ``vocodertui export --format onnx`` wrote); UserError in one
        line for a file that is missing, is not an ONNX model, or lacks the metadata."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise UserError(f"ONNX model not found: {path}" if not path.is_dir() else
                            f"{path} is a folder; pass the .onnx file that vocodertui export --format onnx wrote")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path} is not a readable ONNX model ({first[:160]})") from None
        self.path = path
        self.metadata = read_metadata(self.session, path)
        self.step = self.metadata["step"]
        self._mel = None

    @property
    def sampling_rate(self) -> int:
        return int(self.metadata["sampling_rate"])

    @property
    def hop_size(self) -> int:
        return int(self.metadata["hop_size"])

    @property
    def num_mels(self) -> int:
        return int(self.metadata["num_mels"])

    @property
    def n_fft(self) -> int:
        return int(self.metadata["n_fft"])

    def __repr__(self) -> str:
        m = self.metadata
        return (f"OnnxVocoder({self.path.name}, {m['generator']}, {self.sampling_rate} Hz, hop {self.hop_size}, "
                f"{self.num_mels} mels, opset {m['opset']})")

    def __call__(self, mel: Union[object, Sequence[object]]) -> Union[np.ndarray, list[np.ndarray]]:
        """Vocode a mel [num_mels, frames], a batch [batch, num_mels, frames] or a list of mels."""
        if isinstance(mel, (list, tuple)):
            return self.vocode_list(mel)
        array = checked_mel(mel, self.num_mels, "mel", batched=True)
        if array.ndim == 2:
            return self._run(array[None])[0]
        return self._run(array)

    def vocode_list(self, mels: Sequence[object]) -> list[np.ndarray]:
        """Waveforms [frames_i · hop] of mels [num_mels, frames_i], each run on its own (see the module)."""
        arrays = [checked_mel(m, self.num_mels, f"mel {i}" if len(mels) > 1 else "mel", batched=False)
                  for i, m in enumerate(mels)]
        return [self._run(a[None])[0] for a in arrays]

    def mel(self, wav: object, sr: int) -> np.ndarray:
        """The mel [num_mels, len // hop_size] of mono samples ``wav`` at ``sr`` Hz (resampled first), in
        numpy (``trainer.mel_numpy``)."""
        samples = resampled_for_mel(checked_audio(np.asarray(wav), sr), sr, self.sampling_rate, self.n_fft)
        if self._mel is None:
            m = self.metadata
            self._mel = NumpyMel(MelParams(self.sampling_rate, self.n_fft, self.hop_size, int(m["win_size"]),
                                           self.num_mels, float(m["fmin"]), m["fmax"]))
        return self._mel(samples)

    def from_audio(self, wav: object, sr: int) -> np.ndarray:
        """Resynthesise mono samples ``wav`` at ``sr`` Hz: their mel, vocoded."""
        return self._run(self.mel(wav, sr)[None])[0]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """[B, T · hop] float32 from a checked batch [B, num_mels, T]."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0][:, 0]
