"""A PNG of ranked lists: one row per query, the query then its matches, each framed in its
status colour (green match, red mismatch, grey and faded junk); a match whose file has moved
since indexing keeps its caption over an empty cell."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from progreid.search.query import JUNK, STATUS_COLOURS, QueryResult
from progreid.utils.io import atomic_path

QUERY_COLOUR = "#1f77b4"
BORDER = 4
GAP = 6
CAPTION = 16


def thumbnail(path: str | Path, height: int, width: int, faded: bool = False) -> Image.Image:
    """The image resized to ``height x width`` (RGB); faded images are grey and light."""
    with Image.open(path) as image:
        thumb = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    if faded:
        thumb = ImageEnhance.Brightness(ImageOps.grayscale(thumb).convert("RGB")).enhance(1.5)
    return thumb


def framed(thumb: Image.Image, colour: str) -> Image.Image:
    return ImageOps.expand(thumb, border=BORDER, fill=colour)


def draw_ranked_lists(results: Sequence[QueryResult], out: str | Path, height: int = 128,
                      width: int = 64) -> Path:
    """Draw every query's row and write the PNG atomically; returns ``out``."""
    if not results:
        raise ValueError("draw_ranked_lists needs at least one query result")
    columns = 1 + max(len(r.matches) for r in results)
    cell_w, cell_h = width + 2 * BORDER + GAP, height + 2 * BORDER + CAPTION + GAP
    canvas = Image.new("RGB", (GAP + columns * cell_w + GAP, GAP + len(results) * cell_h),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for row, result in enumerate(results):
        y = GAP + row * cell_h
        canvas.paste(framed(thumbnail(result.query, height, width), QUERY_COLOUR), (GAP, y))
        draw.text((GAP, y + height + 2 * BORDER + 2), "query", fill="black")
        for match in result.matches:
            x = 2 * GAP + match.rank * cell_w
            caption = f"{match.rank}: {match.distance:.2f}"
            if Path(match.path).is_file():
                thumb = thumbnail(match.path, height, width, faded=match.status == JUNK)
                canvas.paste(framed(thumb, STATUS_COLOURS[match.status]), (x, y))
            else:
                caption = f"{match.rank}: moved"
            draw.text((x, y + height + 2 * BORDER + 2), caption, fill="black")
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(out)
