import dataclasses
import json

import pytest

from trainer.config import CONFIG_DIR, dump_config, load_config
from trainer.errors import UserError

from conftest import write_config


# jik876/hifi-gan's published config_v1.json, config_v2.json and config_v3.json
JIK876_COMMON = {
    "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002, "adam_b1": 0.8, "adam_b2": 0.99, "lr_decay": 0.999,
    "seed": 1234, "segment_size": 8192, "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 256,
    "win_size": 1024, "sampling_rate": 22050, "fmin": 0, "fmax": 8000, "fmax_for_loss": None, "num_workers": 4,
    "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321", "world_size": 1},
}
JIK876_V1_GENERATOR = {
    "resblock": "1", "upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
    "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}
JIK876_CONFIGS = {
    "hifigan_v1": {**JIK876_COMMON, **JIK876_V1_GENERATOR},
    "hifigan_v2": {**JIK876_COMMON, **JIK876_V1_GENERATOR, "upsample_initial_channel": 128},
    "hifigan_v3": {**JIK876_COMMON, "resblock": "2", "upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8],
                   "upsample_initial_channel": 256, "resblock_kernel_sizes": [3, 5, 7],
                   "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]]},
}


@pytest.mark.parametrize("name", ["demo", "hifigan_v1", "hifigan_v2", "hifigan_v3", "hifigan_48k"])
def test_shipped_configs_survive_the_run_directorys_dump(name, tmp_path):
    cfg = load_config(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("name", JIK876_CONFIGS)
def test_reference_variants_are_jik876s_published_configs(name, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(JIK876_CONFIGS[name]))
    published, shipped = load_config(path), load_config(name)
    assert shipped.generator == published.generator
    assert shipped.audio == published.audio
    # jik876's training keys but num_workers, which is the machine's business, not the recipe's
    recipe = ("batch_size", "segment_size", "learning_rate_g", "learning_rate_d", "adam_b1", "adam_b2", "lr_decay", "seed")
    assert [getattr(shipped.training, key) for key in recipe] == [getattr(published.training, key) for key in recipe]


def test_48k_config_is_v1_at_48_khz():
    cfg, v1 = load_config("hifigan_48k"), load_config("hifigan_v1")
    assert cfg.audio.sampling_rate == 48000
    assert cfg.generator == v1.generator and cfg.discriminator == v1.discriminator
    assert dataclasses.replace(cfg.training, segment_size=v1.training.segment_size) == v1.training
    # the reference's durations rather than its sample counts
    rate, v1_rate = cfg.audio.sampling_rate, v1.audio.sampling_rate
    assert cfg.training.segment_size / rate == pytest.approx(v1.training.segment_size / v1_rate, rel=0.1)
    assert cfg.audio.win_size / rate == pytest.approx(v1.audio.win_size / v1_rate, rel=0.1)


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
