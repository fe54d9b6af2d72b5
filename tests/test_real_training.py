"""A short fine-tune of the ImageNet MobileNetV2 on real CUHK01 images beats its off-the-shelf
features, which beat random initialisation (skipped without ``../shared`` or the weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from progreid.config import load_config
from progreid.training.run import evaluate_untrained, train

REPO = Path(__file__).resolve().parents[1]

#: Three short epochs of the CUHK01 baseline recipe at 128 x 64 without random erasing (which
#: slows the first epochs), evaluated on one crop without flip to stay quick.
SHORT = ["train.epochs=3", "data.batches_per_epoch=20", "data.height=128", "data.erase_p=0.0",
         "schedule.warmup_epochs=0", "schedule.milestones=[]", "train.checkpoint_every=3",
         "eval.flip=false", "eval.ten_crop=false",
         "eval.cpu_runtime=torch"]  # an ONNX export costs more than this small evaluation


@pytest.mark.slow
@pytest.mark.usefixtures("mobilenetv2_weights")
def test_short_pretrained_cuhk01_run_beats_off_the_shelf_features(cuhk01_root, tmp_path):
    cfg = load_config(REPO / "configs" / "cuhk01" / "baseline.yaml",
                      [f"data.root={cuhk01_root}", f"train.output_dir={tmp_path / 'run'}",
                       "data.cache=false", *SHORT])
    random_init = evaluate_untrained(load_config(
        REPO / "configs" / "cuhk01" / "baseline.yaml",
        [f"data.root={cuhk01_root}", "model.pretrained=null", *SHORT]))
    off_the_shelf = evaluate_untrained(cfg)
    after = train(cfg)
    # 972 queries, chance 0.2 % rank-1. Measured (rank-1 / rank-10 / mAP): random init 1.0 / 6.8 /
    # 2.2 %, ImageNet features 6.5 / 19.5 / 7.2 %, after these 60 steps 20.9 / 49.5 / 22.7 % at 1
    # torch thread (13.4 / 39.6 / 15.7 % with batch-hard on the raw feature; the full recipe
    # reaches 66 %). Single-crop evaluation: the recipe's 10-crop TTA would make the three
    # evaluations 10 times as long.
    assert off_the_shelf["rank1"] > 2 * random_init["rank1"], (random_init, off_the_shelf)
    assert off_the_shelf["mAP"] > random_init["mAP"] + 2.0, (random_init, off_the_shelf)
    assert after["rank1"] > off_the_shelf["rank1"] + 2.5, (off_the_shelf, after)
    assert after["rank10"] > off_the_shelf["rank10"] + 10.0, (off_the_shelf, after)
    assert after["mAP"] > off_the_shelf["mAP"] + 4.0, (off_the_shelf, after)
