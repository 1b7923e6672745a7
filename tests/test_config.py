import json

import pytest

from trainer.config import CONFIG_DIR, load_config
from trainer.errors import UserError

from conftest import write_config


@pytest.mark.parametrize("name", ["demo", "hifigan_v1", "hifigan_v2", "hifigan_v3", "hifigan_48k"])
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.training.segment_size % cfg.audio.hop_size == 0


def test_reference_variants_match_the_paper():
    v1, v2, v3 = (load_config(f"hifigan_v{i}") for i in (1, 2, 3))
    assert (v1.generator.upsample_initial_channel, v2.generator.upsample_initial_channel,
            v3.generator.upsample_initial_channel) == (512, 128, 256)
    assert v3.generator.resblock == "2" and v3.generator.upsample_rates == [8, 8, 4]
    for cfg in (v1, v2, v3):
        assert (cfg.audio.sampling_rate, cfg.audio.num_mels, cfg.audio.n_fft, cfg.audio.hop_size) == (22050, 80, 1024, 256)
        assert cfg.training.segment_size == 8192


def test_48k_config_is_the_product_default():
    cfg = load_config("hifigan_48k")
    assert (cfg.audio.sampling_rate, cfg.audio.num_mels, cfg.audio.hop_size) == (48000, 128, 256)
    assert cfg.generator.upsample_rates == [8, 8, 2, 2]
    assert cfg.discriminator.periods == [2, 3, 5, 7, 11] and cfg.discriminator.scales == 3
    t, s = cfg.training, cfg.schedule
    assert (t.batch_size, t.learning_rate_g, t.learning_rate_d) == (16, 2e-4, 2e-4)
    assert (t.lambda_mel, t.lambda_adv, t.lambda_fm, t.target_step) == (45, 1, 2, 500_000)
    assert (s.log_every, s.validate_every, s.checkpoint_every) == (100, 1000, 5000)
    assert s.milestones[:5] == [10_000, 20_000, 30_000, 40_000, 50_000]


def test_jik876_config_json_is_accepted(tmp_path):
    ref = {
        "resblock": "2", "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002, "adam_b1": 0.8,
        "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234, "upsample_rates": [8, 8, 4],
        "upsample_kernel_sizes": [16, 16, 8], "upsample_initial_channel": 256,
        "resblock_kernel_sizes": [3, 5, 7], "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]],
        "segment_size": 8192, "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 256,
        "win_size": 1024, "sampling_rate": 22050, "fmin": 0, "fmax": 8000, "fmax_for_loss": None,
        "num_workers": 4, "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321", "world_size": 1},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(ref))
    cfg = load_config(path)
    assert cfg.generator == load_config("hifigan_v3").generator
    assert cfg.training.learning_rate_g == cfg.training.learning_rate_d == 0.0002


def error_of(path) -> str:
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_key_names_the_closest_valid_one(tmp_path):
    path = write_config(tmp_path / "c.yaml", training={"bach_size": 4})
    assert "unknown key 'training.bach_size' (did you mean 'batch_size'?)" in error_of(path)


def test_unknown_key_in_jik876_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"upsample_rate": [8, 8, 2, 2]}))
    assert "did you mean 'upsample_rates'" in error_of(path)


def test_wrong_type(tmp_path):
    path = write_config(tmp_path / "c.yaml", training={"batch_size": "sixteen"})
    assert "'training.batch_size' must be an integer, got a string 'sixteen'" in error_of(path)


def test_upsampling_must_multiply_to_hop(tmp_path):
    path = write_config(tmp_path / "c.yaml", generator={"upsample_rates": [8, 8, 2, 4], "upsample_kernel_sizes": [16, 16, 4, 8]})
    assert "product of generator.upsample_rates (8x8x2x4 = 512) must equal audio.hop_size (256)" in error_of(path)


def test_segment_must_be_a_multiple_of_hop(tmp_path):
    path = write_config(tmp_path / "c.yaml", training={"segment_size": 4000})
    assert "training.segment_size (4000) must be a positive multiple of audio.hop_size (256)" in error_of(path)


def test_fmax_above_nyquist(tmp_path):
    path = write_config(tmp_path / "c.yaml", audio={"fmax": 12000})
    assert "audio.fmax (12000 Hz) is above Nyquist (11025 Hz" in error_of(path)


def test_missing_file():
    assert "config file not found: no/such.yaml" in error_of("no/such.yaml")


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  batch_size: [4\n")
    assert "malformed YAML" in error_of(path)


def test_bare_names_resolve_in_config_dir():
    assert load_config("demo") == load_config(CONFIG_DIR / "demo.yaml")
