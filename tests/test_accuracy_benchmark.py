"""benchmarks/accuracy.py: statistics over seeds, paired differences, and resuming."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"


@pytest.fixture(scope="module")
def accuracy():
    spec = importlib.util.spec_from_file_location("accuracy_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def finished_run(run_dir: Path, rank1: float, mAP: float, wall: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(
        {"rank1": rank1, "rank5": rank1 + 10, "mAP": mAP, "mINP": mAP - 10}))
    (run_dir / "wall_time.json").write_text(json.dumps({"seconds": wall, "threads": 1}))


def test_table_has_means_spreads_and_paired_differences(accuracy, tmp_path):
    scores = {"base": [(50.0, 52.0), (54.0, 55.0), (46.0, 49.0)],
              "new": [(53.0, 52.5), (55.0, 56.0), (50.0, 50.5)]}
    recipes = [tmp_path / "base.yaml", tmp_path / "new.yaml"]
    jobs = accuracy.plan(recipes, [0, 1, 2], tmp_path / "out")
    for job in jobs:
        rank1, mAP = scores[job.label][job.seed]
        finished_run(job.run_dir, rank1, mAP, wall=600.0)
    text = accuracy.markdown(accuracy.results_of(jobs), "base", 1, "cmd")
    base_rank1 = [r for r, _ in scores["base"]]
    assert f"| base | 0, 1, 2 | 50.0 ± {statistics.stdev(base_rank1):.1f} |" in text
    diffs = [n - b for (n, _), (b, _) in zip(scores["new"], scores["base"], strict=True)]
    assert (f"| new | 0, 1, 2 | {statistics.fmean(diffs):.1f} ± {statistics.stdev(diffs):.1f} |"
            in text)
    assert "+3.0, +1.0, +4.0" in text and "10.0 ± 0.0" in text  # 600 s = 10 min per run


def test_unfinished_seeds_are_left_out_of_means_and_differences(accuracy, tmp_path):
    jobs = accuracy.plan([tmp_path / "base.yaml", tmp_path / "new.yaml"], [0, 1, 2],
                         tmp_path / "out", seed_major=True)
    assert [(j.label, j.seed) for j in jobs[:3]] == [("base", 0), ("new", 0), ("base", 1)]
    for job in jobs[:-1]:  # "new" seed 2 has not finished
        finished_run(job.run_dir, 50.0 + job.seed + (job.label == "new"), 50.0, wall=60.0)
    text = accuracy.markdown(accuracy.results_of(jobs), "base", 1, "cmd")
    assert "| new | 0, 1 | 51.5 ± 0.7 |" in text and "| new | 0, 1 | 1.0 ± 0.0 |" in text


def test_a_finished_run_is_not_repeated(accuracy, tmp_path, monkeypatch):
    [job] = accuracy.plan([tmp_path / "base.yaml"], [4], tmp_path / "out")
    finished_run(job.run_dir, 50.0, 50.0, wall=123.0)
    monkeypatch.setattr(accuracy.subprocess, "run", pytest.fail)
    assert accuracy.run_job(job, threads=1, overrides=[]) == 123.0


def test_missing_recipe_is_a_clear_error(accuracy, tmp_path, capsys):
    assert accuracy.main([str(tmp_path / "nope.yaml")]) == 2
    assert "recipe not found" in capsys.readouterr().err


def test_named_sections_are_replaced_in_place_and_leave_the_rest(accuracy, tmp_path):
    doc = tmp_path / "accuracy.md"
    doc.write_text(f"# Title\n\n{accuracy.MARKER}\n\n| cuhk01 |\n")
    accuracy.write_doc(doc, "| market v1 |\n", section="market")
    start, end = accuracy.section_markers("market")
    first = f"# Title\n\n{accuracy.MARKER}\n\n| cuhk01 |\n\n{start}\n\n| market v1 |\n\n{end}\n"
    assert doc.read_text() == first
    doc.write_text(doc.read_text() + "\nText after.\n")
    accuracy.write_doc(doc, "| market v2 |\n", section="market")
    assert doc.read_text() == first.replace("v1", "v2") + "\nText after.\n"
    accuracy.write_doc(doc, "| duke |\n", section="duke")
    assert doc.read_text().count("| market v2 |") == 1 and doc.read_text().endswith(
        f"{accuracy.section_markers('duke')[1]}\n")


def test_the_doc_keeps_its_text_above_the_tables(accuracy, tmp_path):
    doc = tmp_path / "accuracy.md"
    accuracy.write_doc(doc, "| first table |\n")
    assert doc.read_text() == f"{accuracy.MARKER}\n\n| first table |\n"
    doc.write_text("# Title\n\nWhat the tables show.\n\n" + doc.read_text())
    accuracy.write_doc(doc, "| second table |\n")
    assert doc.read_text() == ("# Title\n\nWhat the tables show.\n\n"
                               f"{accuracy.MARKER}\n\n| second table |\n")


def test_commands_carry_the_overrides_and_the_thread_count(accuracy):
    assert accuracy.progreid_command(["evaluate", "run"], ["eval.ten_crop=true"])[-4:] == [
        "evaluate", "run", "--set", "eval.ten_crop=true"]
    assert accuracy.threads_env(3)["OMP_NUM_THREADS"] == "3"


def test_each_set_of_eval_overrides_has_its_own_file(accuracy, tmp_path, monkeypatch):
    """Two protocols of the same runs are tabulated apart; a legacy results-eval.json with the
    same overrides is taken over, one with other overrides left alone."""
    mq, rr = ["eval.multi_query=avg", "eval.metric=cosine"], ["eval.rerank=true"]
    assert accuracy.reeval_name(mq) == accuracy.reeval_name(mq[::-1])
    assert accuracy.reeval_name(mq) != accuracy.reeval_name(rr)
    job = accuracy.plan([tmp_path / "base.yaml"], [0], tmp_path / "out")[0]
    finished_run(job.run_dir, 50.0, 40.0, wall=60.0)
    (job.run_dir / "results-eval.json").write_text(json.dumps({"overrides": mq, "rank1": 61.0}))
    evaluated = []

    def fake_run(command, **kwargs):
        evaluated.append(command[command.index("--set"):])
        return type("Done", (), {"returncode": 0, "stdout": '{"rank1": 70.0}', "stderr": ""})()

    monkeypatch.setattr(accuracy.subprocess, "run", fake_run)
    accuracy.reevaluate(job, 1, mq)
    accuracy.reevaluate(job, 1, rr)
    accuracy.reevaluate(job, 1, rr)  # done once
    assert evaluated == [["--set", "eval.rerank=true"]]
    assert json.loads((job.run_dir / accuracy.reeval_name(mq)).read_text())["rank1"] == 61.0
    assert json.loads((job.run_dir / accuracy.reeval_name(rr)).read_text())["rank1"] == 70.0
    assert not (job.run_dir / "results-eval.json").exists()
