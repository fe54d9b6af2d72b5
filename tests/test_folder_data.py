"""Camera-less and identity-only data: the ``folder`` dataset's layouts, its seeded split saved
with the run, the protocol without cameras against a naive reference, and train + evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from reliability_support import config_file, noise_image, run_cli

from progreid.cli import main
from progreid.config import load_config
from progreid.data import DatasetError, build_dataset, build_run_dataset, datasets_table
from progreid.data.identities import SPLIT_NAME, save_split
from progreid.data.pattern import read_folder
from progreid.evaluation.ranking import evaluate_features
from progreid.training.run import load_dataset

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


def _identities(root: Path, counts: dict[str, int], seed: int = 0, first: int = 0) -> Path:
    """``root/<name>/NN.jpg``: ``counts[name]`` distinct noise images per identity, numbered
    from ``first``."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(first, first + count):
            noise_image(rng).save(root / name / f"{i:02d}.jpg", quality=90)
    return root


def _rel(root: Path, samples) -> list[str]:
    return [s.path.relative_to(root).as_posix() for s in samples]


# ----------------------------------------------------------------- layout 'identities'
def test_identity_folders_map_sorted_names_to_ids_and_split_every_image_once(tmp_path):
    counts = {name: 3 for name in NAMES} | {"bob": 1, "heidi": 1}
    root = _identities(tmp_path / "people", counts)
    (root / "alice" / ".DS_Store").write_bytes(b"x")
    (root / "carol" / "Thumbs.db").write_bytes(b"x")
    (root / "README.txt").write_text("loose non-image files in ROOT are ignored")
    data = build_dataset("folder", root)
    assert data.cameras is False and data.split is not None
    ids = {name: i for i, name in enumerate(sorted(NAMES))}
    for sample in data.query + data.gallery:  # test ids: the index of the name in sorted order
        assert sample.pid == ids[sample.path.parent.name]
    train, query, gallery = (_rel(root, s) for s in (data.train, data.query, data.gallery))
    every = sorted(f"{n}/{i:02d}.jpg" for n, c in counts.items() for i in range(c))
    assert sorted(train + query + gallery) == every  # each image in exactly one split
    train_names = {p.split("/")[0] for p in train}
    test_names = {p.split("/")[0] for p in query + gallery}
    assert len(test_names) == 4 and not train_names & test_names  # test_fraction 0.5 of 8
    for name in test_names:  # one query per test identity with two or more images
        assert sum(p.startswith(name + "/") for p in query) == (counts[name] > 1)
    assert data.num_train_pids == 4 and sorted({s.pid for s in data.train}) == [0, 1, 2, 3]
    cams = [s.camid for s in data.train + data.query + data.gallery]
    assert len(set(cams)) == len(cams)  # no cameras: each image is a camera of its own
    assert "cameras" in datasets_table(data) and datasets_table(data).split("\n")[1].endswith("-")


def test_the_split_is_seeded_and_deterministic(tmp_path):
    root = _identities(tmp_path / "people", {name: 4 for name in NAMES})

    def split(**options):
        return build_dataset("folder", root, **options).split

    assert split() == split(split_seed=0) == split(layout="identities")
    assert split(split_seed=1) != split()
    assert {len(split(test_fraction=f)["train"]) // 4 for f in (0.01, 0.99)} == {7, 1}
    record = split(split_seed=3, test_fraction=0.25)
    assert record["seed"] == 3 and record["test_fraction"] == 0.25
    assert record["identities"] == sorted(NAMES) and len(record["query"]) == 2


def test_a_saved_split_is_reused_after_images_are_added(tmp_path):
    root = _identities(tmp_path / "people", {name: 3 for name in NAMES})
    first = build_dataset("folder", root)
    run = tmp_path / "run"
    run.mkdir()
    save_split(first, run)
    _identities(root, {name: 2 for name in ("zoe", *NAMES)}, seed=1, first=3)  # more, and an id
    again = build_run_dataset("folder", root, {}, run)
    assert again == first
    assert build_dataset("folder", root).split != first.split  # drawn afresh, it would change
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}"])
    assert load_dataset(cfg, run) == first  # what `train --resume` reads
    (root / first.split["gallery"][0]).unlink()
    with pytest.raises(DatasetError, match=f"images listed by {run / SPLIT_NAME} do not exist"):
        build_run_dataset("folder", root, {}, run)


def test_a_dataset_with_split_folders_removes_a_stale_split(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / SPLIT_NAME).write_text("{}")
    save_split(build_dataset("folder", _camera_less(tmp_path / "data"),
                             pattern=r"(?P<pid>\d+)_"), run)
    assert not (run / SPLIT_NAME).exists()


@pytest.mark.parametrize("content", ["not json", '{"format": "other"}',
                                     '{"format": "progreid-split-1", "identities": "a"}'])
def test_a_broken_split_file_is_one_clear_error(tmp_path, content):
    root = _identities(tmp_path / "people", {name: 2 for name in NAMES[:2]})
    split = tmp_path / "split.json"
    split.write_text(content)
    with pytest.raises(DatasetError, match=f"split_file {split}:? .*delete it to draw the split"):
        build_dataset("folder", root, split_file=str(split))


def _error(root: Path, **options) -> str:
    with pytest.raises(DatasetError) as info:
        build_dataset("folder", root, **options)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_identity_layout_errors_name_the_file_and_the_fix(tmp_path):
    root = _identities(tmp_path / "people", {name: 2 for name in NAMES[:3]})
    (root / "ivan").mkdir()
    assert _error(root) == (f"identity folder {root / 'ivan'} holds no image; add its images "
                            "(.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp) or remove the folder")
    shutil.copy(root / "alice" / "00.jpg", root / "ivan" / "00.jpg")
    (root / "ivan" / "labels.csv").write_text("id,name")
    assert _error(root).startswith(f"{root / 'ivan' / 'labels.csv'} is not an image (expected "
                                   ".bmp")
    assert _error(root).endswith("move it out of the identity folder")
    (root / "ivan" / "labels.csv").unlink()
    (root / "ivan" / "cam1").mkdir()
    assert f"{root / 'ivan' / 'cam1'} is a folder inside identity folder" in _error(root)
    (root / "ivan" / "cam1").rmdir()
    shutil.copy(root / "alice" / "00.jpg", root / "stray.jpg")
    assert f"image {root / 'stray.jpg'} lies directly in {root}" in _error(root)
    (root / "stray.jpg").unlink()
    (root / "train").mkdir()
    message = _error(root, layout="identities")
    assert f"{root} mixes layouts" in message and "it has train/" in message
    assert _error(root) == (f"{root} mixes layouts: it has train/ but not query, gallery/; layout "
                            "'splits' needs all three folders, layout 'identities' "
                            "(ROOT/<identity>/<image>) none of them")


@pytest.mark.parametrize(("counts", "options", "message"), [
    ({"solo": 3}, {}, "holds 1 identity folder(s); layout 'identities' needs"),
    ({"a": 1, "b": 1, "c": 1, "d": 1}, {}, "the split has no query image; a query needs a test "
                                           "identity with two or more images"),
    ({"a": 2, "b": 2}, {"test_fraction": 1.5}, "data.options.test_fraction = 1.5: expected a "
                                                 "number between 0 and 1"),
    ({"a": 2, "b": 2}, {"split_seed": "x"}, "data.options.split_seed = 'x': expected an integer"),
    ({"a": 2, "b": 2}, {"pattern": r"(?P<pid>\d+)"},
     "data.options.pattern does not apply to layout 'identities'"),
    ({"a": 2, "b": 2}, {"layout": "flat"}, "data.options.layout = 'flat': expected one of auto, "
                                              "splits, identities"),
])
def test_unusable_identity_data_is_refused(tmp_path, counts, options, message):
    assert message in _error(_identities(tmp_path / "people", counts), **options)


def test_single_image_test_identities_are_gallery_distractors(tmp_path):
    counts = {"a": 1, "b": 1, "c": 3, "d": 3}
    split = build_dataset("folder", _identities(tmp_path / "people", counts),
                          test_fraction=0.75).split
    test = {p.split("/")[0] for p in split["query"] + split["gallery"]}
    assert len(test) == 3
    assert sorted(p.split("/")[0] for p in split["query"]) == sorted(test & {"c", "d"})
    assert all(f"{name}/00.jpg" in split["gallery"] for name in test & {"a", "b"})


# ----------------------------------------------------------------- layout 'splits', no camera
def _camera_less(root: Path, ids: int = 4, per_id: int = 3, test_ids: int = 3,
                 seed: int = 0) -> Path:
    """``train/``, ``query/`` and ``gallery/`` named ``PPPP_N.jpg``; the gallery holds a copy of
    every query under the query's own name (a gallery of every image)."""
    rng = np.random.default_rng(seed)
    for pid in range(1, ids + 1):
        for i in range(per_id):
            (root / "train").mkdir(parents=True, exist_ok=True)
            noise_image(rng).save(root / "train" / f"{pid:04d}_{i}.jpg", quality=90)
    for folder in ("query", "gallery"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for pid in range(100, 100 + test_ids):
        noise_image(rng).save(root / "query" / f"{pid:04d}_0.jpg", quality=90)
        shutil.copy(root / "query" / f"{pid:04d}_0.jpg", root / "gallery" / f"{pid:04d}_0.jpg")
        for i in (1, 2):
            noise_image(rng).save(root / "gallery" / f"{pid:04d}_{i}.jpg", quality=90)
    return root


def test_a_pattern_without_camera_gives_each_file_its_own_camera(tmp_path):
    root = _camera_less(tmp_path / "data")
    data = build_dataset("folder", root, pattern=r"(?P<pid>\d+)_\d+\.jpg")
    assert data.cameras is False and data.split is None
    query = {s.path.name: s.camid for s in data.query}
    gallery = {s.path.name: s.camid for s in data.gallery}
    assert all(gallery[name] == camid for name, camid in query.items())  # the identical image
    assert len(set(gallery.values())) == len(gallery)
    assert not set(gallery.values()) & {s.camid for s in data.train}
    with pytest.raises(DatasetError, match="data.options.split_seed does not apply to layout "
                                         "'splits'"):
        read_folder(root, r"(?P<pid>\d+)_", split_seed=1)


# ----------------------------------------------------------------- protocol without cameras
def _naive(dist: np.ndarray, query, gallery, image) -> tuple[np.ndarray, float]:
    """CMC and mAP by a plain loop; junk = the identical image (same ``image(sample)``) only."""
    cmc, aps = np.zeros(dist.shape[1]), []
    for q, probe in enumerate(query):
        ranked = [gallery[g] for g in sorted(range(len(gallery)), key=lambda g: dist[q, g])]
        ranked = [g for g in ranked if image(g) != image(probe)]
        hits = [i for i, g in enumerate(ranked) if g.pid == probe.pid]
        if hits:
            cmc[hits[0]:] += 1
            aps.append(np.mean([(n + 1) / (i + 1) for n, i in enumerate(hits)]))
    return cmc / len(aps), float(np.mean(aps))


@pytest.mark.parametrize("layout", ["splits", "identities"])
def test_camera_less_ranking_matches_a_naive_reference(tmp_path, layout):
    if layout == "splits":  # the gallery holds a copy of each query, under the query's name
        data = build_dataset("folder", _camera_less(tmp_path / "d", test_ids=6),
                             pattern=r"(?P<pid>\d+)_")
        image = lambda sample: sample.path.name  # noqa: E731
    else:
        data = build_dataset("folder", _identities(tmp_path / "d", {n: 4 for n in NAMES}))
        image = lambda sample: sample.path  # noqa: E731
    rng = np.random.default_rng(0)
    pids = np.array([s.pid for s in data.query + data.gallery])
    centres = rng.normal(size=(pids.max() + 1, 8))
    features = rng.normal(size=(len(pids), 8)) + 0.8 * centres[pids]
    q, g = features[:len(data.query)], features[len(data.query):]
    result = evaluate_features(q, g, *(np.array([getattr(s, key) for s in samples])
                                       for key in ("pid", "camid")
                                       for samples in (data.query, data.gallery)),
                               max_rank=len(data.gallery))
    dist = np.linalg.norm(q[:, None] - g[None], axis=2)
    cmc, mean_ap = _naive(dist, data.query, data.gallery, image)
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-12)
    assert result.mAP == pytest.approx(mean_ap, abs=1e-12)


# ----------------------------------------------------------------- train + evaluate (CLI)
def _evaluate(capsys, run: Path) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _metrics(record: dict) -> dict:
    return {key: record[key] for key in ("rank1", "mAP", "mINP", "num_valid")}


@pytest.mark.parametrize("layout", ["identities", "splits"])
def test_camera_less_data_trains_and_evaluates_end_to_end(tmp_path, capsys, layout):
    if layout == "identities":
        root = _identities(tmp_path / "people", {name: 3 for name in NAMES})
        options = {}
    else:
        root = _camera_less(tmp_path / "data")
        options = {"pattern": r"(?P<pid>\d+)_"}
    run = tmp_path / "run"
    recipe = config_file(tmp_path, root, run, data={"dataset": "folder", "options": options})
    code, err = run_cli(capsys, "train", recipe)
    assert code == 0, err
    results = json.loads((run / "results.json").read_text())
    assert (run / SPLIT_NAME).is_file() == (layout == "identities")
    evaluated = _evaluate(capsys, run)
    assert _metrics(evaluated) == pytest.approx(_metrics(results))
    if layout == "splits":  # without --json: the table train prints, and the time it took
        capsys.readouterr()
        assert main(["evaluate", str(run)]) == 0
        header, row, model = capsys.readouterr().out.strip().splitlines()
        assert header.split() == ["rank1", "rank5", "rank10", "mAP", "mINP"]
        assert row.split()[0] == "folder"
        assert float(row.split()[1]) == pytest.approx(results["rank1"], abs=0.05)
        assert model.startswith(f"model: {run / 'model.pt'}") and " s; every metric" in model
        # Only eval.* settings: the rest is how the model was trained.
        code, err = run_cli(capsys, "evaluate", run, "--set", "train.epochs=5")
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert "--set 'train.epochs=5': evaluate takes only eval.* settings" in err
    if layout == "identities":
        assert json.loads((run / SPLIT_NAME).read_text()) == build_dataset("folder", root).split
        _identities(root, {name: 3 for name in NAMES}, seed=2, first=3)  # the folder grows
        assert _metrics(_evaluate(capsys, run)) == pytest.approx(_metrics(results))
