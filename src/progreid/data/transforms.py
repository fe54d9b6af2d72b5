"""Augmentation of whole uint8 batches (B x 3 x H x W) on the batch's device, torch only.

Training (PLA Sec. 4.2): enlarge by 1.125 and crop back at a random position, random horizontal
flip, normalisation, random erasing (Zhong et al., AAAI 2020, Alg. 1). Test time: :func:`flip`
and PLA's 10-crop augmentation :func:`ten_crop`. Randomness comes only from the
``torch.Generator`` passed in, which must live on the batch's device.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``(mean, std)`` of the torchvision ImageNet weights (ResNet, MobileNetV2).
IMAGENET_NORMALIZATION = (IMAGENET_MEAN, IMAGENET_STD)
ERASE_ATTEMPTS = 100


def _check_batch(batch: torch.Tensor) -> None:
    if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] != 3:
        raise TypeError(f"expected a uint8 batch B x 3 x H x W, got {batch.dtype} "
                        f"{tuple(batch.shape)}")


def _standardize(images: torch.Tensor, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> torch.Tensor:
    """Float images with values 0-255 -> ``(x / 255 - mean) / std`` per channel."""
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images / 255.0 - m) / s


def normalize(batch: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN,
              std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 batch -> float32 ``(x / 255 - mean) / std`` per channel."""
    _check_batch(batch)
    return _standardize(batch.float(), mean, std)


def flip(batch: torch.Tensor) -> torch.Tensor:
    """Mirror every image of the batch left-right."""
    return batch.flip(-1)


def _check_enlarge(enlarge: float) -> None:
    if enlarge < 1.0:
        raise ValueError(f"enlarge must be >= 1, got {enlarge}")


def enlarge_batch(batch: torch.Tensor, enlarge: float) -> torch.Tensor:
    """Float batch (values 0-255) resized bilinearly by ``enlarge`` (PLA Sec. 4.2: 256 x 128 ->
    288 x 144)."""
    _check_enlarge(enlarge)
    size = (round(batch.shape[2] * enlarge), round(batch.shape[3] * enlarge))
    images = batch.float()
    if size == tuple(batch.shape[2:]):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _crops(batch: torch.Tensor, enlarge: float, centre_only: bool) -> list[torch.Tensor]:
    """H x W crops of the uint8 batch enlarged by ``enlarge``: the 4 corners and the centre, or
    the centre alone."""
    _check_batch(batch)
    height, width = batch.shape[2:]
    big = enlarge_batch(batch, enlarge).round().clamp(0, 255).to(torch.uint8)
    dy, dx = big.shape[2] - height, big.shape[3] - width
    offsets = [(dy // 2, dx // 2)] if centre_only else \
        [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]
    return [big[:, :, y:y + height, x:x + width] for y, x in offsets]


def ten_crop(batch: torch.Tensor, enlarge: float = 1.125) -> list[torch.Tensor]:
    """PLA Sec. 4.2 test-time views: the 4 corners and the centre (H x W) of the batch enlarged
    by ``enlarge``, then their mirrors; uint8 batches like the input."""
    crops = _crops(batch, enlarge, centre_only=False)
    return crops + [flip(c) for c in crops]


def centre_crop(batch: torch.Tensor, enlarge: float = 1.125) -> torch.Tensor:
    """The centre (H x W) of the uint8 batch enlarged by ``enlarge``: the centre view of
    :func:`ten_crop`, the person at the scale the training crops (:func:`random_crop` of an
    enlarged image) show."""
    return _crops(batch, enlarge, centre_only=True)[0]


def random_crop(images: torch.Tensor, height: int, width: int,
                generator: torch.Generator) -> torch.Tensor:
    """An independent uniformly placed ``height x width`` crop of each image (one gather)."""
    b, _, big_h, big_w = images.shape
    device = images.device
    top = torch.randint(0, big_h - height + 1, (b,), generator=generator, device=device)
    left = torch.randint(0, big_w - width + 1, (b,), generator=generator, device=device)
    rows = top[:, None] + torch.arange(height, device=device)
    cols = left[:, None] + torch.arange(width, device=device)
    index = torch.arange(b, device=device)[:, None, None]
    crops = images.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image with probability ``p``."""
    chosen = torch.rand(images.shape[0], generator=generator, device=images.device) < p
    return torch.where(chosen[:, None, None, None], flip(images), images)


def erase_mask(shape: tuple[int, int, int], p: float, area: tuple[float, float],
               aspect: tuple[float, float], generator: torch.Generator,
               device: torch.device) -> torch.Tensor:
    """B x H x W boolean mask of one random rectangle per image (Zhong et al., Alg. 1).

    With probability ``p`` an image gets a rectangle of area ``S_e ~ U(area) * H * W`` and
    aspect ratio ``r_e ~ U(aspect)``: ``H_e = round(sqrt(S_e r_e))``,
    ``W_e = round(sqrt(S_e / r_e))``; the first of 100 attempts that fits inside the image is
    used, placed uniformly; if none fits, the image is left alone.
    """
    b, height, width = shape
    rand = partial(torch.rand, generator=generator, device=device)
    target = (rand(b, ERASE_ATTEMPTS) * (area[1] - area[0]) + area[0]) * (height * width)
    ratio = rand(b, ERASE_ATTEMPTS) * (aspect[1] - aspect[0]) + aspect[0]
    h = torch.sqrt(target * ratio).round().long()
    w = torch.sqrt(target / ratio).round().long()
    fits = (h < height) & (w < width) & (h > 0) & (w > 0)
    first = fits.int().argmax(dim=1, keepdim=True)
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    apply = fits.any(dim=1) & (rand(b) < p)
    top = (rand(b) * (height - h + 1)).long()
    left = (rand(b) * (width - w + 1)).long()
    rows = torch.arange(height, device=device)[None, :]
    cols = torch.arange(width, device=device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    return in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]


class BatchAugment:
    """Training augmentation of a uint8 batch into a normalised float batch (PLA Sec. 4.2).

    Random erasing fills the rectangle with random values, uniform over the pixel range [0, 255]
    per pixel and channel and then normalised like the image, as in Zhong et al.'s main setting
    (RE-R), so the network cannot learn a constant "erased" colour.
    """

    def __init__(self, enlarge: float = 1.125, flip_p: float = 0.5, erase_p: float = 0.5,
                 erase_area: tuple[float, float] = (0.02, 0.4),
                 erase_aspect: tuple[float, float] = (0.3, 3.33),
                 mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD) -> None:
        _check_enlarge(enlarge)
        for name, value in (("flip_p", flip_p), ("erase_p", erase_p)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 < erase_area[0] <= erase_area[1] <= 1.0:
            raise ValueError(f"erase_area must satisfy 0 < low <= high <= 1, got {erase_area}")
        if not 0.0 < erase_aspect[0] <= erase_aspect[1]:
            raise ValueError(f"erase_aspect must satisfy 0 < low <= high, got {erase_aspect}")
        self.enlarge, self.flip_p, self.erase_p = enlarge, flip_p, erase_p
        self.erase_area, self.erase_aspect = erase_area, erase_aspect
        self.mean, self.std = mean, std

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(batch)
        b, _, height, width = batch.shape
        images = random_crop(enlarge_batch(batch, self.enlarge), height, width, generator)
        images = random_flip(images, self.flip_p, generator)
        if self.erase_p > 0:
            mask = erase_mask((b, height, width), self.erase_p, self.erase_area,
                              self.erase_aspect, generator, batch.device)
            noise = torch.rand(images.shape, generator=generator, device=batch.device) * 255.0
            images = torch.where(mask[:, None], noise, images)
        return _standardize(images, self.mean, self.std)
