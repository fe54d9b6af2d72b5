"""Batch transforms: crop/flip/erasing augmentation, normalisation, 10-crop TTA."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from progreid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchAugment,
    centre_crop,
    flip,
    normalize,
    ten_crop,
)


def _batch(b: int = 6, h: int = 16, w: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=gen, dtype=torch.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_normalize(images: torch.Tensor) -> torch.Tensor:
    out = images.double() / 255.0
    for c in range(3):
        out[:, c] = (out[:, c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    return out


def _pixels(normalized: torch.Tensor) -> torch.Tensor:
    """Back to the 0-255 scale."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (normalized * std + mean) * 255.0


def test_normalize_and_flip():
    batch = _batch()
    out = normalize(batch)
    assert out.dtype == torch.float32 and out.shape == batch.shape
    torch.testing.assert_close(out.double(), _reference_normalize(batch), atol=1e-6, rtol=0)
    mirrored = flip(batch)
    assert all(torch.equal(mirrored[..., j], batch[..., batch.shape[-1] - 1 - j])
               for j in range(batch.shape[-1]))
    with pytest.raises(TypeError, match="expected a uint8 batch"):
        normalize(out)


def test_augment_shapes_dtype_and_determinism():
    batch = _batch(8, 32, 16)
    augment = BatchAugment()
    a = augment(batch, _gen(3))
    assert a.dtype == torch.float32 and a.shape == batch.shape
    assert torch.equal(a, augment(batch, _gen(3)))
    assert not torch.equal(a, augment(batch, _gen(4)))
    with pytest.raises(TypeError, match="expected a uint8 batch"):
        augment(batch[:, :1], _gen(0))


def test_flip_probability_one_and_zero():
    batch = _batch()
    mirrored = BatchAugment(enlarge=1.0, flip_p=1.0, erase_p=0.0)(batch, _gen(0))
    same = BatchAugment(enlarge=1.0, flip_p=0.0, erase_p=0.0)(batch, _gen(0))
    torch.testing.assert_close(mirrored.double(), _reference_normalize(batch.flip(-1)),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(same.double(), _reference_normalize(batch), atol=1e-5, rtol=0)


def test_random_flip_mirrors_about_half_the_images():
    batch = _batch(400, 2, 3, seed=1)
    out = BatchAugment(enlarge=1.0, flip_p=0.5, erase_p=0.0)(batch, _gen(5))
    flipped = torch.isclose(out, normalize(batch.flip(-1)), atol=1e-5).flatten(1).all(1)
    kept = torch.isclose(out, normalize(batch), atol=1e-5).flatten(1).all(1)
    assert (flipped ^ kept).all()
    assert abs(flipped.float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / 400)


def test_random_crop_is_a_crop_of_the_enlarged_image_at_varying_offsets():
    batch = _batch(12, 16, 8, seed=2)
    out = _pixels(BatchAugment(flip_p=0.0, erase_p=0.0)(batch, _gen(1)))
    big = F.interpolate(batch.double(), size=(18, 9), mode="bilinear", align_corners=False)
    offsets = set()
    for image, reference in zip(out.double(), big, strict=True):
        matches = [(y, x) for y in range(3) for x in range(2)
                   if torch.allclose(image, reference[:, y:y + 16, x:x + 8], atol=1e-3)]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1


def _zhong_erased_fraction(height: int, width: int, rng: random.Random) -> float:
    """Random erasing, Zhong et al. Alg. 1, for an image that is erased: erased area / area."""
    for _ in range(100):
        target = rng.uniform(0.02, 0.4) * height * width
        ratio = rng.uniform(0.3, 3.33)
        h, w = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if h < height and w < width:
            return h * w / (height * width)
    return 0.0


def test_random_erasing_statistics():
    b, height, width = 1000, 48, 24
    batch = torch.full((b, 3, height, width), 90, dtype=torch.uint8)
    out = _pixels(BatchAugment(enlarge=1.0, flip_p=0.5, erase_p=0.5)(batch, _gen(11)))
    erased = (out - 90.0).abs().amax(dim=1) > 1e-3
    assert ((out >= -1e-3) & (out <= 255 + 1e-3)).all()
    per_image = erased.flatten(1).float().mean(1)
    hit = per_image > 0
    assert abs(hit.float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / b)
    rows, cols = erased.any(2), erased.any(1)
    assert torch.equal(erased, rows[:, :, None] & cols[:, None, :]), "one rectangle per image"
    for r in rows.int():
        idx = r.nonzero()
        assert idx.numel() == 0 or idx.numel() == idx[-1] - idx[0] + 1
    rng = random.Random(0)
    expected = sum(_zhong_erased_fraction(height, width, rng) for _ in range(20000)) / 20000
    assert abs(per_image[hit].mean().item() - expected) < 0.025
    assert per_image.max().item() <= 0.45 and per_image[hit].min().item() >= 0.015


def test_ten_crop_matches_direct_slicing():
    batch = _batch(3, 32, 16, seed=3)
    views = ten_crop(batch, 1.125)
    big = F.interpolate(batch.double(), size=(36, 18), mode="bilinear", align_corners=False)
    big = big.round().clamp(0, 255).to(torch.uint8)
    corners = [big[:, :, :32, :16], big[:, :, :32, 2:], big[:, :, 4:, :16], big[:, :, 4:, 2:],
               big[:, :, 2:34, 1:17]]
    assert len(views) == 10
    for view, expected in zip(views, corners + [c.flip(-1) for c in corners], strict=True):
        assert view.dtype == torch.uint8 and view.shape == batch.shape
        assert (view.int() - expected.int()).abs().max() <= 1
    assert all(torch.equal(view, batch) for view in ten_crop(batch, 1.0)[:5])


def test_centre_crop_is_the_centre_view_of_ten_crop():
    batch = _batch(3, 32, 16, seed=4)
    assert torch.equal(centre_crop(batch, 1.125), ten_crop(batch, 1.125)[4])
    assert torch.equal(centre_crop(batch, 1.0), batch)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(enlarge=0.9), "enlarge must be >= 1"),
    (dict(flip_p=1.5), "flip_p must be in"),
    (dict(erase_p=-0.1), "erase_p must be in"),
    (dict(erase_area=(0.5, 0.2)), "erase_area must satisfy"),
    (dict(erase_aspect=(0.0, 3.0)), "erase_aspect must satisfy"),
])
def test_bad_augment_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchAugment(**kwargs)
