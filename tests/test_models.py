"""progreid.models: torchvision-compatible ResNets, the baseline, PLA and MGN networks, weights."""

from __future__ import annotations

import logging
import math
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from progreid.models import (
    IMAGENET_URLS,
    ModelOutput,
    PretrainedWeightsError,
    build_backbone,
    build_model,
    load_pretrained,
    pool_stripes,
)
from progreid.models.baseline import POOLINGS

NAMES = ["baseline", "pla", "pla_ce", "pla_triplet", "mgn"]
TINY = 0.125  # width multiplier: ResNet-50 stages 8/16/32/64 planes, 256 output channels
BATCH, CLASSES = 4, 7


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def images(height: int = 64, width: int = 32) -> torch.Tensor:
    return torch.randn(BATCH, 3, height, width)


def warm_up(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """One training forward so BN running statistics are not the trivial 0/1, then eval mode."""
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def torchvision_keys(blocks: tuple[int, ...], bottleneck: bool) -> list[str]:
    """torchvision's ResNet state-dict keys, in order, written out from its layout."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{s}" for s in bn]
    for stage, count in enumerate(blocks, start=1):
        for index in range(count):
            prefix = f"layer{stage}.{index}"
            for conv in range(1, (3 if bottleneck else 2) + 1):
                keys += [f"{prefix}.conv{conv}.weight"] + [f"{prefix}.bn{conv}.{s}" for s in bn]
            if index == 0 and (bottleneck or stage > 1):
                keys += [f"{prefix}.downsample.0.weight"]
                keys += [f"{prefix}.downsample.1.{s}" for s in bn]
    return keys + ["fc.weight", "fc.bias"]


def bn_eval(x: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """Inference batch norm over dim 1 of a B x C tensor."""
    return (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias


# ----------------------------------------------------------------------------- ResNet

@pytest.mark.parametrize(("arch", "count"), [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)])
def test_resnet_parameter_count_equals_torchvision(arch: str, count: int) -> None:
    net = build_backbone(arch, num_classes=1000)
    assert sum(p.numel() for p in net.parameters()) == count


@pytest.mark.parametrize(("arch", "blocks", "bottleneck"), [
    ("resnet18", (2, 2, 2, 2), False), ("resnet34", (3, 4, 6, 3), False),
    ("resnet50", (3, 4, 6, 3), True)])
def test_resnet_state_dict_keys_equal_torchvision(arch, blocks, bottleneck) -> None:
    state = build_backbone(arch, num_classes=1000).state_dict()
    assert list(state) == torchvision_keys(blocks, bottleneck)


def test_resnet50_known_shapes() -> None:
    state = build_backbone("resnet50", num_classes=1000).state_dict()
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer1.0.conv1.weight"].shape == (64, 64, 1, 1)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer3.0.conv2.weight"].shape == (256, 256, 3, 3)
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert state["layer4.2.bn3.running_var"].shape == (2048,)
    assert state["fc.weight"].shape == (1000, 2048)


def test_resnet_kaiming_init_like_torchvision() -> None:
    net = build_backbone("resnet50")
    weight = net.layer4[0].conv2.weight  # 512 x 512 x 3 x 3, fan_out = 512 * 9
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert weight.mean().abs().item() < 1e-3
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_width_scales_channels(arch: str) -> None:
    net = build_backbone(arch, width=TINY)
    expansion = 4 if arch == "resnet50" else 1
    assert net.conv1.out_channels == 8
    assert net.out_channels == 64 * expansion
    assert net(images()).shape[1] == net.out_channels


def test_last_stride_changes_feature_map_size() -> None:
    x = images(64, 32)
    assert build_backbone("resnet50", width=TINY, last_stride=2)(x).shape[2:] == (2, 1)
    assert build_backbone("resnet50", width=TINY, last_stride=1)(x).shape[2:] == (4, 2)
    baseline = build_model(CLASSES, "baseline", width=TINY, last_stride=1)
    assert baseline.backbone(x).shape[2:] == (4, 2)


def test_classify_needs_fc() -> None:
    x = images()
    assert build_backbone("resnet18", width=TINY, num_classes=10).classify(x).shape == (BATCH, 10)
    with pytest.raises(RuntimeError, match="without an fc"):
        build_backbone("resnet18", width=TINY).classify(x)


def test_set_stride_needs_downsample() -> None:
    with pytest.raises(ValueError, match="downsample"):
        build_backbone("resnet50", width=TINY).layer4[1].set_stride(1)


# ----------------------------------------------------------------------------- pooling

@settings(max_examples=30, deadline=None)
@given(stripes=st.integers(1, 4), rows=st.integers(1, 3), cols=st.integers(1, 4),
       pooling=st.sampled_from(["avg", "max"]))
def test_pool_stripes_equals_band_reduction(stripes, rows, cols, pooling) -> None:
    x = torch.randn(2, 5, stripes * rows, cols)
    bands = x.reshape(2, 5, stripes, rows * cols)
    expected = bands.amax(-1) if pooling == "max" else bands.mean(-1)
    torch.testing.assert_close(pool_stripes(x, pooling, stripes)[..., 0], expected)


# ----------------------------------------------------------------------------- networks

EXPECTED = {  # name: (number of logits, metric feature dims, embedding dim) at default dims
    "baseline": (1, [256], 256),  # no reduction: the tiny ResNet-50's 256 channels
    "pla": (1, [128], 256),  # two heads, each half the backbone's 256 channels
    "pla_ce": (1, [], 256),
    "pla_triplet": (0, [256], 256),
    "mgn": (8, [256, 256, 256], 2048),
}


@pytest.mark.parametrize("name", NAMES)
def test_train_output_structure(name: str) -> None:
    model = build_model(CLASSES, name, width=TINY)
    num_logits, metric_dims, embedding_dim = EXPECTED[name]
    out = model.train()(images())
    assert isinstance(out, ModelOutput)
    assert model.embedding_dim == embedding_dim
    assert [tuple(t.shape) for t in out.logits] == [(BATCH, CLASSES)] * num_logits
    assert [tuple(t.shape) for t in out.metric_features] == [(BATCH, d) for d in metric_dims]
    assert out.embedding.shape == (BATCH, embedding_dim)


@pytest.mark.parametrize("name", NAMES)
def test_eval_returns_embedding_tensor(name: str) -> None:
    model = build_model(CLASSES, name, width=TINY).eval()
    with torch.no_grad():
        out = model(images())
    assert isinstance(out, torch.Tensor)
    assert out.shape == (BATCH, model.embedding_dim)


@pytest.mark.parametrize(("name", "dim", "embedding_dim"), [
    ("baseline", 32, 32), ("pla", 16, 32), ("pla_ce", 16, 32), ("pla_triplet", 16, 32),
    ("mgn", 8, 64)])
def test_embedding_dim_override(name: str, dim: int, embedding_dim: int) -> None:
    model = build_model(CLASSES, name, width=TINY, embedding_dim=dim)
    out = model.train()(images())
    assert model.embedding_dim == embedding_dim == out.embedding.shape[1]


@pytest.mark.parametrize("name", NAMES)
def test_every_trainable_parameter_gets_a_gradient(name: str) -> None:
    model = build_model(CLASSES, name, width=TINY).train()
    out = model(images())
    loss = sum(t.sum() for t in out.logits) + sum(t.pow(2).sum() for t in out.metric_features)
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_matches_contiguous(name: str) -> None:
    model = warm_up(build_model(CLASSES, name, width=TINY), images(96, 32))
    x = images(96, 32)
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_baseline_bnneck_semantics() -> None:
    """Metric loss on the pooled feature, CE on the BN-normalised one, which is the embedding."""
    model = build_model(CLASSES, "baseline", width=TINY).train()
    x = images()
    out = model(x)
    feature = model.backbone(x).mean(dim=(2, 3))
    torch.testing.assert_close(out.metric_features[0], feature)
    normed = (feature - feature.mean(0)) / torch.sqrt(feature.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(out.embedding, normed, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.logits[0], normed @ model.head.classifier.weight.T,
                               rtol=1e-4, atol=1e-5)


def test_baseline_eval_embedding_reference() -> None:
    model = warm_up(build_model(CLASSES, "baseline", width=TINY, embedding_dim=24,
                                pooling="max"), images())
    x = images()
    with torch.no_grad():
        pooled = model.backbone(x).amax(dim=(2, 3))
        reduced = pooled @ model.reduction.weight.T + model.reduction.bias
        torch.testing.assert_close(model(x), bn_eval(reduced, model.head.neck))


def test_pla_eval_embedding_reference() -> None:
    """PLA Sec. 3.1: global max pooling, two 1x1 convs, embedding = [ce head, triplet head],
    each head L2-normalised (progreid.models.pla.join_heads)."""
    model = warm_up(build_model(CLASSES, "pla", width=TINY, embedding_dim=12), images())
    x = images()
    with torch.no_grad():
        pooled = model.backbone(x).amax(dim=(2, 3))
        heads = [pooled @ conv.weight[:, :, 0, 0].T + conv.bias
                 for conv in (model.ce_head, model.triplet_head)]
        torch.testing.assert_close(model(x), torch.cat([h / h.norm(dim=1, keepdim=True)
                                                        for h in heads], dim=1))


def test_paper_defaults_and_explicit_choices() -> None:
    pla = build_model(CLASSES, "pla", width=TINY)
    assert pla.pooling == "max" and isinstance(pla.ce_classifier.neck, nn.Identity)
    pla = build_model(CLASSES, "pla", width=TINY, pooling="avg", bnneck=True)
    assert pla.pooling == "avg" and isinstance(pla.ce_classifier.neck, nn.BatchNorm1d)
    baseline = build_model(CLASSES, "baseline", width=TINY)
    assert baseline.pooling == "avg" and isinstance(baseline.head.neck, nn.BatchNorm1d)
    assert not baseline.head.neck.bias.requires_grad
    assert isinstance(build_model(CLASSES, "baseline", width=TINY, bnneck=False).head.neck,
                      nn.Identity)
    mgn = build_model(CLASSES, "mgn", width=TINY)
    assert mgn.pooling == "max" and all(isinstance(h.neck, nn.Identity) for h in mgn.heads)


# ----------------------------------------------------------------------------- MGN

def test_mgn_layout() -> None:
    model = build_model(CLASSES, "mgn", width=TINY)
    assert [name for name, _ in model.trunk.named_children()] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"]
    assert list(model.trunk.layer3._modules) == ["0"]
    for branch in model.branches:
        assert list(branch.layer3._modules) == ["1", "2", "3", "4", "5"]
        assert len(branch.layer4) == 3
    pointers = {p.data_ptr() for branch in model.branches for p in branch.parameters()}
    assert len(pointers) == sum(1 for branch in model.branches for _ in branch.parameters())


def test_mgn_branch_strides() -> None:
    shared = torch.randn(BATCH, 128, 12, 4)  # tiny trunk output (layer3[0]) for a 192x64 input
    for part_stride, part_size in [(1, (12, 4)), (2, (6, 2))]:
        model = build_model(CLASSES, "mgn", width=TINY, last_stride=part_stride)
        sizes = [tuple(branch(shared).shape[2:]) for branch in model.branches]
        assert sizes == [(6, 2), part_size, part_size]


def test_mgn_eval_embedding_reference() -> None:
    """Wang et al.: per branch global max + 2 / 3 stripes, 8 x (1x1 conv, BN, ReLU), concat."""
    x = images(96, 32)  # part branches end at 6 x 2: both stripe counts divide the height
    model = warm_up(build_model(CLASSES, "mgn", width=TINY, embedding_dim=16), x)
    with torch.no_grad():
        shared = model.trunk(x)
        maps = [branch(shared) for branch in model.branches]
        pooled = [m.amax(dim=(2, 3)) for m in maps]
        for fmap, stripes in zip(maps[1:], (2, 3), strict=True):
            b, c, h, w = fmap.shape
            bands = fmap.reshape(b, c, stripes, h // stripes, w).amax(dim=(3, 4))
            pooled += list(bands.unbind(dim=2))
        reduced = [F.relu(bn_eval(p @ red[0].weight[:, :, 0, 0].T, red[1]))
                   for p, red in zip(pooled, model.reductions, strict=True)]
        torch.testing.assert_close(model(x), torch.cat(reduced, dim=1))


def test_mgn_train_metric_features_are_reduced_globals() -> None:
    x = images(96, 32)
    model = build_model(CLASSES, "mgn", width=TINY, embedding_dim=16).train()
    out = model(x)
    torch.testing.assert_close(torch.cat(out.metric_features, dim=1), out.embedding[:, :48])


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize(("kwargs", "match"), [
    ({"name": "pcb"}, "model name 'pcb'"),
    ({"backbone": "resnet101"}, "backbone 'resnet101'"),
    ({"width": 0}, "width"),
    ({"width": -0.5}, "width"),
    ({"last_stride": 3}, "last_stride"),
    ({"pooling": "sum"}, "pooling 'sum'"),
    ({"embedding_dim": 0}, "embedding_dim"),
    ({"num_classes": 0}, "num_classes"),
])
def test_build_model_rejects_bad_values(kwargs: dict, match: str) -> None:
    args = {"num_classes": CLASSES, "width": TINY, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model(**args)


# ----------------------------------------------------------------------------- pretrained

@pytest.fixture
def weights_file(tmp_path):
    """A torchvision-format state dict (fc included) of a tiny ResNet-50, and its path."""
    state = build_backbone("resnet50", width=TINY, num_classes=1000).state_dict()
    path = tmp_path / "resnet50_tiny.pth"
    torch.save(state, path)
    return state, path


def assert_matches(module_state: dict, reference: dict) -> None:
    assert set(module_state) <= set(reference)
    for key, value in module_state.items():
        assert torch.equal(value, reference[key]), key


def test_load_pretrained_roundtrip(weights_file) -> None:
    state, path = weights_file
    net = build_backbone("resnet50", width=TINY)
    keys = load_pretrained(net, str(path))
    assert keys.missing == [] and keys.unexpected == []  # fc.* ignored
    assert_matches(net.state_dict(), state)


def test_load_pretrained_reports_missing_and_unexpected(tmp_path, weights_file, caplog) -> None:
    state, _ = weights_file
    state = dict(state)
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    net = build_backbone("resnet50", width=TINY)
    before = net.layer1[0].conv1.weight.clone()
    with caplog.at_level(logging.WARNING, logger="progreid.models.pretrained"):
        missing, unexpected = load_pretrained(net, str(path))
    assert missing == ["layer1.0.conv1.weight"]
    assert unexpected == ["extra.weight"]
    assert "layer1.0.conv1.weight" in caplog.text and "extra.weight" in caplog.text
    assert torch.equal(net.layer1[0].conv1.weight, before)
    assert torch.equal(net.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])


def test_load_pretrained_shape_mismatch_names_key(weights_file) -> None:
    _, path = weights_file
    with pytest.raises(ValueError, match=r"conv1\.weight.*\(8, 3, 7, 7\).*\(16, 3, 7, 7\)"):
        load_pretrained(build_backbone("resnet50", width=0.25), str(path))


def test_load_pretrained_bad_files(tmp_path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(PretrainedWeightsError, match="nope.pth"):
        load_pretrained(build_backbone("resnet18", width=TINY), str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_pretrained(build_backbone("resnet18", width=TINY), str(garbage))
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(ValueError, match="expected a state dict"):
        load_pretrained(build_backbone("resnet18", width=TINY), str(listing))


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """A torch hub folder without any cached weights."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_imagenet_without_network_is_a_clear_error(monkeypatch, empty_hub) -> None:
    def offline(url, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    expected = str(empty_hub / "checkpoints" / "resnet18-f37072fd.pth")
    with pytest.raises(PretrainedWeightsError, match=f"no network.*{expected}.*local path"):
        load_pretrained(build_backbone("resnet18"), "imagenet")


def test_imagenet_resnet_reads_the_hub_cache(monkeypatch, empty_hub) -> None:
    source = build_backbone("resnet18", num_classes=1000).state_dict()
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(source, empty_hub / "checkpoints" / "resnet18-f37072fd.pth")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", pytest.fail)
    net = build_backbone("resnet18")
    assert load_pretrained(net, "imagenet") == ([], [])
    assert_matches(net.state_dict(), source)


def test_imagenet_downloads_official_url(monkeypatch, empty_hub) -> None:
    source = build_backbone("resnet18", num_classes=1000).state_dict()
    urls = []

    def fake_hub(url, **kwargs):
        urls.append(url)
        return source

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_hub)
    net = build_backbone("resnet18")
    assert load_pretrained(net, "imagenet") == ([], [])
    assert urls == [IMAGENET_URLS["resnet18"]]
    assert_matches(net.state_dict(), source)


def test_imagenet_needs_full_width(monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", pytest.fail)
    with pytest.raises(ValueError, match="width"):
        load_pretrained(build_backbone("resnet18", width=TINY), "imagenet")


@pytest.mark.parametrize("name", ["baseline", "pla", "pla_triplet"])
def test_single_backbone_models_get_pretrained_weights(name: str, weights_file) -> None:
    state, path = weights_file
    model = build_model(CLASSES, name, width=TINY, pretrained=str(path))
    assert_matches(model.backbone.state_dict(), state)


def test_mgn_gets_pretrained_weights_in_every_branch(weights_file) -> None:
    state, path = weights_file
    model = build_model(CLASSES, "mgn", width=TINY, pretrained=str(path))
    assert_matches(model.trunk.state_dict(), state)
    for branch in model.branches:
        branch_state = branch.state_dict()
        assert len(branch_state) == sum(k.startswith(("layer3.", "layer4.")) for k in state) - sum(
            k.startswith("layer3.0.") for k in state)
        assert_matches(branch_state, state)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_stripe_pooling_equals_adaptive_pooling_for_every_height(pooling):
    for height in range(1, 20):
        for stripes in (1, 2, 3, 4):
            x = torch.randn(2, 3, height, 5)
            expected = POOLINGS[pooling](x, (stripes, 1))
            torch.testing.assert_close(pool_stripes(x, pooling, stripes), expected,
                                       rtol=0, atol=1e-6)
