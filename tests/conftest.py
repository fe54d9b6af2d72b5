"""Shared fixtures: paths to the real data beside the checkout (skipped with a reason if absent)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# As the progreid command does: idle OpenMP threads sleep, so the DataLoader workers and the
# subprocesses of the end-to-end tests get the cores (set before torch is first imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CUHK01 = SHARED / "data" / "cuhk01"
CUHK03_PROTOCOL = SHARED / "data" / "cuhk03_protocol"
MARKET1501 = SHARED / "data" / "market1501"

# The benchmarks' plain references (argsort evaluation, dense re-ranking) check the tests too.
sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.fixture(scope="session", autouse=True)
def temporary_cache_dirs(tmp_path_factory: pytest.TempPathFactory):
    """Every test, and every command a test starts, writes its decoded-image cache (and
    matplotlib its font cache) in a temporary folder, never in the user's ``~/.cache``."""
    from progreid.data.cache import CACHE_DIR_ENV

    saved = {name: os.environ.get(name) for name in (CACHE_DIR_ENV, "MPLCONFIGDIR")}
    os.environ[CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("decoded-cache"))
    os.environ["MPLCONFIGDIR"] = str(tmp_path_factory.mktemp("matplotlib"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def one_torch_thread():
    """Small tensors: intra-op threads only add overhead (a lot on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cuhk01_root() -> Path:
    if not (CUHK01 / "campus").is_dir():
        pytest.skip(f"real CUHK01 images not found at {CUHK01} (../shared is absent)")
    return CUHK01


@pytest.fixture(scope="session")
def mobilenetv2_weights() -> None:
    """Skips a test that fine-tunes the ImageNet MobileNetV2 when its weights are not installed."""
    import importlib.util

    from progreid.models.pretrained import IMAGENET_SOURCES

    weights = IMAGENET_SOURCES["mobilenetv2"]
    if importlib.util.find_spec(weights.package) is None:
        pytest.skip(f"MobileNetV2 ImageNet weights not installed ({weights.install})")


@pytest.fixture(scope="session")
def market1501_root() -> Path:
    if not (MARKET1501 / "bounding_box_train").is_dir():
        pytest.skip(f"real Market-1501 not found at {MARKET1501} (../shared is absent)")
    return MARKET1501


@pytest.fixture
def cuhk03_protocol_dir() -> Path:
    if not (CUHK03_PROTOCOL / "cuhk03_new_protocol_config_detected.mat").is_file():
        pytest.skip(f"real CUHK03 split files not found at {CUHK03_PROTOCOL} (../shared is absent)")
    return CUHK03_PROTOCOL


@pytest.fixture(scope="session")
def tiny_pedestrians(tmp_path_factory: pytest.TempPathFactory):
    """``make(seed)`` writes the tiny synthetic set of the training tests (24 identities, 12 for
    training, 2 cameras x 2 images, one query camera, no distractors, 64 x 32) and returns it."""
    from progreid.data.synthetic import generate_pedestrians

    def make(seed: int) -> Path:
        return generate_pedestrians(tmp_path_factory.mktemp("synthetic") / "data", identities=24,
                                    train_identities=12, cameras=2, images_per_camera=2,
                                    query_cameras=1, multi_query_images=1, distractors=0,
                                    height=64, width=32, seed=seed)
    return make
