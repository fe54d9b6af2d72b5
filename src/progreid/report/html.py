"""`progreid report RUN_DIR`: one self-contained HTML page about a run.

The page holds the run's config, its final metrics, the CMC curve, the training curves, PLA's
Bayesian-optimisation trace or TRC's S histograms when the log has them (the figures of
:mod:`progreid.report.plots`), and ranked lists for a few sample queries: the query, then its
top 10 framed green (same identity), red (another identity) or grey and faded (junk: same
identity and camera, ignored by the Market-1501 protocol). Every image is embedded as base64;
the page loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image

from progreid.data.sample import DatasetError
from progreid.report.plots import FIGURES, MissingDependencyError, new_figure, spread
from progreid.search.query import JUNK, STATUS_COLOURS, QueryResult, ranked_results
from progreid.utils.checkpoint import CheckpointError
from progreid.utils.io import atomic_write_text, probe_writable
from progreid.utils.metrics_log import METRICS_NAME, read_records
from progreid.utils.progress import progress
from progreid.utils.run_folders import run_hint

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "num_valid")
FIGURE_TITLES = {"losses": "Training losses", "accuracy": "Accuracy during training",
                 "pla_trace": "PLA Bayesian optimisation (Algorithm 1)",
                 "trc_histograms": "TRC: distribution of S (TRC Eq. 4, Fig. 3)"}
THUMB_SIZE = (64, 128)  # width, height

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; }
.meta { color: #666; } .note { color: #8a6d3b; background: #fcf8e3; padding: 0.5em; }
table.metrics { border-collapse: collapse; } table.metrics td, table.metrics th {
  border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }
img.figure { max-width: 100%; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.ranked-list { display: flex; align-items: flex-start; gap: 6px; margin-bottom: 1em; }
.ranked-list figure { margin: 0; text-align: center; font-size: 0.75em; }
.ranked-list img { display: block; border: 4px solid #d0d0d0; }
.ranked-list figure.query img { border-color: #1f77b4; }
.ranked-list figure.query { margin-right: 12px; }
.ranked-list figure.junk img { opacity: 0.45; filter: grayscale(100%); }
.legend span { display: inline-block; padding: 0 0.5em; margin-right: 0.5em; color: white; }
"""
STATUS_CSS = "\n".join(f".ranked-list figure.{status} img {{ border-color: {colour}; }}"
                       for status, colour in STATUS_COLOURS.items() if status)


def _data_uri(save: Callable[[io.BytesIO], object], mime: str) -> str:
    """``save(buffer)`` writes an image into a buffer; return it as a base64 data URI."""
    buffer = io.BytesIO()
    save(buffer)
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_uri(path: Path) -> str:
    """A JPEG thumbnail of the image as a data URI."""
    with Image.open(path) as image:
        thumb = image.convert("RGB").resize(THUMB_SIZE, Image.Resampling.BILINEAR)
    return _data_uri(partial(thumb.save, format="JPEG", quality=85), "image/jpeg")


def cmc_figure(cmc: Sequence[float]) -> Any:
    """CMC curve: the percentage of queries with a match within the top k, k = 1..len(cmc)."""
    figure = new_figure(1, 1, 6.0, 3.6)
    ax = figure.axes[0]
    ax.plot(range(1, len(cmc) + 1), cmc, marker="." if len(cmc) <= 50 else None)
    ax.set(xlabel="rank k", ylabel="matching rate (%)", title="CMC", xlim=(1, len(cmc)),
           ylim=(max(0.0, min(cmc) - 2.0), 100.5))
    return figure


def sample_ranked_lists(run_dir: Path, queries: int = 6, top: int = 10,
                        device: torch.device | str = "cpu") -> list[QueryResult]:
    """Rank the run's test gallery for ``queries`` query images spread over the query set,
    with the run's model and evaluation settings (metric, test-time augmentation, PCA)."""
    from progreid.data import build_run_dataset
    from progreid.deploy.bundle import load_bundle, resolve_bundle_path
    from progreid.search.embed import embed_samples
    from progreid.search.ranking import exact_top_k, prepare

    bundle = load_bundle(run_dir, device)
    cfg = bundle.config
    dataset = build_run_dataset(cfg.data.dataset, cfg.data.root, cfg.data.options,
                                resolve_bundle_path(run_dir).parent)
    chosen = spread(dataset.query, queries)
    query, gallery = (prepare(embed_samples(bundle, samples, device, cfg.eval.batch_size),
                              cfg.eval.metric) for samples in (chosen, dataset.gallery))
    distances, indices = exact_top_k(query, gallery, top)
    return ranked_results(chosen, dataset.gallery, distances, indices)


# ---------------------------------------------------------------------------------------------
# Sections


def _esc(value: Any) -> str:
    return html.escape(str(value))


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_esc(title)}</h2>\n{body}\n</section>'


def metrics_section(results: dict[str, Any]) -> str:
    keys = [k for k in METRIC_KEYS if k in results]
    if not keys:
        return '<p class="note">No results.json metrics found.</p>'
    cells = "".join(f"<td>{results[k]:.2f}</td>" if isinstance(results[k], float)
                    else f"<td>{_esc(results[k])}</td>" for k in keys)
    header = "".join(f"<th>{_esc(k)}</th>" for k in keys)
    note = f'<p class="meta">after epoch {_esc(results["epoch"])}; percent</p>' \
        if "epoch" in results else ""
    return f'<table class="metrics"><tr>{header}</tr><tr>{cells}</tr></table>{note}'


def figure_html(figure: Any, alt: str) -> str:
    src = _data_uri(partial(figure.savefig, format="png", dpi=110), "image/png")
    return f'<img class="figure" alt="{_esc(alt)}" src="{src}">'


def ranked_lists_html(lists: Sequence[QueryResult]) -> str:
    legend = ('<p class="legend">' + "".join(
        f'<span style="background:{STATUS_COLOURS[s]}">{label}</span>'
        for s, label in (("match", "same identity"), ("mismatch", "other identity"),
                         (JUNK, "junk: same identity and camera (ignored)"))) + "</p>")
    rows = []
    for ranked in lists:
        query = Path(ranked.query)
        cells = [f'<figure class="query" title="{_esc(query.name)}">'
                 f'<img alt="query" src="{thumbnail_uri(query)}">'
                 f"<figcaption>query<br>id {ranked.pid} cam {ranked.camid + 1}</figcaption>"
                 "</figure>"]
        for match in ranked.matches:
            path = Path(match.path)
            cells.append(f'<figure class="{match.status or "unknown"}" '
                         f'title="{_esc(path.name)}">'
                         f'<img alt="rank {match.rank}" src="{thumbnail_uri(path)}">'
                         f"<figcaption>{match.rank}: {match.distance:.2f}<br>id {match.pid} "
                         f"cam {match.camid + 1}</figcaption></figure>")
        rows.append('<div class="ranked-list">' + "".join(cells) + "</div>")
    return legend + "\n".join(rows)


def render_report(run_dir: str | Path, queries: int = 6, top: int = 10,
                  device: torch.device | str = "cpu") -> str:
    """The report page of ``run_dir`` as an HTML string."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}/config.yaml not found: is {run_dir} a progreid run "
                                f"folder?{run_hint(run_dir / 'config.yaml').lstrip(';')}")
    config_text = (run_dir / "config.yaml").read_text()
    config = yaml.safe_load(config_text) or {}
    results = _read_json(run_dir / "results.json")
    environment = _read_json(run_dir / "environment.json")
    records = read_records(run_dir) if (run_dir / METRICS_NAME).is_file() else []

    parts = [section("metrics", "Metrics", metrics_section(results))]
    with progress(desc="writing report: figures", total=2, unit="part") as bar:
        try:
            cmc = results.get("cmc")
            parts.append(section("cmc", "CMC curve", figure_html(cmc_figure(cmc), "CMC curve")
                                 if cmc else '<p class="note">results.json has no CMC curve.</p>'))
            for name, title in FIGURE_TITLES.items():
                figure = FIGURES[name](records)
                if figure is not None:
                    parts.append(section(name.replace("_", "-"), title, figure_html(figure, title)))
        except MissingDependencyError as exc:
            parts.append(section("figures", "Figures", f'<p class="note">{_esc(exc)}</p>'))
        bar.set_description("writing report: ranked lists")
        bar.update()
        try:
            body = ranked_lists_html(sample_ranked_lists(run_dir, queries, top, device))
        except (OSError, DatasetError, CheckpointError) as exc:  # dataset or model not here
            log.warning("ranked lists skipped: %s", exc)
            body = f'<p class="note">Ranked lists unavailable: {_esc(exc)}</p>'
        bar.update()
    parts.append(section("ranked-lists", f"Ranked lists (top {top})", body))
    parts.append(section("config", "Config", f"<pre>{_esc(config_text)}</pre>"))
    if environment:
        parts.append(section("environment", "Environment",
                             f"<pre>{_esc(json.dumps(environment, indent=2))}</pre>"))

    model = config.get("model", {})
    title = f"progreid run {run_dir.resolve().name}"
    meta = (f"{_esc(config.get('train', {}).get('method', '?'))} training of "
            f"{_esc(model.get('name', '?'))} / {_esc(model.get('backbone', '?'))} on "
            f"{_esc(config.get('data', {}).get('dataset', '?'))} &middot; report written "
            f"{time.strftime('%Y-%m-%d %H:%M')}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{_esc(title)}</title>\n<style>{STYLE}{STATUS_CSS}</style>\n</head>\n<body>\n"
            f'<h1>{_esc(title)}</h1>\n<p class="meta">{meta}<br>{_esc(run_dir.resolve())}</p>\n'
            + "\n".join(parts) + "\n</body>\n</html>\n")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_report(run_dir: str | Path, out: str | Path | None = None, queries: int = 6,
                 top: int = 10, device: torch.device | str = "cpu") -> Path:
    """Write the report page (default ``RUN_DIR/report.html``) atomically; return its path."""
    out = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    probe_writable(out.parent, f"--out {out}")
    atomic_write_text(out, render_report(run_dir, queries, top, device))
    return out
