"""The real Market-1501 (``../shared/data/market1501``; skipped with a reason without it): the
reader's counts, junk and distractor handling, the evaluation protocol on its labels, and a short
fine-tune on a subset of identities that beats the off-the-shelf ImageNet features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from progreid.config import load_config
from progreid.data import DatasetError, ReIDDataset, build_dataset
from progreid.evaluation import evaluate
from progreid.training.run import evaluate_untrained, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def market(market1501_root: Path) -> ReIDDataset:
    return build_dataset("market1501", market1501_root)


def test_reader_counts_match_the_published_dataset(market1501_root, market):
    # Published: 12,936 training images of 751 identities; 3,368 queries of 750 identities;
    # 19,732 gallery images of which 3,819 are junk (-1, dropped) and 2,798 distractors (0).
    assert (len(market.train), market.num_train_pids) == (12936, 751)
    assert (len(market.query), len({s.pid for s in market.query})) == (3368, 750)
    assert len(market.gallery) == 19732 - 3819 == 15913
    gallery_pids = [s.pid for s in market.gallery]
    assert gallery_pids.count(0) == 2798 and -1 not in gallery_pids
    assert {s.pid for s in market.gallery} - {0} == {s.pid for s in market.query}
    assert len(market.multi_query) == 12692
    assert {s.pid for s in market.multi_query} == {s.pid for s in market.query}
    assert {s.camid for s in market.train} == set(range(6))
    assert len(list((market1501_root / "bounding_box_test").glob("-1_*.jpg"))) == 3819


def test_every_query_has_a_match_on_another_camera_and_junk_is_excluded(market):
    """An oracle distance that ranks the same-camera images of the query's identity first: they
    are junk, so removing them leaves every query a perfect ranking (rank-1 = mAP = 100 %)."""
    qp = np.array([s.pid for s in market.query])
    qc = np.array([s.camid for s in market.query])
    gp = np.array([s.pid for s in market.gallery])
    gc = np.array([s.camid for s in market.gallery])
    same_id = qp[:, None] == gp[None, :]
    same_cam = qc[:, None] == gc[None, :]
    distance = np.where(same_id & same_cam, 0.0, np.where(same_id, 1.0, 2.0))
    result = evaluate(distance, qp, gp, qc, gc)
    assert result.num_valid == 3368
    assert result.cmc[0] == 1.0 and result.mAP == pytest.approx(1.0)
    # Counted as matches instead, the junk would come first: the same ranking as relevant.
    flipped = np.where(same_id & ~same_cam, 0.0, np.where(same_id, 1.0, 2.0))
    assert evaluate(flipped, qp, gp, qc, gc).mAP == pytest.approx(1.0)
    # Distractors are negatives: ranked before the matches they cost precision.
    distractor_first = np.where(gp[None, :] == 0, 0.0, np.where(same_id, 1.0, 2.0))
    assert evaluate(distractor_first, qp, gp, qc, gc).cmc[0] == 0.0


def test_subset_options_keep_the_first_identities_and_every_distractor(market1501_root):
    subset = build_dataset("market1501", market1501_root, train_ids=100, test_ids=60)
    assert subset.num_train_pids == 100 and len(subset.train) == 1747
    assert len({s.pid for s in subset.query}) == 60
    assert sum(s.pid == 0 for s in subset.gallery) == 2798
    with pytest.raises(DatasetError, match=r"data.options.train_ids = 900: expected an integer "
                                           r"in 1..751"):
        build_dataset("market1501", market1501_root, train_ids=900)


#: The Market-1501 CPU recipe, short: 40 batches at 128 x 64 on 100 training identities without
#: random erasing, every layer trained, evaluated on 60 test identities (263 queries; 3,869
#: gallery images with every distractor) on one view with the Euclidean metric. (With the
#: recipe's frozen early layers these 40 steps gain only +6.9 / +6.5 over the ImageNet features,
#: too close to the bound to hold at every thread count; with its cosine metric the ImageNet
#: features start at 28.1 % rank-1 and 40 steps are not enough to pass them by 5.)
SHORT = ["data.options={train_ids: 100, test_ids: 60}", "data.height=128", "data.width=64",
         "data.erase_p=0.0",
         "data.batches_per_epoch=20", "train.epochs=2", "train.checkpoint_every=2",
         "eval.cpu_runtime=torch",  # an ONNX export costs more than this small evaluation
         "schedule.name=constant", "schedule.warmup_epochs=0", "data.cache=false",
         "eval.flip=false", "eval.metric=euclidean", "model.frozen_stride=0"]


@pytest.mark.slow
@pytest.mark.usefixtures("mobilenetv2_weights")
def test_short_market1501_run_beats_off_the_shelf_features(market1501_root, tmp_path):
    cfg = load_config(REPO / "configs" / "market1501" / "cpu-baseline.yaml",
                      [f"data.root={market1501_root}", f"train.output_dir={tmp_path / 'run'}",
                       *SHORT])
    off_the_shelf = evaluate_untrained(cfg)
    after = train(cfg)
    # 263 queries, chance about 0.1 % rank-1 (3,869 gallery images). Measured (rank-1 / mAP, 1
    # thread): ImageNet features 22.1 / 8.0 %, after these 40 steps 37.3 / 18.6 %; the full
    # recipe on all identities reaches 82 / 63 % (3 seeds, docs/accuracy.md).
    assert after["rank1"] > off_the_shelf["rank1"] + 5.0, (off_the_shelf, after)
    assert after["mAP"] > off_the_shelf["mAP"] + 4.0, (off_the_shelf, after)
