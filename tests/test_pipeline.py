"""evaluate_model: the configured protocol (standard, multi-query, single-shot) on a real
dataset folder equals the protocol functions applied to the extracted features."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from progreid.config import Config, ConfigError, EvalConfig, override_config
from progreid.data.registry import build_dataset
from progreid.data.sample import DatasetError
from progreid.data.synthetic import generate_pedestrians
from progreid.evaluation import cuhk03_single_shot, evaluate_features, market_multi_query
from progreid.evaluation.features import Embedder
from progreid.evaluation.pipeline import evaluate_model, summarize
from progreid.evaluation.threshold import match_threshold_features
from progreid.models.registry import build_model

HEIGHT, WIDTH = 32, 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = generate_pedestrians(tmp_path_factory.mktemp("pipeline") / "data", identities=16,
                                train_identities=6, cameras=3, query_cameras=2, distractors=3,
                                height=HEIGHT, width=WIDTH, multi_query_images=2)
    return build_dataset("synthetic", root)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(6, "baseline", backbone="resnet18", width=0.125).eval()


def embedder(model, cfg):
    return Embedder(model, HEIGHT, WIDTH, cfg.flip, cfg.ten_crop)


def features(model, samples, cfg):
    return embedder(model, cfg).extract(samples, "cpu", cfg.batch_size)


def ranking_metrics(metrics: dict) -> dict:
    """``evaluate_model``'s metrics without the match threshold (calibrated apart)."""
    return {key: value for key, value in metrics.items() if key != "match_threshold"}


def test_standard_protocol_equals_evaluate_features(dataset, model):
    cfg = EvalConfig(batch_size=32)
    query, gallery = features(model, dataset.query, cfg), features(model, dataset.gallery, cfg)
    expected = evaluate_features(query.features, gallery.features, query.pids, gallery.pids,
                                 query.camids, gallery.camids)
    got = evaluate_model(embedder(model, cfg), dataset, cfg)
    assert ranking_metrics(got) == summarize(expected)
    threshold = match_threshold_features(query.features, gallery.features, query.pids,
                                         gallery.pids, query.camids, gallery.camids, cfg.metric)
    assert got["match_threshold"] == threshold.to_dict()


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_multi_query_pools_over_the_gt_bbox_images(dataset, model, pooling):
    assert dataset.multi_query
    cfg = EvalConfig(batch_size=32, multi_query=pooling)
    query, gallery = features(model, dataset.query, cfg), features(model, dataset.gallery, cfg)
    extra = features(model, dataset.multi_query, cfg)
    expected = market_multi_query(query.pids, query.camids, extra.features, extra.pids,
                                  extra.camids, gallery.features, gallery.pids, gallery.camids,
                                  pooling=pooling)
    got = evaluate_model(embedder(model, cfg), dataset, cfg)
    assert ranking_metrics(got) == summarize(expected)
    single = EvalConfig(batch_size=32)
    assert got != evaluate_model(embedder(model, single), dataset, single)


def test_single_shot_protocol_averages_the_repeats(dataset, model):
    cfg = EvalConfig(batch_size=32, protocol="single_shot", single_shot_repeats=3)
    query, gallery = features(model, dataset.query, cfg), features(model, dataset.gallery, cfg)
    expected = cuhk03_single_shot(query.features, gallery.features, query.pids, gallery.pids,
                                  query.camids, gallery.camids, repeats=3)
    got = evaluate_model(embedder(model, cfg), dataset, cfg)
    assert ranking_metrics(got) == summarize(expected)


def test_multi_query_without_gt_bbox_images_is_a_clear_error(dataset, model):
    bare = dataclasses.replace(dataset, multi_query=[])
    with pytest.raises(DatasetError, match="has no multi-query"):
        cfg = EvalConfig(multi_query="avg")
        evaluate_model(embedder(model, cfg), bare, cfg)


def test_single_shot_with_rerank_is_rejected():
    with pytest.raises(ConfigError, match="eval.rerank"):
        override_config(Config(), ["eval.protocol=single_shot", "eval.rerank=true"])
