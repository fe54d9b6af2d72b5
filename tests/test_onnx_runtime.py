"""``eval.cpu_runtime: onnxruntime``: evaluation's embedding pass runs the network in an
onnxruntime session (a snapshot of the weights at the pass) and gets PyTorch's features to float
rounding, through :class:`Embedder` and through ``progreid evaluate``; without the extra, one
line names it."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from deploy_helpers import make_run, synthetic_data

from progreid.cli import main
from progreid.config import load_config
from progreid.data import build_dataset
from progreid.deploy.bundle import load_bundle
from progreid.errors import ConfigError, MissingDependencyError
from progreid.evaluation.features import Embedder
from progreid.training.preflight import check_extras

pytest.importorskip("onnxscript", reason="the 'export' extra (onnxscript) is not installed")
pytest.importorskip("onnxruntime", reason="the 'export' extra (onnxruntime) is not installed")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("data"))


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_onnxruntime_pass_equals_pytorch_and_follows_the_weights(tmp_path, data):
    bundle = load_bundle(make_run(tmp_path / "run", data, pca_dim=16))
    samples = build_dataset("synthetic", data).query[:20]
    model = bundle.model.eval()
    embedders = {runtime: Embedder(model, bundle.config.data.height, bundle.config.data.width,
                                   projection=bundle.projection, cpu_runtime=runtime)
                 for runtime in ("torch", "onnxruntime")}
    torch_features = embedders["torch"].extract(samples, batch_size=8).features
    ort = embedders["onnxruntime"].extract(samples, batch_size=8)
    assert ort.features.shape == torch_features.shape == (20, 16)
    assert relative_difference(ort.features, torch_features) < 1e-4
    assert ort.pids.tolist() == [s.pid for s in samples]
    # A later pass sees the weights as they are then (training evaluates between epochs), here
    # with PLA's 10 crops: each pass exports the network anew.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.5)
    for embedder in embedders.values():
        embedder.ten_crop = True
    after = {runtime: embedder.extract(samples, batch_size=8).features
             for runtime, embedder in embedders.items()}
    assert relative_difference(after["torch"], torch_features) > 1e-2
    assert relative_difference(after["onnxruntime"], after["torch"]) < 1e-4


def test_evaluate_with_onnxruntime_prints_pytorchs_metrics(tmp_path, data, capsys):
    run = make_run(tmp_path / "run", data, pca_dim=None)
    printed = {runtime: evaluate_json(capsys, run, f"eval.cpu_runtime={runtime}")
               for runtime in ("torch", "onnxruntime")}
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert printed["onnxruntime"][key] == pytest.approx(printed["torch"][key], abs=1e-6), key


def evaluate_json(capsys, run, setting: str) -> dict:
    """``progreid evaluate RUN --json --set SETTING``'s printed record."""
    capsys.readouterr()
    assert main(["evaluate", str(run), "--device", "cpu", "--json", "--set", setting]) == 0
    return json.loads(capsys.readouterr().out)


def test_without_the_extra_one_line_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    embedder = Embedder(torch.nn.Identity(), 8, 4, cpu_runtime="onnxruntime")
    with pytest.raises(MissingDependencyError, match=r"pip install 'progreid\[export\]', or "
                                                     "set eval.cpu_runtime=torch"):
        embedder.network(torch.device("cpu"))
    assert embedder.network(torch.device("meta")) is embedder.model  # not on the CPU: PyTorch
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    cfg = load_config(None, ["eval.cpu_runtime=onnxruntime"])
    with pytest.raises(ConfigError, match=r"eval.cpu_runtime = 'onnxruntime' needs onnxruntime "
                                          r"and onnxscript: pip install 'progreid\[export\]', "
                                          "or set eval.cpu_runtime=torch"):
        check_extras(cfg)
