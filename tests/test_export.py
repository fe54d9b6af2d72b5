"""Export: ONNX (onnxruntime) and TorchScript outputs equal an independent PyTorch reference
within 1e-4 for any batch size, PCA included; failed checks leave no file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from deploy_helpers import HEIGHT, WIDTH, make_run, synthetic_data

from progreid.deploy.bundle import load_bundle
from progreid.deploy.export import ExportError, embedding_model, export_module, export_run

#: Input normalisation of each backbone's ImageNet weights: torchvision's, TF EfficientNet-Lite's.
NORMALIZATION = {"resnet18": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
                 "mobilenetv2": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
                 "efficientnet_lite0": ([127 / 255] * 3, [128 / 255] * 3)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("data"))


def reference_embedding(bundle, images: torch.Tensor) -> np.ndarray:
    """Written out by hand: normalise, average with the mirror image, project with PCA."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1)
                 for v in NORMALIZATION[bundle.config.model.backbone])
    x = (images.float() / 255.0 - mean) / std
    with torch.no_grad():
        features = (bundle.model(x) + bundle.model(torch.flip(x, dims=[3]))) / 2
    if bundle.projection is not None:
        features = (features - bundle.projection.mean) @ bundle.projection.components.T
    return features.numpy()


def random_batch(batch: int, seed: int, height: int = HEIGHT) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, WIDTH), dtype=torch.uint8,
                         generator=generator)


@pytest.mark.parametrize(("name", "pca_dim", "height", "backbone"),
                         [("baseline", 16, HEIGHT, "resnet18"), ("pla", None, HEIGHT, "resnet18"),
                          ("mgn", 8, 96, "resnet18"), ("baseline", 16, HEIGHT, "mobilenetv2"),
                          ("pla", None, 72, "efficientnet_lite0")])
def test_onnx_equals_pytorch_under_onnxruntime(tmp_path, data, name, pca_dim, height, backbone):
    pytest.importorskip("onnx", reason="the 'export' extra (onnx) is not installed")
    ort = pytest.importorskip("onnxruntime",
                              reason="the 'export' extra (onnxruntime) is not installed")
    run = make_run(tmp_path / "run", data, name=name, pca_dim=pca_dim, height=height,
                   backbone=backbone, width=0.125 if backbone.startswith("resnet") else 0.25)
    result = export_run(run, "onnx")
    assert result.path == str(run / "model.onnx") and result.max_abs_diff <= 1e-4
    assert result.input_shape == ["batch", 3, height, WIDTH] and result.pca == (pca_dim is not None)
    bundle = load_bundle(run)
    session = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # dynamic batch axis
        images = random_batch(batch, seed=batch, height=height)
        got = session.run(None, {"images": images.numpy()})[0]
        expected = reference_embedding(bundle, images)
        assert got.shape == expected.shape == (batch, result.embedding_dim)
        assert np.abs(got - expected).max() <= 1e-4
    sidecar = json.loads((run / "model.onnx.json").read_text())
    assert sidecar["max_abs_diff"] == result.max_abs_diff and sidecar["flip"] is True


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_equals_pytorch(tmp_path, data):
    run = make_run(tmp_path / "run", data)
    out = tmp_path / "deploy" / "reid.pt"
    result = export_run(run / "model.pt", "torchscript", out)
    assert result.path == str(out) and result.embedding_dim == 16
    loaded = torch.jit.load(str(out))
    images = random_batch(4, seed=7)
    with torch.no_grad():
        got = loaded(images).numpy()
    assert np.abs(got - reference_embedding(load_bundle(run), images)).max() <= 1e-4


def test_a_failed_check_leaves_no_file(tmp_path, data):
    run = make_run(tmp_path / "run", data)
    out = tmp_path / "model.pt"
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_module(embedding_model(load_bundle(run)), "torchscript", out, HEIGHT, WIDTH,
                      tolerance=-1.0)
    assert list(tmp_path.iterdir()) == [tmp_path / "run"]


def test_mgn_stripes_that_do_not_divide_the_height_export(tmp_path, data):
    pytest.importorskip("onnxruntime", reason="the 'export' extra is not installed")
    run = make_run(tmp_path / "run", data, name="mgn", pca_dim=None)  # 64 / 16 = 4 rows, 3 stripes
    assert export_run(run, "onnx").max_abs_diff <= 1e-4
    assert (run / "model.onnx").exists()


def test_unknown_format_is_an_error(tmp_path, data):
    run = make_run(tmp_path / "run", data)
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_run(run, "tflite")


def test_export_command(tmp_path, data, capsys):
    from progreid.cli import main

    run = make_run(tmp_path / "run", data, pca_dim=None)
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(run / "model.torchscript.pt") and printed["pca"] is False
