"""Nothing left behind: a failed `index` leaves no folder, a failed `--append` leaves the index
as it was, `--on-bad-image skip` indexes the rest and lists what it skipped, `search` reports a
moved gallery file without failing and draws a picture only when asked, and the temp files of a
killed write are removed at the next start of a training or an append."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from deploy_helpers import make_run
from reliability_support import config_file, make_market, tree

from progreid.cli import main
from progreid.config import load_config
from progreid.data.synthetic import generate_pedestrians
from progreid.deploy.api import TorchReIDModel
from progreid.search import ann as ann_lib
from progreid.search import index as index_lib
from progreid.training import run as run_lib
from progreid.utils.io import remove_stale_temporaries


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_pedestrians(tmp_path_factory.mktemp("data"), identities=6,
                                train_identities=2, cameras=2, images_per_camera=2,
                                query_cameras=1, multi_query_images=1, distractors=0,
                                height=64, width=32)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "run", data)


@pytest.fixture
def images(tmp_path: Path, data: Path) -> Path:
    """A copy of the gallery images (12), which the tests may change."""
    return Path(shutil.copytree(data / "bounding_box_test", tmp_path / "images"))


def index(capsys: pytest.CaptureFixture[str], run: Path, images: Path, out: Path,
          *options: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `progreid index`, in four-image batches."""
    capsys.readouterr()
    code = main(["index", str(run), str(images), "--out", str(out), "--device", "cpu",
                 "--batch-size", "4", *options])
    out, err = capsys.readouterr()
    return code, out, err


def interrupt_on(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
                 after: int = 0) -> None:
    """Make ``owner.name`` raise KeyboardInterrupt on its call number ``after + 1``."""
    real, calls = getattr(owner, name), []

    def failing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


FAILURES = {"embedding the second batch": (TorchReIDModel, "_embed_batch", 1),
            "writing the shard": (index_lib, "_write_shard", 0),
            "writing the manifest": (index_lib, "atomic_write_json", 0)}
APPEND_FAILURES = {**FAILURES, "writing the FAISS index": (ann_lib, "write_ann", 0)}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_index_leaves_nothing(failure, tmp_path, run, images, monkeypatch, capsys):
    interrupt_on(monkeypatch, *FAILURES[failure])
    assert index(capsys, run, images, tmp_path / "idx")[0] == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


@pytest.mark.parametrize("failure", list(APPEND_FAILURES))
def test_a_failed_append_leaves_the_index_as_it_was(failure, tmp_path, run, images,
                                                    monkeypatch, capsys):
    pytest.importorskip("faiss", reason="the 'search' extra (faiss-cpu) is not installed")
    later = tmp_path / "later"
    later.mkdir()
    for path in sorted(images.iterdir())[6:]:
        path.rename(later / path.name)
    assert index(capsys, run, images, tmp_path / "idx", "--ann", "ivf")[0] == 0
    (tmp_path / "idx" / "features" / ".00001.npy.abcd1234.tmp").write_bytes(b"killed")
    before = tree(tmp_path / "idx")
    for path in later.iterdir():
        path.rename(images / path.name)
    with monkeypatch.context() as patch:
        interrupt_on(patch, *APPEND_FAILURES[failure])
        assert index(capsys, run, images, tmp_path / "idx", "--append")[0] == 130
    assert tree(tmp_path / "idx") == {k: v for k, v in before.items() if "abcd" not in k}
    assert index(capsys, run, images, tmp_path / "idx", "--append")[0] == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["count"] == 12 and manifest["shards"] == ["00000.npy", "00001.npy"]
    assert sorted(p.name for p in (tmp_path / "idx").rglob("*")) == [
        "00000.npy", "00001.npy", "ann-00002.faiss", "features", "manifest.json"]


def test_bad_images_stop_the_index_or_are_skipped_and_listed(tmp_path, run, images, capsys):
    bad = images / "0099_c1s1_999999_01.jpg"
    jpeg = sorted(images.iterdir())[0].read_bytes()
    bad.write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    code, _, err = index(capsys, run, images, tmp_path / "idx")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"cannot decode image {bad}" in err and "--on-bad-image skip" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
    code, out, err = index(capsys, run, images, tmp_path / "idx", "--on-bad-image", "skip")
    assert code == 0 and "12 in total" in out and "1 unreadable images skipped" in out
    skipped, summary = err.splitlines()
    assert skipped.startswith(f"progreid index: skipped: cannot decode image {bad}: ")
    assert re.fullmatch(r"progreid index: 12 images indexed in \d+\.\d s", summary)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert list(manifest["skipped"]) == [str(bad.resolve())] and manifest["count"] == 12
    bad.write_bytes(jpeg)  # fixed: the next append indexes it
    assert index(capsys, run, images, tmp_path / "idx", "--append")[0] == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["skipped"] == {} and manifest["count"] == 13


def test_search_reports_a_moved_file_and_draws_only_when_asked(tmp_path, run, images, data,
                                                              monkeypatch, capsys):
    assert index(capsys, run, images, tmp_path / "idx")[0] == 0
    moved = sorted(images.iterdir())[0]
    moved.unlink()
    monkeypatch.chdir(tmp_path)
    query = str(sorted((data / "query").iterdir())[0])
    assert main(["search", "idx", query, "--top", "12", "--json", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert printed["moved"] == [str(moved.resolve())] and printed["picture"] is None
    assert len(printed["results"][0]["matches"]) == 12
    assert err == (f"progreid search: warning: 1 matched gallery files have moved since "
                   f"indexing: {moved.resolve()}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "images"]
    assert main(["search", "idx", query, "--picture", "p.png", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.endswith("picture: p.png\n") and (tmp_path / "p.png").is_file()


def test_stale_temporaries_go_at_the_next_start_of_a_training(tmp_path, monkeypatch):
    cfg = load_config(config_file(tmp_path, make_market(tmp_path / "market"), tmp_path / "run"))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    stale = [tmp_path / "run" / ".config.yaml.k2j4_x9z.tmp",
             tmp_path / "run" / "checkpoints" / ".last.pt.abcd1234.tmp"]
    kept = [tmp_path / "run" / "notes.tmp", tmp_path / "run" / "checkpoints" / ".x.tmp"]
    for path in stale + kept:
        path.write_bytes(b"partial")
    interrupt_on(monkeypatch, run_lib, "write_run_files")
    with pytest.raises(KeyboardInterrupt):
        run_lib.train(cfg)
    assert [path.exists() for path in stale + kept] == [False, False, True, True]
    assert remove_stale_temporaries(tmp_path / "nowhere") == []


def test_search_with_a_model_of_another_width_is_one_line(tmp_path, run, images, data, capsys):
    assert index(capsys, run, images, tmp_path / "idx")[0] == 0
    other = make_run(tmp_path / "other", data, pca_dim=8)  # 8-d embeddings, the index has 16
    query = str(sorted((data / "query").iterdir())[0])
    assert main(["search", str(tmp_path / "idx"), query, "--model", str(other),
                 "--device", "cpu"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "the model gives 8-d embeddings but index" in err
