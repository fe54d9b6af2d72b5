"""The Python API: ``progreid.load(...).embed`` of every input kind equals the features
evaluation computes, person crops of a frame, and ``progreid.Gallery`` (tracklet search,
save / load) on the index code."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from deploy_helpers import make_run
from PIL import Image

import progreid
from progreid import errors as progreid_errors
from progreid.cli import main
from progreid.data.sample import Sample
from progreid.deploy.bundle import load_bundle
from progreid.search.index import open_index

#: The run decodes at 80 x 32 while the synthetic images are 64 x 32: every input is resized.
RUN_HEIGHT = 80
BOXES = [[3.4, 5.0, 30.2, 70.8], [40, 10, 72, 90], [-12, -8, 20, 50], [60, 70, 200, 300]]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from progreid.data.synthetic import generate_pedestrians

    return generate_pedestrians(tmp_path_factory.mktemp("data") / "data", identities=24,
                                train_identities=12, cameras=2, images_per_camera=2,
                                query_cameras=1, multi_query_images=1, distractors=0,
                                height=64, width=32, seed=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    return make_run(tmp_path_factory.mktemp("run") / "run", data, height=RUN_HEIGHT,
                    metric="cosine")


@pytest.fixture(scope="module")
def model(run):
    return progreid.load(run, device="cpu")


@pytest.fixture(scope="module")
def paths(data):
    return sorted((data / "query").iterdir())[:5]


@pytest.fixture(scope="module")
def evaluated(run, paths):
    """The features of evaluation: the run's Embedder extracting the samples from their files."""
    samples = [Sample(path, -1, -1) for path in paths]
    return load_bundle(run).embedder().extract(samples, batch_size=4).features.numpy()


def rgb_arrays(paths):
    return [np.array(Image.open(path).convert("RGB")) for path in paths]


INPUTS = {
    "paths": lambda paths: (paths, False),
    "str paths": lambda paths: ([str(p) for p in paths], False),
    "pil": lambda paths: ([Image.open(p) for p in paths], False),
    "rgb numpy": lambda paths: (rgb_arrays(paths), False),
    "bgr numpy": lambda paths: ([a[..., ::-1] for a in rgb_arrays(paths)], True),
    "uint8 tensor": lambda paths: (torch.from_numpy(np.stack(rgb_arrays(paths))
                                                    ).permute(0, 3, 1, 2), False),
}


@pytest.mark.parametrize("backend", ["model", "onnx_model"])
@pytest.mark.parametrize("kind", INPUTS)
def test_embed_equals_the_evaluation_features(request, paths, evaluated, kind, backend):
    """PyTorch, and its ONNX export (onnxruntime's float32 arithmetic differs from PyTorch's by
    about 1e-6 here)."""
    model = request.getfixturevalue(backend)
    images, bgr = INPUTS[kind](paths)
    features = model.embed(images, batch_size=2, bgr=bgr)
    assert features.dtype == np.float32 and features.shape == (len(paths), model.dim)
    np.testing.assert_allclose(features, evaluated, atol=1e-5)


def test_embed_as_tensor_and_of_nothing(model, paths, evaluated):
    features = model.embed(paths, as_tensor=True)
    assert isinstance(features, torch.Tensor) and features.dtype == torch.float32
    np.testing.assert_allclose(features.numpy(), evaluated, atol=1e-5)
    assert model.embed([]).shape == (0, model.dim)
    with pytest.raises(TypeError, match="wrap a single image in a list"):
        model.embed(paths[0])
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        model.embed([np.zeros((8, 8, 3), np.float32)])


def test_lower_precision_runs_under_autocast(run, paths, evaluated):
    features = progreid.load(run, device="cpu", dtype=torch.bfloat16).embed(paths)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, evaluated, atol=0.05 * np.abs(evaluated).max())
    with pytest.raises(ValueError, match="dtype must be one of"):
        progreid.load(run, dtype=torch.int8)


def frame_of(paths) -> np.ndarray:
    """A 100 x 90 RGB frame with people pasted in (and a noisy background)."""
    frame = np.random.default_rng(0).integers(0, 256, (100, 90, 3), dtype=np.uint8)
    for (x, y), array in zip([(2, 4), (45, 20)], rgb_arrays(paths), strict=False):
        frame[y:y + 64, x:x + 32] = array
    return frame


def test_embed_crops_equals_cropping_by_hand(model, paths):
    frame = frame_of(paths)
    by_hand = [frame[5:71, 3:31], frame[10:90, 40:72], frame[0:50, 0:20], frame[70:100, 60:90]]
    expected = model.embed(by_hand)
    np.testing.assert_allclose(model.embed_crops(frame, BOXES), expected, atol=1e-5)
    bgr = np.ascontiguousarray(frame[..., ::-1])
    np.testing.assert_allclose(model.embed_crops(bgr, np.array(BOXES), bgr=True), expected,
                               atol=1e-5)
    assert model.embed_crops(frame, np.zeros((0, 4))).shape == (0, model.dim)


def test_empty_boxes_are_refused_by_index(model, paths):
    frame = frame_of(paths)
    with pytest.raises(ValueError, match=r"box 1 \[10.0, 10.0, 10.0, 40.0\] is empty"):
        model.embed_crops(frame, [[0, 0, 10, 10], [10, 10, 10, 40]])
    with pytest.raises(ValueError, match="box 0 .* is empty inside the 90 x 100 frame"):
        model.embed_crops(frame, [[95, 0, 120, 50]])  # wholly right of the frame
    with pytest.raises(ValueError, match="N x 4"):
        model.embed_crops(frame, [[0, 0, 10]])


@pytest.fixture(scope="module")
def gallery(model, data):
    gallery = progreid.Gallery.create(model)
    gallery.add(sorted((data / "bounding_box_test").iterdir()))
    return gallery


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_tracklet_search_equals_pooling_by_hand(gallery, model, paths, pool):
    tracklet = paths[:3]
    features = model.embed(tracklet)
    pooled = features.mean(0) if pool == "avg" else features.max(0)
    by_hand = gallery.search(pooled[None], top_k=6)[0]
    result = gallery.search(tracklet, top_k=6, pool=pool)
    assert len(result) == 1 and result[0].query == "tracklet of 3"
    assert [m.index for m in result[0].matches] == [m.index for m in by_hand.matches]
    np.testing.assert_allclose([m.distance for m in result[0].matches],
                               [m.distance for m in by_hand.matches], atol=1e-5)
    # Cosine run: distances are Euclidean between L2-normalised features, as the index does.
    unit = gallery.index.features / np.linalg.norm(gallery.index.features, axis=1,
                                                   keepdims=True)
    query = pooled / np.linalg.norm(pooled)
    distances = np.linalg.norm(unit - query, axis=1)
    assert [m.index for m in by_hand.matches] == np.argsort(distances, kind="stable")[:6].tolist()


def test_gallery_items_carry_paths_and_identities(gallery, data):
    first = gallery.index.items[0]
    assert first.path == str(sorted((data / "bounding_box_test").iterdir())[0].resolve())
    assert (first.pid, first.camid) == (4, 0)
    result = gallery.search(np.asarray(gallery.index.features[:1]), top_k=3)[0]
    assert result.matches[0].index == 0 and result.matches[0].distance < 1e-3
    assert result.matches[0].path == first.path and result.matches[0].pid == 4


def test_gallery_round_trip(tmp_path, model, data, paths):
    images = sorted((data / "bounding_box_test").iterdir())
    gallery = progreid.Gallery.create(model)
    with pytest.raises(ValueError, match="gallery is empty"):
        gallery.search(paths)
    gallery.add(images[:20])
    with pytest.raises(ValueError, match="never saved"):
        gallery.save()
    gallery.save(tmp_path / "g")
    gallery.add(model.embed(images[20:]), paths=[f"cam_{i}" for i in range(16)],
                pids=range(16), camids=[0] * 16)
    gallery.save()
    loaded = progreid.Gallery.load(tmp_path / "g", model)
    assert loaded.index.shards == ["00000.npy", "00001.npy"] and len(loaded) == 36
    assert loaded.index.items == gallery.index.items
    assert loaded.index.items[20].path == "cam_0" and loaded.index.items[35].pid == 15
    np.testing.assert_array_equal(loaded.index.features, gallery.index.features)
    before, after = gallery.search(paths, top_k=5), loaded.search(paths, top_k=5)
    assert [r.to_dict() for r in before] == [r.to_dict() for r in after]
    copy = loaded.save(tmp_path / "copy")
    assert open_index(copy).shards == ["00000.npy"] and len(open_index(copy)) == 36


def test_gallery_opens_a_cli_index_and_searches_as_the_cli(tmp_path, run, data, paths,
                                                           capsys):
    assert main(["index", str(run), str(data / "bounding_box_test"), "--out",
                 str(tmp_path / "index"), "--ann", "none", "--device", "cpu"]) == 0
    gallery = progreid.Gallery.load(tmp_path / "index", device="cpu")
    assert len(gallery) == len(list((data / "bounding_box_test").iterdir()))
    capsys.readouterr()
    assert main(["search", str(tmp_path / "index"), *map(str, paths), "--top", "4", "--json",
                 "--picture", str(tmp_path / "p.png"), "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)["results"]
    results = gallery.search(paths, top_k=4)
    assert [r.query for r in results] == [str(p.resolve()) for p in paths]
    assert printed == [r.to_dict() for r in results]


def test_import_progreid_is_light_and_lists_its_api():
    probe = ("import sys, progreid; assert 'torch' not in sys.modules, 'torch imported'; "
             "assert progreid.load.__module__ == 'progreid.deploy.api'; "
             "print(sorted(progreid.__all__))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": progreid.__path__[0] + "/.."})
    assert out.stdout.split() == ["['Gallery',", "'ReIDModel',", "'__version__',", "'load']"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data):
    """A tiny network trained briefly on ``data`` (a few seconds): its bundle records the match
    threshold its final evaluation calibrated."""
    from progreid.config import load_config
    from progreid.training.run import train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(load_config(None, [
        "data.dataset=synthetic", f"data.root={data}", "data.height=64", "data.width=32",
        "data.p=4", "data.k=4", "data.workers=0", "data.cache=false", "model.width=0.125",
        "train.device=cpu", "train.epochs=20", "train.progress=false",
        f"train.output_dir={out}"]))
    return out


def test_the_threshold_travels_with_the_bundle(trained_run, model):
    """model.pt and model.safetensors carry it; a bundle saved without one loads with None."""
    pt = progreid.load(trained_run / "model.pt", device="cpu")
    twin = progreid.load(trained_run / "model.safetensors", device="cpu")
    assert pt.calibration is not None and twin.calibration == pt.calibration
    assert (model.calibration, model.match_threshold) == (None, None)


def test_the_model_exposes_the_threshold_its_run_recorded(trained_run):
    """results.json's calibration is the loaded model's (tests/test_tracker.py runs the tracker
    example that uses it)."""
    results = json.loads((trained_run / "results.json").read_text())
    model = progreid.load(trained_run, device="cpu")
    assert model.calibration.to_dict() == results["match_threshold"]
    assert model.match_threshold == results["match_threshold"]["threshold"]  # euclidean run


# ------------------------------------------------------------------ the ONNX backend
@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, run):
    """The run exported to ONNX (flip averaging and PCA in the graph) and loaded back."""
    pytest.importorskip("onnxscript", reason="the 'export' extra (onnxscript) is not installed")
    pytest.importorskip("onnxruntime", reason="the 'export' extra (onnxruntime) is not installed")
    from progreid.deploy.export import export_run

    out = tmp_path_factory.mktemp("onnx") / "reid.onnx"
    export_run(run, "onnx", out)
    return progreid.load(out, device="cpu")


def test_onnx_model_has_the_interface_of_the_pytorch_model(onnx_model, model, paths):
    assert isinstance(onnx_model, progreid.ReIDModel) and onnx_model.path.suffix == ".onnx"
    assert (onnx_model.dim, onnx_model.metric, onnx_model.height, onnx_model.width) == (
        model.dim, "cosine", RUN_HEIGHT, 32)
    assert onnx_model.config == model.config and onnx_model.dtype == torch.float32
    features = onnx_model.embed(paths, as_tensor=True)
    assert isinstance(features, torch.Tensor) and features.device == torch.device("cpu")
    assert onnx_model.embed([]).shape == (0, model.dim)
    frame = frame_of(paths)
    np.testing.assert_allclose(onnx_model.embed_crops(frame, BOXES), model.embed_crops(
        frame, BOXES), atol=1e-5)


def test_a_gallery_of_the_onnx_model_searches_as_the_pytorch_one(tmp_path, onnx_model, gallery,
                                                                  data, paths):
    images = sorted((data / "bounding_box_test").iterdir())
    served = progreid.Gallery.create(onnx_model)
    served.add(images)
    served.save(tmp_path / "g")
    reopened = progreid.Gallery.load(tmp_path / "g", device="cpu")  # loads the .onnx again
    for results in (served.search(paths, top_k=5), reopened.search(paths, top_k=5)):
        for got, want in zip(results, gallery.search(paths, top_k=5), strict=True):
            assert [m.index for m in got.matches] == [m.index for m in want.matches]


def test_onnx_files_progreid_cannot_serve_are_refused(tmp_path, onnx_model):
    onnx = pytest.importorskip("onnx", reason="the 'export' extra (onnx) is not installed")
    from onnx import TensorProto, helper

    bare = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["images"], ["embedding"])], "bare",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 4])]))
    onnx.save(bare, tmp_path / "bare.onnx")
    with pytest.raises(progreid_errors.CheckpointError, match="bare.onnx has no progreid "
                                                             "metadata.*progreid export"):
        progreid.load(tmp_path / "bare.onnx", device="cpu")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(progreid_errors.CheckpointError, match="junk.onnx is not a readable ONNX"):
        progreid.load(tmp_path / "junk.onnx", device="cpu")
    with pytest.raises(progreid_errors.CheckpointError, match="model file not found"):
        progreid.load(tmp_path / "missing.onnx", device="cpu")
    with pytest.raises(ValueError, match="precision it was exported in"):
        progreid.load(onnx_model.path, device="cpu", dtype=torch.float16)
    with pytest.raises(ValueError, match="ONNX models run on 'cpu' or 'cuda'"):
        progreid.load(onnx_model.path, device="meta")
