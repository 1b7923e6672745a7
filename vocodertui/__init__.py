"""vocodertui: train HiFi-GAN and BigVGAN vocoders, watch them train, and vocode with them.

``from vocodertui import Vocoder`` gives the inference API (``trainer.inference.Vocoder``)::

    v = Vocoder.from_checkpoint("ckpt_00100000.pt")
    audio = v(mel)  # mel [num_mels, frames] -> float32 waveform [frames * v.hop_size] at v.sampling_rate

``from vocodertui import OnnxVocoder`` gives the same calls on a model that ``vocodertui export
--format onnx`` wrote, run by onnxruntime without torch (``trainer.onnx_vocoder.OnnxVocoder``)::

    v = OnnxVocoder("model.onnx")
    audio = v(mel)

Both are imported on first use, so importing ``vocodertui`` (the dashboard, ``status``) never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.inference import Vocoder
    from trainer.onnx_vocoder import OnnxVocoder

__all__ = ["OnnxVocoder", "Vocoder"]


def __getattr__(name: str) -> Any:
    if name == "Vocoder":
        from trainer.inference import Vocoder

        return Vocoder
    if name == "OnnxVocoder":
        from trainer.onnx_vocoder import OnnxVocoder

        return OnnxVocoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
