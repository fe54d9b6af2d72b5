"""Profiling: Mul-Adds and parameter counts against hand counts, memory and throughput sanity,
the table and the command (no timing thresholds)."""

from __future__ import annotations

import json

import pytest
import torch
from deploy_helpers import make_run, synthetic_data
from torch import nn

from progreid.cli import main
from progreid.models import build_model
from progreid.profiling.counts import count_inference, count_parameters
from progreid.profiling.memory import peak_memory_cpu
from progreid.profiling.profiler import format_table, profile_spec
from progreid.profiling.spec import COMPARISON, ModelSpec, spec_from_path
from progreid.profiling.throughput import measure_throughput

TINY = ModelSpec("tiny", {"name": "baseline", "backbone": "resnet18", "width": 0.125}, 10)


def test_resnet50_at_256x128_is_about_2_7_g_mul_adds_and_mgn_costs_most():
    baseline = COMPARISON[0]
    assert baseline.model == {"name": "baseline", "backbone": "resnet50", "last_stride": 2}
    with torch.device("meta"):  # no weights are needed to count
        models = [spec.build() for spec in COMPARISON]
    mul_adds = [count_inference(model, 256, 128).mul_adds for model in models]
    assert abs(mul_adds[0] / 2.7e9 - 1.0) < 0.02
    assert mul_adds[0] < mul_adds[1] < mul_adds[2]  # ResNet-50 < PLA (+ two heads) < MGN


def test_mul_adds_and_parameters_equal_a_hand_count():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 5)
            self.classifier = nn.Linear(5, 7)  # used only in training mode

        def forward(self, x):
            out = self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))
            return self.classifier(out) if self.training else out

    net = Net()
    counts = count_inference(net, 20, 12)
    conv = (10 * 6) * 8 * 3 * 3 * 3  # output positions x out channels x kernel volume
    assert counts.mul_adds == conv + 8 * 5
    assert counts.parameters == 8 * 27 + 2 * 8 + 8 * 5 + 5 + 5 * 7 + 7
    assert counts.inference_parameters == counts.parameters - (5 * 7 + 7)
    assert net.training and net.conv.weight.device.type == "cpu"  # the model is untouched


@pytest.mark.parametrize("name", ["baseline", "pla", "mgn"])
def test_inference_parameters_exclude_exactly_the_classifiers(name):
    model = build_model(10, name=name, backbone="resnet18", width=0.125)
    counts = count_inference(model, 64, 32)
    classifiers = sum(p.numel() for n, p in model.named_parameters() if ".classifier." in
                      f".{n}")
    assert counts.parameters == count_parameters(model) == sum(p.numel()
                                                               for p in model.parameters())
    assert counts.inference_parameters == counts.parameters - classifiers
    assert classifiers > 0


def test_cpu_peak_memory_holds_at_least_the_weights():
    spec = ModelSpec("r18", {"name": "baseline", "backbone": "resnet18", "width": 0.5}, 10)
    weights = sum(p.numel() * p.element_size() for p in spec.build().parameters())
    assert peak_memory_cpu(spec, 2, 64, 32) >= weights


def test_throughput_reports_the_timed_repeats():
    result = measure_throughput(TINY.build(), 3, 64, 32, warmup=1, repeats=2)
    assert result.batch_size == 3 and result.repeats == 2
    assert result.seconds_per_batch > 0
    assert result.images_per_second == pytest.approx(3 / result.seconds_per_batch)
    with pytest.raises(ValueError, match="repeats"):
        measure_throughput(TINY.build(), 3, 64, 32, repeats=0)


def test_profile_table_lists_every_model_and_batch():
    profiles = [profile_spec(TINY, 64, 32, [1, 2], warmup=0, repeats=1, memory=False),
                profile_spec(ModelSpec("tiny-pla", {**TINY.model, "name": "pla"}), 64, 32, [1],
                             warmup=0, repeats=1, memory=False)]
    table = format_table(profiles)
    assert "tiny " in table and "tiny-pla" in table
    assert "img/s@1" in table and "img/s@2" in table and "mem@" not in table
    assert table.splitlines()[-1].rstrip().endswith("-")  # tiny-pla was not timed at batch 2
    record = profiles[0].to_dict()
    assert record["mul_adds"] == profiles[0].counts.mul_adds and set(
        record["images_per_second"]) == {"1", "2"}


def test_spec_from_a_run_and_from_a_recipe(tmp_path):
    run = make_run(tmp_path / "run", synthetic_data(tmp_path / "data"), name="pla", pca_dim=None)
    spec, cfg = spec_from_path(run)
    assert spec.num_classes == 12 and spec.model == cfg.model.model_dump()
    spec, _ = spec_from_path(run / "config.yaml")
    assert spec.label == "config" and spec.num_classes == 751
    with pytest.raises(FileNotFoundError, match="neither"):
        spec_from_path(tmp_path / "missing")


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2", "efficientnet_lite0"])
def test_profile_command_prints_the_table_and_writes_json(tmp_path, capsys, backbone):
    run = make_run(tmp_path / "run", synthetic_data(tmp_path / "data"), pca_dim=None,
                   backbone=backbone, width=0.125 if backbone == "resnet18" else 0.25)
    out = tmp_path / "profile.json"
    assert main(["profile", str(run), "--batch-sizes", "2,3", "--warmup", "0", "--repeats", "1",
                 "--device", "cpu", "--no-memory", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "run" in text and "Mul-Add G" in text and "img/s@3" in text and "mem@" not in text
    [record] = json.loads(out.read_text())
    assert record["height"] == 64 and set(record["images_per_second"]) == {"2", "3"}


def test_profile_command_rejects_bad_arguments(capsys):
    assert main(["profile"]) == 2
    assert "--compare" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["profile", "--compare", "--batch-sizes", "1,x"])


def test_plot_draws_accuracy_against_cost(tmp_path):
    pytest.importorskip("matplotlib", reason="the 'plot' extra (matplotlib) is not installed")
    from PIL import Image

    from progreid.profiling.figures import EfficiencyPoint, efficiency_point, plot_efficiency

    run = make_run(tmp_path / "run", synthetic_data(tmp_path / "data"), pca_dim=None)
    point = efficiency_point(run)
    spec, _ = spec_from_path(run)
    assert (point.label, point.mAP, point.batch_size) == ("run", 41.0, 1)
    assert point.mul_adds == count_inference(spec.build(), 64, 32).mul_adds and point.memory > 0
    other = EfficiencyPoint("other", 60.0, 3 * point.mul_adds, 2 * point.memory, 1)
    out = plot_efficiency([point, other], tmp_path / "fig.png")
    with Image.open(out) as image:
        assert image.size[0] > image.size[1] > 100
    with pytest.raises(FileNotFoundError, match="results.json"):
        efficiency_point(tmp_path / "data")
