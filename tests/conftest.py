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

# The benchmarks' plain references (argsort evaluation, dense re-ranking) check the tests too.
sys.path.insert(0, str(REPO / "benchmarks"))


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
