"""Export: ONNX (torch's current exporter, run by onnxruntime) and torch.export (.pt2) outputs
equal an independent PyTorch reference within 1e-4 for any batch size, PCA included, and a
float16 ONNX within 1e-2 of the largest feature; the files carry the run's config; failed checks
leave no file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import HEIGHT, WIDTH, make_run, synthetic_data

from progreid.config import config_to_dict
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


#: (model, PCA dimension, input height, backbone): baseline, PLA and MGN on ResNet-18, and the
#: two ImageNet-weight backbones. MGN at 96 rows has 6 feature-map rows (2 and 3 stripes divide
#: them); at 64 rows, 4: its 3 stripes are pooled band by band.
CASES = {"baseline": ("baseline", 16, HEIGHT, "resnet18"), "pla": ("pla", None, HEIGHT, "resnet18"),
         "mgn": ("mgn", 8, 96, "resnet18"), "mgn-uneven": ("mgn", None, HEIGHT, "resnet18"),
         "mobilenetv2": ("baseline", 16, HEIGHT, "mobilenetv2"),
         "efficientnet": ("pla", None, 72, "efficientnet_lite0")}


def case_run(root: Path, data: Path, case: str) -> Path:
    name, pca_dim, height, backbone = CASES[case]
    return make_run(root / "run", data, name=name, pca_dim=pca_dim, height=height,
                    backbone=backbone, width=0.125 if backbone.startswith("resnet") else 0.25)


def require_onnx():
    pytest.importorskip("onnxscript", reason="the 'export' extra (onnxscript) is not installed")
    return pytest.importorskip("onnxruntime",
                               reason="the 'export' extra (onnxruntime) is not installed")


def metadata_config(metadata: dict[str, str]) -> dict:
    return json.loads(metadata["progreid.config"])


def check_against_reference(run_fn, bundle, result, height: int, atol: float) -> None:
    """``run_fn`` (uint8 batch -> features) equals the hand-written reference for batches of
    1 and 5 (dynamic batch axis)."""
    for batch in (1, 5):
        images = random_batch(batch, seed=batch, height=height)
        got, expected = run_fn(images), reference_embedding(bundle, images)
        assert got.shape == expected.shape == (batch, result.embedding_dim)
        assert np.abs(got - expected).max() <= atol


# Each backbone is exported once (ONNX export of a dynamic batch takes 10-60 s on 2 cores).
@pytest.mark.parametrize("case", ["baseline", "pla", "mgn-uneven", "mobilenetv2"])
def test_onnx_equals_pytorch_under_onnxruntime(tmp_path, data, case):
    ort = require_onnx()
    onnx = pytest.importorskip("onnx", reason="the 'export' extra (onnx) is not installed")
    run = case_run(tmp_path, data, case)
    height, pca_dim = CASES[case][2], CASES[case][1]
    result = export_run(run, "onnx")
    assert result.path == str(run / "model.onnx") and result.max_abs_diff <= 1e-4
    assert result.input_shape == ["batch", 3, height, WIDTH] and result.pca == (pca_dim is not None)
    bundle = load_bundle(run)
    session = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    check_against_reference(lambda images: session.run(None, {"images": images.numpy()})[0],
                            bundle, result, height, atol=1e-4)
    sidecar = json.loads((run / "model.onnx.json").read_text())
    assert sidecar["max_abs_diff"] == result.max_abs_diff and sidecar["flip"] is True
    metadata = {p.key: p.value for p in onnx.load(result.path).metadata_props}
    assert metadata["progreid.format"] == "progreid-onnx-1"
    assert metadata_config(metadata) == config_to_dict(bundle.config)
    assert metadata["progreid.embedding_dim"] == str(result.embedding_dim)
    assert metadata["progreid.precision"] == "float32"


@pytest.mark.parametrize("case", ["baseline", "pla", "mgn", "efficientnet"])
def test_pt2_equals_pytorch_under_torch_export_load(tmp_path, data, case):
    run = case_run(tmp_path, data, case)
    out = tmp_path / "deploy" / "reid.pt2"
    result = export_run(run / "model.pt", "pt2", out)
    assert result.path == str(out) and result.max_abs_diff <= 1e-4 and result.format == "pt2"
    extra = {"progreid.json": ""}
    loaded = torch.export.load(out, extra_files=extra).module()
    bundle = load_bundle(run)
    with torch.no_grad():
        check_against_reference(lambda images: loaded(images).numpy(), bundle, result,
                                CASES[case][2], atol=1e-4)
    assert metadata_config(json.loads(extra["progreid.json"])) == config_to_dict(bundle.config)


def test_half_onnx_from_the_command_line(tmp_path, data, capsys):
    """``--half``: the network's weights are float16 in the file, and its features are within
    1e-2 of the largest feature value of the float32 reference."""
    ort = require_onnx()
    onnx = pytest.importorskip("onnx", reason="the 'export' extra (onnx) is not installed")
    from progreid.cli import main

    run = case_run(tmp_path, data, "baseline")
    assert main(["export", str(run), "--half"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(run / "model-fp16.onnx") and printed["half"] is True
    assert printed["checked"] == "max_rel_diff" and printed["tolerance"] == 1e-2
    model = onnx.load(printed["path"])
    kernels = [t for t in model.graph.initializer
               if t.name.endswith(".weight") and len(t.dims) == 4]  # convolutions
    assert kernels and all(t.data_type == onnx.TensorProto.FLOAT16 for t in kernels)
    assert {p.key: p.value for p in model.metadata_props}["progreid.precision"] == "float16"
    session = ort.InferenceSession(printed["path"], providers=["CPUExecutionProvider"])
    bundle = load_bundle(run)
    for batch in (1, 5):
        images = random_batch(batch, seed=batch)
        got = session.run(None, {"images": images.numpy()})[0]
        expected = reference_embedding(bundle, images)
        assert got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-2 * np.abs(expected).max()


def test_a_failed_check_leaves_no_file(tmp_path, data):
    run = make_run(tmp_path / "run", data)
    out = tmp_path / "model.pt2"
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_module(embedding_model(load_bundle(run)), "pt2", out, HEIGHT, WIDTH,
                      tolerance=-1.0)
    assert list(tmp_path.iterdir()) == [tmp_path / "run"]


@pytest.mark.parametrize(("fmt", "half", "message"),
                         [("tflite", False, "unknown export format 'tflite'; expected one of "
                                            "onnx, pt2"),
                          ("torchscript", False, "unknown export format 'torchscript'"),
                          ("pt2", True, "half precision .* is for ONNX only, not pt2")])
def test_unknown_formats_and_half_pt2_are_errors(tmp_path, data, fmt, half, message):
    run = make_run(tmp_path / "run", data)
    with pytest.raises(ExportError, match=message):
        export_run(run, fmt, half=half)
    assert sorted(p.name for p in run.iterdir()) == [
        "config.yaml", "metrics.jsonl", "model.pt", "model.safetensors", "results.json"]


def test_export_command(tmp_path, data, capsys):
    from progreid.cli import main

    run = make_run(tmp_path / "run", data, pca_dim=None)
    assert main(["export", str(run / "model.safetensors"), "--format", "pt2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(run / "model.pt2") and printed["pca"] is False
    assert printed["checked"] == "max_abs_diff" and printed["max_abs_diff"] <= 1e-4


def test_ten_crop_and_centre_crop_export_as_flip_averaging(tmp_path, data):
    """Their resize does not trace: the exported module and the metadata it carries embed the
    whole image with its mirror, as the export docstring says."""
    from progreid.deploy.onnx_backend import export_metadata

    bundle = load_bundle(make_run(tmp_path / "run", data))
    views = bundle.config.eval.model_copy(update={"ten_crop": True, "centre_crop": True})
    cfg = bundle.config.model_copy(update={"eval": views})
    embedder = embedding_model(dataclasses.replace(bundle, config=cfg)).embedder
    assert (embedder.ten_crop, embedder.centre_crop, embedder.flip) == (False, False, True)
    exported = metadata_config(export_metadata(cfg, 16, half=False))["eval"]
    assert (exported["ten_crop"], exported["centre_crop"], exported["flip"]) == (False, False, True)
