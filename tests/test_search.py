"""Gallery search: exact top-k equal to a brute-force reference, FAISS recall on a clustered
gallery, an index that grows without being rebuilt, re-ranking with the run's settings, the
JSON and the picture. ``progreid index`` / ``search`` and :class:`progreid.Gallery` are one code
path: the commands are driven here, their results checked against references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from deploy_helpers import make_run, synthetic_data
from PIL import Image

import progreid
from progreid.cli import main
from progreid.data.sample import Sample
from progreid.deploy.bundle import load_bundle
from progreid.search.embed import embed_samples, parse_name
from progreid.search.index import GalleryIndexError, folder_images, open_index
from progreid.search.picture import draw_ranked_lists
from progreid.search.query import match_status
from progreid.search.ranking import exact_top_k, prepare, rerank_top_k


def index_command(run, images, out, *options) -> int:
    return main(["index", str(run), str(images), "--out", str(out), "--device", "cpu",
                 *options])


def evaluation_features(run, paths) -> np.ndarray:
    """The features evaluation computes for image files (the run's Embedder)."""
    return embed_samples(load_bundle(run), [Sample(p, -1, -1) for p in paths]).numpy()


def reference_top_k(queries: np.ndarray, gallery: np.ndarray, k: int):
    """Float64 brute force; ties broken by gallery index."""
    q, g = queries.astype(np.float64), gallery.astype(np.float64)
    d = np.sqrt(np.maximum((q**2).sum(1)[:, None] + (g**2).sum(1)[None] - 2 * q @ g.T, 0.0))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), order


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    return make_run(tmp_path_factory.mktemp("run") / "run", data)


@pytest.mark.parametrize("seed", range(4))
def test_exact_top_k_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    gallery = rng.normal(size=(300, 12)).astype(np.float32)
    gallery[150:160] = gallery[40]  # exact ties: ordered by gallery index
    queries = np.concatenate([rng.normal(size=(5, 12)), gallery[[40, 7]]]).astype(np.float32)
    distances, indices = exact_top_k(torch.from_numpy(queries), torch.from_numpy(gallery), 15)
    ref_d, ref_i = reference_top_k(queries, gallery, 15)
    np.testing.assert_array_equal(indices.numpy(), ref_i)
    np.testing.assert_allclose(distances.numpy(), ref_d, atol=1e-5)
    assert indices[5, :11].tolist() == [40, *range(150, 160)]


def test_top_k_larger_than_the_gallery_returns_all():
    gallery, queries = torch.randn(4, 3), torch.randn(2, 3)
    distances, indices = exact_top_k(queries, gallery, 10)
    assert indices.shape == (2, 4) and sorted(indices[0].tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="same feature dimension"):
        exact_top_k(queries, torch.randn(4, 5), 3)


def test_cosine_metric_ranks_by_cosine_similarity():
    rng = np.random.default_rng(0)
    gallery, queries = rng.normal(size=(50, 8)), rng.normal(size=(3, 8))
    cos = (queries @ gallery.T) / np.outer(np.linalg.norm(queries, axis=1),
                                           np.linalg.norm(gallery, axis=1))
    _, indices = exact_top_k(prepare(torch.tensor(queries), "cosine"),
                             prepare(torch.tensor(gallery), "cosine"), 5)
    np.testing.assert_array_equal(indices.numpy(), np.argsort(-cos, axis=1)[:, :5])


def test_faiss_recall_at_10_on_a_clustered_gallery():
    pytest.importorskip("faiss", reason="the 'search' extra (faiss-cpu) is not installed")
    from progreid.search.ann import build_ivf, recall_at_k, tune_nprobe

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(100, 32)) * 4
    labels = rng.integers(0, 100, 10000)
    gallery = (centres[labels] + rng.normal(size=(10000, 32))).astype(np.float32)
    queries = (centres[rng.integers(0, 100, 200)] + rng.normal(size=(200, 32))).astype(np.float32)
    index = build_ivf(gallery)
    assert index.ntotal == 10000 and index.nlist == min(round(4 * np.sqrt(10000)), 10000 // 39)
    sample = gallery[rng.choice(10000, 200, replace=False)]
    nprobe, tuned = tune_nprobe(index, gallery, sample, k=10, target=0.95)
    assert tuned >= 0.95 and nprobe < index.nlist  # approximate, not exhaustive
    # Held-out queries, recall against exact torch search, computed here by hand.
    exact = reference_top_k(queries, gallery, 10)[1]
    index.nprobe = nprobe
    approx = index.search(queries, 10)[1]
    recall = np.mean([len(set(e) & set(a)) / 10 for e, a in zip(exact, approx, strict=True)])
    assert recall >= 0.95
    assert recall_at_k(index, gallery, queries, 10, nprobe) == pytest.approx(recall)


def test_names_give_identity_and_camera():
    from pathlib import Path

    assert parse_name(Path("0042_c3s1_000123_01.jpg")) == (42, 2)
    assert parse_name(Path("0007_c1_f0000123.jpg")) == (7, 0)
    assert parse_name(Path("-1_c2s1_000001_00.jpg")) == (-1, -1)
    assert parse_name(Path("holiday.png")) == (-1, -1)


def test_match_status_follows_the_market_protocol():
    assert match_status(5, 0, 5, 1) == "match"
    assert match_status(5, 0, 5, 0) == "junk"
    assert match_status(5, 0, 6, 1) == "mismatch"
    assert match_status(5, 0, 0, 0) == "mismatch"  # distractor
    assert match_status(-1, -1, 5, 0) is None and match_status(5, 0, -1, -1) is None


def test_search_returns_the_exact_top_k(tmp_path, run, data):
    assert index_command(run, data / "bounding_box_test", tmp_path / "index", "--ann",
                         "none") == 0
    index = open_index(tmp_path / "index")
    images = folder_images(data / "bounding_box_test")
    assert [item.path for item in index.items] == [str(p.resolve()) for p in images]
    assert index.ann is None and index.model == str((run / "model.pt").resolve())
    np.testing.assert_allclose(index.features, evaluation_features(run, images), atol=1e-5)
    queries = sorted((data / "query").iterdir())[:4]
    results = progreid.Gallery.load(tmp_path / "index", device="cpu").search(queries, 10)
    ref_d, ref_i = reference_top_k(evaluation_features(run, queries), index.features, 10)
    for result, query, dists, idxs in zip(results, queries, ref_d, ref_i, strict=True):
        assert result.query == str(query.resolve())
        assert (result.pid, result.camid) == parse_name(query)
        assert [m.index for m in result.matches] == idxs.tolist()
        np.testing.assert_allclose([m.distance for m in result.matches], dists, atol=1e-4)
        for m in result.matches:
            assert m.path == index.items[m.index].path
            assert m.status == match_status(result.pid, result.camid, m.pid, m.camid)


def test_append_adds_only_new_images_without_rebuilding(tmp_path, run, data):
    images = folder_images(data / "bounding_box_test")
    first, rest = images[:60], images[60:]
    gallery = progreid.Gallery.create(progreid.load(run, device="cpu"), ann="ivf")
    gallery.add(first)
    gallery.save(tmp_path / "index")
    shard0 = (tmp_path / "index" / "features" / "00000.npy").read_bytes()
    assert gallery.index.ann["count"] == 60
    assert index_command(run, data / "bounding_box_test", tmp_path / "index", "--append") == 0
    index = open_index(tmp_path / "index")
    assert len(index) == len(images) == len(first) + len(rest)
    assert (tmp_path / "index" / "features" / "00000.npy").read_bytes() == shard0
    assert index.shards == ["00000.npy", "00001.npy"]
    assert index.ann["count"] == len(images) and index.load_ann().ntotal == len(images)
    assert index_command(run, data / "bounding_box_test", tmp_path / "index", "--append") == 0
    assert open_index(tmp_path / "index").shards == index.shards  # nothing new: no shard
    # The grown index holds what a fresh build over all images would hold.
    assert index_command(run, data / "bounding_box_test", tmp_path / "fresh", "--ann",
                         "none") == 0
    fresh = open_index(tmp_path / "fresh")
    assert [i.path for i in index.items] == [i.path for i in fresh.items]
    np.testing.assert_allclose(index.features, fresh.features, atol=1e-5)
    # Search through FAISS agrees with exact search here (recall-tuned nprobe on a tiny index).
    gallery = progreid.Gallery.load(tmp_path / "index", device="cpu")
    queries = sorted((data / "query").iterdir())[:3]
    via_faiss = gallery.search(queries, top_k=5)
    exact = gallery.search(queries, top_k=5, exact=True)
    overlap = np.mean([len({m.index for m in a.matches} & {m.index for m in b.matches}) / 5
                       for a, b in zip(via_faiss, exact, strict=True)])
    assert overlap >= index.ann["recall_at_10"] - 0.2


def test_index_errors_name_the_problem(tmp_path, run, data, capsys):
    with pytest.raises(GalleryIndexError, match="not a progreid index"):
        open_index(tmp_path)
    assert index_command(run, data / "query", tmp_path / "index") == 0
    capsys.readouterr()
    assert index_command(run, data / "query", tmp_path / "index") == 2
    assert "already holds an index" in capsys.readouterr().err
    assert index_command(run, tmp_path / "nowhere", tmp_path / "other") == 2
    assert "image folder not found" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    assert index_command(run, data / "query", tmp_path / "nothing", "--append") == 2
    assert "not a progreid index" in capsys.readouterr().err


def test_rerank_uses_the_runs_eval_settings(tmp_path, run, data):
    """``search --rerank`` re-ranks with the run's eval.k1 / k2 / lambda_value, as
    :func:`rerank_top_k` does with them on the index's features."""
    gallery = progreid.Gallery.create(progreid.load(run, device="cpu"))
    gallery.add(folder_images(data / "bounding_box_test"))
    queries = sorted((data / "query").iterdir())[:3]
    cfg = load_bundle(run).config.eval
    expected = rerank_top_k(torch.from_numpy(evaluation_features(run, queries)),
                            torch.from_numpy(gallery.index.searchable), 6, cfg.k1, cfg.k2,
                            cfg.lambda_value)[1]
    results = gallery.search(queries, top_k=6, rerank=True)
    assert [[m.index for m in r.matches] for r in results] == expected.tolist()
    assert results != gallery.search(queries, top_k=6)  # re-ranking changes the order here


def test_rerank_over_a_small_gallery_equals_full_re_ranking():
    rerank = pytest.importorskip("progreid.evaluation.rerank",
                                 reason="progreid.evaluation.rerank is not available")
    rng = np.random.default_rng(0)
    gallery = torch.tensor(rng.normal(size=(40, 6)), dtype=torch.float32)
    queries = torch.tensor(rng.normal(size=(3, 6)), dtype=torch.float32)
    final = torch.as_tensor(rerank.re_rank_features(queries, gallery, k1=5, k2=3,
                                                    lambda_value=0.3))
    _, indices = rerank_top_k(queries, gallery, 7, k1=5, k2=3, lambda_value=0.3, pool=100)
    np.testing.assert_array_equal(indices.numpy(),
                                  np.argsort(final.numpy(), axis=1, kind="stable")[:, :7])


def test_search_command_json_and_picture(tmp_path, run, data, capsys):
    assert main(["index", str(run), str(data / "bounding_box_test"), "--out",
                 str(tmp_path / "index"), "--device", "cpu"]) == 0
    queries = [str(p) for p in sorted((data / "query").iterdir())[:2]]
    picture = tmp_path / "ranked.png"
    capsys.readouterr()
    assert main(["search", str(tmp_path / "index"), *queries, "--top", "4", "--json",
                 "--picture", str(picture), "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["picture"] == str(picture)
    assert [len(r["matches"]) for r in printed["results"]] == [4, 4]
    assert [m["rank"] for m in printed["results"][0]["matches"]] == [1, 2, 3, 4]
    with Image.open(picture) as image:
        assert image.width > image.height > 128
    gallery = progreid.Gallery.load(tmp_path / "index", device="cpu")
    assert printed["results"] == [r.to_dict() for r in gallery.search(queries, top_k=4)]
    assert main(["search", str(tmp_path / "index"), "missing.jpg"]) == 2
    assert "missing.jpg" in capsys.readouterr().err


def test_picture_has_one_row_per_query(tmp_path, run, data):
    gallery = progreid.Gallery.create(progreid.load(run, device="cpu"))
    gallery.add(folder_images(data / "bounding_box_test"))
    queries = sorted((data / "query").iterdir())[:3]
    results = gallery.search(queries, top_k=6)
    out = draw_ranked_lists(results, tmp_path / "p.png", height=100, width=50)
    with Image.open(out) as image:
        rows = image.height // (100 + 8 + 16 + 6)
        assert rows == 3 and image.width >= 7 * (50 + 8)
        pixels = np.asarray(image)
    green = np.all(pixels == (0x2C, 0xA0, 0x2C), axis=-1).sum()
    red = np.all(pixels == (0xD6, 0x27, 0x28), axis=-1).sum()
    statuses = [m.status for r in results for m in r.matches]
    assert (green > 0) == ("match" in statuses) and (red > 0) == ("mismatch" in statuses)
