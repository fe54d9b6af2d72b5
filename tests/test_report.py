"""The HTML report: self-contained, every section present, ranked lists equal to an independent
ranking, and rendered by headless Chromium (skipped when it is not installed)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from deploy_helpers import make_run, synthetic_data
from PIL import Image

from progreid.cli import main
from progreid.data import build_dataset
from progreid.deploy.bundle import load_bundle
from progreid.report import html as report_html
from progreid.report.plots import MissingDependencyError
from progreid.search.embed import embed_samples
from progreid.search.query import match_status

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


class Page(HTMLParser):
    """Sections by id, every src/href, and the ranked lists as (class, title) per figure."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.links: list[str] = []
        self.lists: list[list[tuple[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        self.links += [attrs[key] for key in ("src", "href") if key in attrs]
        if tag == "div" and attrs.get("class") == "ranked-list":
            self.lists.append([])
        if tag == "figure" and self.lists:
            self.lists[-1].append((attrs["class"], attrs["title"]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def report(tmp_path_factory, data):
    run = make_run(tmp_path_factory.mktemp("run") / "run", data)
    return run, report_html.write_report(run, queries=4, top=10)


def parse(path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


def test_report_is_self_contained_with_every_section(report):
    pytest.importorskip("matplotlib", reason="the 'plot' extra (matplotlib) is not installed")
    run, path = report
    assert path == run / "report.html"
    page = parse(path)
    assert page.sections == ["metrics", "cmc", "losses", "accuracy", "ranked-lists", "config"]
    assert page.links and all(link.startswith("data:image/") for link in page.links)
    text = path.read_text()
    assert "http://" not in text and "https://" not in text
    assert "<td>55.00</td>" in text and "height: 64" in text


def test_ranked_lists_equal_an_independent_ranking(report, data):
    run, path = report
    bundle = load_bundle(run)
    dataset = build_dataset("synthetic", data)
    gallery = embed_samples(bundle, dataset.gallery).numpy().astype(np.float64)
    lists = parse(path).lists
    assert len(lists) == 4 and all(len(row) == 11 for row in lists)
    by_name = {s.path.name: s for s in dataset.query}
    for row in lists:
        (query_class, query_name), *matches = row
        assert query_class == "query"
        query = by_name[query_name]
        feature = embed_samples(bundle, [query]).numpy().astype(np.float64)[0]
        order = np.argsort(np.linalg.norm(gallery - feature, axis=1), kind="stable")[:10]
        expected = [dataset.gallery[i] for i in order]
        assert [name for _, name in matches] == [g.path.name for g in expected]
        assert [cls for cls, _ in matches] == [
            match_status(query.pid, query.camid, g.pid, g.camid) for g in expected]


def test_report_without_matplotlib_still_has_metrics_and_ranked_lists(tmp_path, data,
                                                                     monkeypatch):
    def missing(*args, **kwargs):
        raise MissingDependencyError("plotting needs matplotlib, the 'plot' extra")

    monkeypatch.setattr(report_html, "new_figure", missing)
    monkeypatch.setattr(report_html, "FIGURES", {name: missing for name in report_html.FIGURES})
    run = make_run(tmp_path / "run", data)
    page = parse(report_html.write_report(run, tmp_path / "r.html", queries=1))
    assert page.sections[:3] == ["metrics", "figures", "ranked-lists"]
    assert "the &#x27;plot&#x27; extra" in (tmp_path / "r.html").read_text()


def test_missing_dataset_is_noted_not_fatal(tmp_path, data):
    run = make_run(tmp_path / "run", tmp_path / "gone")
    text = report_html.render_report(run, queries=1)
    assert "Ranked lists unavailable" in text and "gone" in text


def test_report_command_and_errors(tmp_path, data, capsys):
    run = make_run(tmp_path / "run", data)
    assert main(["report", str(run), "--out", str(tmp_path / "x.html"), "--queries", "2",
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "x.html")
    assert len(parse(tmp_path / "x.html").lists) == 2
    assert main(["report", str(tmp_path)]) == 2
    assert "config.yaml not found" in capsys.readouterr().err


def test_chromium_renders_the_ranked_lists(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt-get)")
    _, path = report
    shot = tmp_path / "shot.png"
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", f"--screenshot={shot}", "--window-size=1280,2400",
                          path.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    page = Page()
    page.feed(dom)
    assert "ranked-lists" in page.sections and len(page.lists) == 4
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        pixels = np.asarray(image.convert("RGB"))
    # Not a blank page: many colours (figures, thumbnails) and the green/red/grey frames.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    classes = {cls for row in page.lists for cls, _ in row}
    for status, colour in (("match", (0x2C, 0xA0, 0x2C)), ("mismatch", (0xD6, 0x27, 0x28))):
        framed = np.all(np.abs(pixels.astype(int) - colour) <= 8, axis=-1).sum()
        assert (framed > 100) == (status in classes)
