"""The CPU fast paths: channels_last (the default) and bf16 autocast (where the CPU has native
BF16) give the features of the plain float32 NCHW network."""

from __future__ import annotations

import pytest
import torch

from progreid.evaluation.features import Embedder
from progreid.models import build_model
from progreid.utils import device as device_module
from progreid.utils.device import use_bf16_autocast


def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(num_classes=10, backbone="mobilenetv2", width=0.5,
                       pretrained=None).eval()


def _images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (6, 3, 64, 32), dtype=torch.uint8, generator=generator)


def test_channels_last_embedding_equals_the_nchw_embedding():
    plain = Embedder(_network(), 64, 32, channels_last=False)
    fast = Embedder(_network(), 64, 32)
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in fast.model.parameters() if p.dim() == 4)
    assert all(p.is_contiguous() for p in plain.model.parameters())
    torch.testing.assert_close(fast.embed(_images()), plain.embed(_images()),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("native", "setting", "device", "expected"), [
    (True, None, "cpu", False),  # off by default on the CPU (slower at the recipes' sizes)
    (True, True, "cpu", True),
    (False, True, "cpu", False),  # emulated bf16: slower than float32, never used
    (True, False, "cpu", False),
    (False, None, "cuda", True),  # on by default on CUDA
    (False, False, "cuda", False),
])
def test_bf16_autocast_needs_native_bf16_on_the_cpu(monkeypatch, native, setting, device,
                                                    expected):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert use_bf16_autocast(setting, torch.device(device)) is expected


def test_bf16_embedding_is_float32_without_native_bf16_and_close_with_it(monkeypatch):
    reference = Embedder(_network(), 64, 32).embed(_images())
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert torch.equal(Embedder(_network(), 64, 32, amp=True).embed(_images()), reference)
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    bf16 = Embedder(_network(), 64, 32, amp=True).embed(_images())
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, reference)
    torch.testing.assert_close(bf16, reference, rtol=0.05, atol=0.05 * reference.abs().max())


def test_centre_crop_embeds_the_centre_of_the_enlarged_image_and_its_mirror():
    """eval.centre_crop: the network on 10-crop's centre view and its mirror, averaged."""
    from progreid.data.transforms import centre_crop, flip, normalize

    embedder = Embedder(_network(), 64, 32, centre_crop=True)
    images = _images()
    centre = centre_crop(images, 1.125)
    mean, std = embedder.model.normalization
    with torch.no_grad():
        expected = sum(embedder.model(normalize(view, mean, std)) for view in
                       (centre, flip(centre))) / 2
    assert torch.allclose(embedder.embed(images), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(Embedder(_network(), 64, 32).embed(images), expected, rtol=1e-2)
