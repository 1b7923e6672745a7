"""Spectrogram pictures: the shared viridis map, the trainer's comparison PNG and the dashboard's WAV reader."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from trainer.colormap import viridis
from trainer.spectrogram_png import write_comparison
from vocodertui.dashboard.spectrogram import READ_ERRORS, colour, read_wav

VIRIDIS_START, VIRIDIS_MIDDLE, VIRIDIS_END = (0x44, 0x01, 0x54), (0x21, 0x91, 0x8C), (0xFD, 0xE7, 0x25)


def test_colormap_is_matplotlibs_viridis():
    assert tuple(viridis(0.0)) == VIRIDIS_START
    assert tuple(viridis(1.0)) == VIRIDIS_END
    np.testing.assert_allclose(viridis(0.5), VIRIDIS_MIDDLE, atol=1.5)
    assert tuple(viridis(-2.0)) == VIRIDIS_START and tuple(viridis(7.0)) == VIRIDIS_END
    values = np.array([[0.0, 0.5], [1.0, 0.25]])
    rgb = viridis(values)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[1, 1], viridis(0.25))


@pytest.mark.parametrize("value", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_dashboard_colours_come_from_the_shared_map(value):
    np.testing.assert_allclose(colour(value).triplet, viridis(value), atol=1)


def test_comparison_png_puts_real_above_generated_on_one_colour_scale(tmp_path):
    # 2 mel bins x 3 frames; bin 0 is the lowest frequency
    real = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    generated = np.full((2, 3), 10.0)
    path = tmp_path / "cmp.png"
    write_comparison(path, real, generated)

    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (3 * 2, (2 + 4 + 2) * 2)
        pixels = np.asarray(image)
    np.testing.assert_array_equal(pixels, pixels[::2, ::2].repeat(2, axis=0).repeat(2, axis=1))  # 2x2 per bin
    bins = pixels[::2, ::2]
    assert tuple(bins[1, 0]) == VIRIDIS_START  # real's lowest value: its bottom row, first frame
    assert (bins[2:6] == 255).all()  # the white gap
    assert (bins[6:] == VIRIDIS_END).all()  # generated holds the highest value everywhere
    # real's highest value is half way up the shared scale, not the top of a scale of its own
    np.testing.assert_allclose(bins[0, 2], VIRIDIS_MIDDLE, atol=1.5)
    np.testing.assert_array_equal(bins[0, 0], viridis(0.3))  # bin 1 (upper row), frame 0


@pytest.mark.parametrize("subtype,tolerance", [("PCM_24", 2.0 ** -23), ("FLOAT", 1e-7)])
def test_read_wav_reads_the_first_channel_of_any_subtype(tmp_path, subtype, tolerance):
    t = np.arange(4000) / 16000
    left, right = 0.6 * np.sin(2 * np.pi * 440 * t), 0.2 * np.cos(2 * np.pi * 97 * t)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype=subtype)
    audio, rate = read_wav(path)
    assert rate == 16000 and audio.dtype == np.float64
    np.testing.assert_allclose(audio, left, rtol=0, atol=tolerance)


def test_unreadable_wav_raises_one_of_read_errors(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    for path in (bad, tmp_path / "missing.wav"):
        with pytest.raises(READ_ERRORS):
            read_wav(path)


def test_pictures_keep_the_trainer_and_the_dashboard_apart():
    check = ("import sys, trainer.spectrogram_png, vocodertui.dashboard.spectrogram; "
             "assert 'torch' not in sys.modules and 'textual' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", check], check=True)
