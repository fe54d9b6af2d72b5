"""``progreid evaluate`` stores a model's embeddings in ``features/`` beside it and reads them
back when only the ranking changes (re-ranking, multi-query pooling, metric): the metrics equal
those of a fresh embedding, a change of model file, image or embedding setting embeds anew, and a
folder that cannot be written costs only the storing."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from deploy_helpers import make_run, synthetic_data
from reliability_support import fail_writes_under

from progreid.cli import main
from progreid.data import build_dataset
from progreid.evaluation.feature_cache import FEATURES_FOLDER
from progreid.evaluation.features import Embedder
from progreid.utils.io import TEMP_GLOB


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("data"))


@pytest.fixture
def embedded(monkeypatch) -> list[int]:
    """The number of images of each real embedding pass, in order."""
    passes: list[int] = []
    extract = Embedder.extract

    def counting(self, samples, *args, **kwargs):
        passes.append(len(samples))
        return extract(self, samples, *args, **kwargs)

    monkeypatch.setattr(Embedder, "extract", counting)
    return passes


def evaluate(capsys, run, *options: str) -> dict:
    """``progreid evaluate RUN --json OPTIONS``'s metrics (without the time)."""
    capsys.readouterr()
    assert main(["evaluate", str(run), "--device", "cpu", "--json", *options]) == 0
    record = json.loads(capsys.readouterr().out)
    record.pop("seconds")
    return record


def test_a_second_protocol_reads_the_stored_features_and_equals_a_fresh_embedding(
        tmp_path, data, capsys, embedded):
    run = make_run(tmp_path / "run", data, pca_dim=None)
    single = evaluate(capsys, run)
    assert len(embedded) == 2  # query and gallery
    assert len(list((run / FEATURES_FOLDER).glob("*.pt"))) == 2
    for setting in ("eval.rerank=true", "eval.metric=cosine", "eval.multi_query=avg"):
        embedded.clear()
        stored = evaluate(capsys, run, "--set", setting)
        fresh_passes = 3 if setting == "eval.multi_query=avg" else 2
        assert len(embedded) == fresh_passes - 2, setting  # only the gt_bbox images are new
        embedded.clear()
        assert stored == evaluate(capsys, run, "--set", setting, "--no-feature-cache"), setting
        assert len(embedded) == fresh_passes, setting
    assert evaluate(capsys, run) == single


def test_another_embedding_setting_or_model_file_embeds_anew(tmp_path, data, capsys, embedded):
    run = make_run(tmp_path / "run", data, pca_dim=None)
    evaluate(capsys, run)
    embedded.clear()
    no_flip = evaluate(capsys, run, "--set", "eval.flip=false")
    assert len(embedded) == 2
    make_run(run, data, pca_dim=None, seed=1)  # retrained: another model.pt in the same folder
    embedded.clear()
    retrained = evaluate(capsys, run, "--set", "eval.flip=false")
    assert len(embedded) == 2
    assert retrained["mAP"] != no_flip["mAP"]
    assert len(list((run / FEATURES_FOLDER).glob("*.pt"))) == 6


def test_no_feature_cache_stores_nothing(tmp_path, data, capsys):
    run = make_run(tmp_path / "run", data, pca_dim=None)
    evaluate(capsys, run, "--no-feature-cache")
    assert not (run / FEATURES_FOLDER).exists()


def test_a_damaged_file_is_embedded_anew_and_replaced(tmp_path, data, capsys, embedded, caplog):
    run = make_run(tmp_path / "run", data, pca_dim=None)
    first = evaluate(capsys, run)
    damaged = sorted((run / FEATURES_FOLDER).glob("*.pt"))[0]
    damaged.write_bytes(b"not a tensor file")
    embedded.clear()
    with caplog.at_level(logging.WARNING):
        assert evaluate(capsys, run) == first
    assert len(embedded) == 1
    assert f"ignoring unreadable stored features {damaged}" in caplog.text
    assert torch.load(damaged, weights_only=True)["features"].dim() == 2


def test_a_read_only_run_folder_is_evaluated_without_storing(tmp_path, data, capsys, caplog,
                                                             monkeypatch):
    run = make_run(tmp_path / "run", data, pca_dim=None)
    expected = evaluate(capsys, run, "--no-feature-cache")
    fail_writes_under(monkeypatch, run)
    with caplog.at_level(logging.WARNING):
        assert evaluate(capsys, run) == expected
    assert "features not stored for the next evaluation: cannot write" in caplog.text
    assert caplog.text.count("features not stored") == 1  # said once, not once per image list
    assert not (run / FEATURES_FOLDER).exists()
    assert not list(run.glob(TEMP_GLOB))


def test_a_file_of_other_images_is_embedded_anew(tmp_path, data, capsys, embedded, caplog):
    run = make_run(tmp_path / "run", data, pca_dim=None)
    first = evaluate(capsys, run)
    query_file, gallery_file = sorted((run / FEATURES_FOLDER).glob("*.pt"),
                                      key=lambda path: path.stat().st_size)
    gallery_file.write_bytes(query_file.read_bytes())  # query features under the gallery key
    embedded.clear()
    with caplog.at_level(logging.WARNING):
        assert evaluate(capsys, run) == first
    assert embedded == [len(torch.load(gallery_file, weights_only=True)["pids"])]
    assert f"ignoring stored features {gallery_file}: they do not match the images" in caplog.text


def test_a_replaced_image_embeds_its_list_anew(tmp_path, data, capsys, embedded):
    run = make_run(tmp_path / "run", data, pca_dim=None)
    evaluate(capsys, run)
    query = build_dataset("synthetic", data).query
    image = query[0].path
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as a rewrite leaves it
    embedded.clear()
    evaluate(capsys, run)
    assert embedded == [len(query)]  # the query list again; the gallery read back
