from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainer.config import CONFIG_DIR
from trainer.demo_corpus import ensure_demo_corpus

REPO = Path(__file__).resolve().parent.parent
LJSPEECH_MINI = REPO.parent / "shared" / "data" / "ljspeech-mini"


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    return ensure_demo_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def ljspeech_mini() -> Path:
    if not (LJSPEECH_MINI / "metadata.csv").is_file():
        pytest.skip("../shared/data/ljspeech-mini is not present")
    return LJSPEECH_MINI


def write_config(path: Path, base: str = "demo", **sections) -> Path:
    """The shipped ``base`` config with some keys replaced, e.g. schedule={"log_every": 2}."""
    raw = yaml.safe_load((CONFIG_DIR / f"{base}.yaml").read_text())
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def quick_config(tmp_path) -> Path:
    """The demo config with every bookkeeping event happening within a few steps."""
    return write_config(
        tmp_path / "quick.yaml",
        schedule={"log_every": 2, "validate_every": 3, "checkpoint_every": 2, "keep_last": 2,
                  "val_samples": 1, "milestones": [4]},
    )
