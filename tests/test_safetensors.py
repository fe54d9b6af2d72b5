"""``model.safetensors`` beside ``model.pt``: the same weights and PCA as plain tensors, the
config in its metadata; it loads without unpickling anything, into ``progreid.load`` and into a
network built by hand; training writes it; broken files are refused naming them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from deploy_helpers import TRAIN_IDS, make_run, synthetic_data
from reliability_support import config_file, make_market, run_cli
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import progreid
from progreid.config import config_from_dict, config_to_dict
from progreid.deploy.bundle import load_bundle
from progreid.errors import CheckpointError
from progreid.models import build_model
from progreid.utils.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("data"))


@pytest.fixture
def run(tmp_path, data):
    return make_run(tmp_path / "run", data, name="pla", pca_dim=8, metric="cosine")


def test_it_holds_the_bundle_weights_pca_and_config(run):
    bundle = load_checkpoint(run / "model.pt")
    tensors = load_file(run / "model.safetensors")
    assert set(tensors) == {*bundle["state_dict"], "pca.mean", "pca.components"}
    for key, value in bundle["state_dict"].items():
        assert torch.equal(tensors[key], value), key
    assert torch.equal(tensors["pca.components"], bundle["pca"]["components"])
    assert torch.equal(tensors["pca.mean"], bundle["pca"]["mean"])
    with safe_open(run / "model.safetensors", framework="pt") as file:
        metadata = file.metadata()
    assert metadata["format"] == "progreid-safetensors-1"
    assert json.loads(metadata["config"]) == bundle["config"]
    assert int(metadata["num_classes"]) == bundle["num_classes"] == TRAIN_IDS
    assert json.loads(metadata["normalization"]) == bundle["normalization"]


def test_the_network_loads_by_hand_from_the_file_alone(run):
    """What a user without progreid's loader does: build the network from the metadata's
    config, load the tensors that are not the PCA, strictly."""
    with safe_open(run / "model.safetensors", framework="pt") as file:
        cfg = config_from_dict(json.loads(file.metadata()["config"]))
        num_classes = int(file.metadata()["num_classes"])
    network = build_model(num_classes, **{**cfg.model.model_dump(), "pretrained": None})
    weights = {k: v for k, v in load_file(run / "model.safetensors").items()
               if not k.startswith("pca.")}
    network.load_state_dict(weights)
    images = torch.rand(2, 3, cfg.data.height, cfg.data.width)
    with torch.no_grad():
        expected = load_bundle(run).model(images)
        assert torch.equal(network.eval()(images), expected)


def test_progreid_load_uses_it_without_unpickling(run, data, monkeypatch):
    paths = sorted((data / "query").iterdir())[:4]
    pickled = progreid.load(run, device="cpu")
    expected = pickled.embed(paths)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")
    monkeypatch.setattr(torch, "load", refuse)
    served = progreid.load(run / "model.safetensors", device="cpu")
    np.testing.assert_array_equal(served.embed(paths), expected)
    assert served.path == (run / "model.safetensors").resolve() and served.metric == "cosine"
    assert config_to_dict(served.config) == config_to_dict(pickled.config)
    (run / "model.pt").unlink()  # a folder shipped with the safetensors file only
    np.testing.assert_array_equal(progreid.load(run, device="cpu").embed(paths), expected)


def test_broken_files_are_refused_naming_them(tmp_path, run):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(CheckpointError, match="junk.safetensors is not a readable safetensors"):
        load_bundle(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, other, {"format": "pt"})
    with pytest.raises(CheckpointError, match="other.safetensors is not a progreid model"):
        load_bundle(other)
    with pytest.raises(CheckpointError, match="model file not found"):
        load_bundle(tmp_path / "missing.safetensors")
    tensors = load_file(run / "model.safetensors")
    with safe_open(run / "model.safetensors", framework="pt") as file:
        metadata = {**file.metadata(), "config": "{cut"}
    save_file(tensors, tmp_path / "cut.safetensors", metadata)
    with pytest.raises(CheckpointError, match="cut.safetensors: unreadable progreid metadata"):
        load_bundle(tmp_path / "cut.safetensors")


def test_training_writes_it_beside_model_pt(tmp_path, capsys):
    root = make_market(tmp_path / "market")
    out = tmp_path / "run"
    code, err = run_cli(capsys, "train", config_file(tmp_path, root, out, train={"epochs": 1}))
    assert code == 0, err
    bundle = load_checkpoint(out / "model.pt")
    tensors = load_file(out / "model.safetensors")
    assert set(tensors) == set(bundle["state_dict"])  # no PCA in this recipe
    assert all(torch.equal(tensors[k], v) for k, v in bundle["state_dict"].items())
