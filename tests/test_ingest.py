"""``harness ingest``: the seed scripts' output folders and plain mmseg work_dirs become runs that
``harness report`` shows beside the reference rows."""
from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from harness.commands import ingest as ingest_cmd
from harness.evidence.ingest import IngestError, ingest
from harness.planning.recipe import Recipe
from harness.results.logs import parse_logs
from harness.store.runs import RUN_ID_PATTERN, RunStore

from support import SHARED_LOGS, run_cli

HERE = Path(__file__).resolve().parent / "fixtures" / "logs"
ASCEND = HERE / "mmseg010_ascend_pspnet_8p_train_0.log"
RESULT = HERE / "PSPNet_bs16_8p_acc.log"
SMOKE = HERE / "own_smoke_cpu_1p"
CPU_1X = SHARED_LOGS / "cpu_mmseg1x_pspnet_r50_workdir"


def seed_output(root: Path, case: str = "PSPNet_bs16_8p_acc", result_text: str | None = None,
                train_text: bytes | None = None) -> Path:
    """``output/PSPNet/0/`` as the seed's train_full_8p.sh leaves it."""
    folder = root / "output" / "PSPNet" / "0"
    folder.mkdir(parents=True)
    (folder / "train_0.log").write_bytes(ASCEND.read_bytes() if train_text is None else train_text)
    text = RESULT.read_text() if result_text is None else result_text
    (folder / f"{case}.log").write_text(text.replace("PSPNet_bs16_8p_acc", case))
    (folder / "ckpt").mkdir()  # the scripts' checkpoint folder: not a run of its own
    return root / "output"


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness")
    ingest_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ingest", *argv])
    return args.func(args)


def runs_in(results: Path) -> list:
    return RunStore(results).all()


def test_seed_output_folder(tmp_path):
    output = seed_output(tmp_path)
    results = tmp_path / "results"
    runs = ingest(output, results)
    assert len(runs) == 1
    run = runs[0]
    assert RUN_ID_PATTERN.match(run.run_id) and "-ingested-seed-PSPNet_bs16_8p_acc-" in run.run_id
    stored = run.work_dir / "seed-0"
    assert sorted(p.name for p in stored.iterdir()) == ["PSPNet_bs16_8p_acc.log", "train_0.log"]
    assert (stored / "train_0.log").read_bytes() == ASCEND.read_bytes()

    recipe = Recipe.model_validate(yaml.safe_load(run.recipe_file.read_text()))
    assert recipe.mode == "accuracy" and recipe.device.kind == "npu" and recipe.device.count == 8
    assert recipe.train.batch_per_device == 16 and recipe.train.iterations == 300
    assert recipe.model.config.endswith("npu-seed.py")
    assert recipe.dataset.root == str((output / "PSPNet" / "0").resolve())
    assert recipe.reference.label == "NPU-8p" and recipe.reference.fps == 117.808  # recipes/full_8p.yaml
    assert run.recipe_source().path == str((output / "PSPNet" / "0").resolve())

    status = run.status().model_dump()
    assert status["state"] == "succeeded" and status["ingested"] is True
    provenance = run.provenance().model_dump()
    assert provenance["ingested_from"] == str((output / "PSPNet" / "0").resolve())
    assert provenance["sha256"]["seed-0/train_0.log"] == hashlib.sha256(ASCEND.read_bytes()).hexdigest()
    assert provenance["seed_result"]["CaseName"] == "PSPNet_bs16_8p_acc"

    result = run.result().model_dump()
    assert result["parse_error"] is None and result["partial"] is False
    assert result["device"] == {"kind": "npu", "count": 8} and result["batch_per_device"] == 16
    assert result["best"] == {"aAcc": 94.8, "mIoU": 77.31, "mAcc": 85.7}  # train_0.log:86
    assert result["final"]["mIoU"] == 77.04
    assert result["fps_seed_definition"] == pytest.approx(117.864)  # 8 x 14.733, train_0.log:50
    assert result["fps"] == pytest.approx(16 * 8 / 1.1804)
    assert {v["metric"]: v["status"] for v in result["verdicts"]} == {
        "fps": "PASS", "aAcc": "PASS", "mIoU": "PASS", "mAcc": "PASS"}
    assert [len(result["train"]), len(result["evaluations"])] == [6, 2]


def test_report_shows_ingested_run_next_to_reference(tmp_path):
    results = tmp_path / "results"
    [run] = ingest(seed_output(tmp_path), results)
    proc = run_cli("report", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    lines = (results / "README.md").read_text().splitlines()
    ref = [line for line in lines if line.startswith("|NPU-8p (reference)|")]
    assert ref and "117.808" in ref[0] and "77.04" in ref[0]
    row = [line for line in lines if run.run_id in line and line.startswith("|NPU-8p ")]
    assert row, "the ingested run is missing from the main table"
    assert "108.438 PASS" in row[0] and "77.31 PASS" in row[0]
    assert lines.index(row[0]) > lines.index(ref[0])  # same table, below the reference rows


@pytest.mark.parametrize("given", ["output", "output/PSPNet", "output/PSPNet/0", "output/PSPNet/0/train_0.log"])
def test_seed_folder_found_from_any_level(tmp_path, given):
    seed_output(tmp_path)
    runs = ingest(tmp_path / given, tmp_path / "results")
    assert len(runs) == 1 and runs[0].result().model_dump()["best"]["mIoU"] == 77.31


@pytest.mark.parametrize("case,count,mode,label", [
    ("PSPNet_bs16_8p_perf", 8, "performance", "NPU-8p"),  # recipes/perf_8p.yaml
    ("PSPNet_bs16_1p_acc", 1, "accuracy", "NPU-1p"),  # recipes/full_1p.yaml
    ("PSPNet_bs16_1p_perf", 1, "performance", "NPU-1p"),  # recipes/perf_1p.yaml
])
def test_seed_modes_pick_their_reference(tmp_path, case, count, mode, label):
    text = RESULT.read_text().replace("RankSize = 8", f"RankSize = {count}")
    [run] = ingest(seed_output(tmp_path, case=case, result_text=text), tmp_path / "results")
    recipe = Recipe.model_validate(yaml.safe_load(run.recipe_file.read_text()))
    assert (recipe.mode, recipe.device.count, recipe.reference.label) == (mode, count, label)
    assert run.result().model_dump()["device"]["count"] == count
    assert case in run.run_id


def test_partial_seed_log_is_failed(tmp_path):
    lines = ASCEND.read_bytes().splitlines(keepends=True)[:72]  # stops after iteration 150
    [run] = ingest(seed_output(tmp_path, train_text=b"".join(lines)), tmp_path / "results")
    status = run.status().model_dump()
    assert status["state"] == "failed" and status["ingested"] is True
    assert status["reason"] == "partial log: stopped at iteration 150 of 300"
    assert run.result().model_dump()["partial"] is True


def test_train_log_alone_needs_devices(tmp_path):
    folder = tmp_path / "output" / "PSPNet" / "3"
    folder.mkdir(parents=True)
    shutil.copyfile(ASCEND, folder / "train_3.log")
    with pytest.raises(IngestError, match="pass --devices"):
        ingest(folder, tmp_path / "results")
    assert not (tmp_path / "results").exists()
    [run] = ingest(folder, tmp_path / "results", devices=8)
    assert "ingested-seed-PSPNet-3" in run.run_id
    assert run.result().model_dump()["fps_seed_definition"] == pytest.approx(117.864)


def test_reingest_is_a_noop(tmp_path, capsys):
    output = seed_output(tmp_path)
    results = tmp_path / "results"
    [first] = ingest(output, results)
    messages: list[str] = []
    assert ingest(output / "PSPNet" / "0", results, on_message=messages.append) == []
    assert messages == [f"{(output / 'PSPNet' / '0').resolve()}: already ingested as {first.run_id}"]
    assert run_command([str(output), "--results", str(results)]) == 0
    assert f"already ingested as {first.run_id}" in capsys.readouterr().out
    assert [r.run_id for r in runs_in(results)] == [first.run_id]


def test_mmseg1x_cpu_workdir(tmp_path):
    results = tmp_path / "results"
    [run] = ingest(CPU_1X, results)
    assert "-ingested-mmseg-cpu_mmseg1x_pspnet_r50_workdir-" in run.run_id
    expected = parse_logs([CPU_1X])
    result = run.result().model_dump()
    assert result["log_format"] == "mmseg1x-scalars+mmseg1x-text"
    assert result["device"] == {"kind": "cpu", "count": 1} and result["batch_per_device"] == 2
    assert result["iterations"] == 40 and result["best"] == expected.best
    assert result["fps"] == pytest.approx(expected.fps)
    recipe = Recipe.model_validate(yaml.safe_load(run.recipe_file.read_text()))
    assert recipe.mode == "accuracy" and recipe.reference.mIoU is None  # no published CPU row
    assert (run.path / recipe.model.config).is_file()  # the run's own vis_data/config.py
    assert run.status().state == "succeeded"
    assert ingest(CPU_1X, results) == []


def test_mmseg1x_work_dir_with_timestamp_folders(tmp_path):
    work_dir = tmp_path / "work_dirs" / "pspnet_r18_smoke"
    shutil.copytree(SMOKE / "20261125_202313", work_dir / "20261125_202313")
    (work_dir / "iter_400.pth").write_bytes(b"not read")
    [run] = ingest(tmp_path / "work_dirs", tmp_path / "results")
    assert "-ingested-mmseg-pspnet_r18_smoke-" in run.run_id
    assert (run.work_dir / "20261125_202313" / "vis_data" / "scalars.json").is_file()
    result = run.result().model_dump()
    # fixtures README: final aAcc 97.55, mIoU 68.62, mAcc 86.72 (scalars.json keeps float32 noise)
    assert result["final"] == pytest.approx({"aAcc": 97.55, "mIoU": 68.62, "mAcc": 86.72}, abs=1e-4)
    assert result["iterations"] == 400 and result["device"]["kind"] == "cpu"


def test_mmseg0x_folder_and_tree_of_sources(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(SHARED_LOGS / "cpu_mmseg030_pspnet_r18", tree / "a" / "cpu_mmseg030_pspnet_r18")
    seed_output(tree / "b")
    (tree / "c").mkdir()
    shutil.copyfile(SHARED_LOGS / "01_mmseg0x_text_pspnet_r50-d8_512x512_20k_voc12aug_20230213_220527.log",
                    tree / "c" / "gpu_run.log")
    runs = ingest(tree, tmp_path / "results")
    names = sorted(r.run_id.split("-", 1)[1].rsplit("-", 1)[0] for r in runs)
    assert names == ["ingested-mmseg-c", "ingested-mmseg-cpu_mmseg030_pspnet_r18", "ingested-seed-PSPNet_bs16_8p_acc"]
    gpu = next(r for r in runs if "-ingested-mmseg-c-" in r.run_id)
    recipe = Recipe.model_validate(yaml.safe_load(gpu.recipe_file.read_text()))
    assert recipe.device.kind == "gpu" and recipe.reference.label == "mmsegmentation"  # gpu_full_8p published
    assert gpu.result().model_dump()["best"]["mIoU"] == 58.09


def test_mmseg0x_json_only_folder(tmp_path):
    folder = tmp_path / "work_dir"
    folder.mkdir()
    shutil.copyfile(SHARED_LOGS / "cpu_mmseg030_pspnet_r18" / "20261125_185649.log.json",
                    folder / "20261125_185649.log.json")
    [run] = ingest(folder, tmp_path / "results")
    result = run.result().model_dump()
    assert result["parse_error"] is None and result["log_format"] == "mmseg0x-json"
    assert result["best"] == parse_logs([folder]).best and result["device"]["kind"] == "cpu"
    assert run.status().state == "succeeded"
    # stored under its own name: nothing is renamed to look like a text log
    assert [p.name for p in run.work_dir.rglob("*") if p.is_file()] == ["20261125_185649.log.json"]


def test_long_folder_names_fit_the_run_id(tmp_path):
    folder = tmp_path / ("x" * 100 + " with spaces & symbols")
    shutil.copytree(SMOKE / "20261125_202313", folder)
    [run] = ingest(folder, tmp_path / "results")
    assert RUN_ID_PATTERN.match(run.run_id)
    assert RunStore(tmp_path / "results").get(run.run_id) == run


@pytest.mark.parametrize("make", ["missing", "empty", "no_logs", "corrupt", "binary"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, make):
    target = tmp_path / "in"
    if make != "missing":
        target.mkdir()
    if make == "no_logs":
        (target / "notes.txt").write_text("hello\n")
    elif make == "corrupt":
        seed_output(target, result_text="Network = PSPNet\nRankSize = eight\nBatchSize = 16\n")
    elif make == "binary":
        seed_output(target, train_text=b"\x00\x01\x02binary")
    results = tmp_path / "results"
    assert run_command([str(target), "--results", str(results)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness ingest: error: ")
    assert str(target) in lines[0]
    assert not results.exists()


def test_one_bad_path_of_several_writes_nothing(tmp_path):
    output = seed_output(tmp_path)
    results = tmp_path / "results"
    assert run_command([str(output), str(tmp_path / "nope"), "--results", str(results)]) == 2
    assert runs_in(results) == []


def test_cli_end_to_end(tmp_path):
    output = seed_output(tmp_path)
    results = tmp_path / "results"
    proc = run_cli("ingest", str(output), "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    assert "ingested as " in line and "best mIoU 77.31" in line
    # ingest records the run, so it draws its plots (the report never does)
    [run] = runs_in(results)
    assert sorted(p.name for p in (run.path / "plots").glob("*.png")) == ["loss.png", "miou.png", "throughput.png"]
    proc = run_cli("ingest", str(tmp_path / "nope"), "--results", str(results))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--devices" in run_cli("ingest", "--help").stdout
