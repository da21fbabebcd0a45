"""What every command shares: resume that checks, one writer per directory, status and closing lines."""

import json
import logging

import pytest

from fedcomp.core.lock import RunDirInUse, lock_run_dir
from fedcomp.core.rundir import LEDGER_FILE, SUMMARY_FILE, check_run, load_run
from fedcomp.engines import launch
from fedcomp.engines.launch import config_change, engine_description, execute
from fedcomp.engines.logs import run_logging
from fedcomp.flower.summary import closing_lines
from tests.helpers import run_config

#: The smallest real run: digits, 2 clients, 1 round, on the in-process engine (about 2 s).
TINY = ("task=digits", "partition=iid", "federation.num_clients=2", "federation.num_rounds=1", "engine=inprocess")


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A complete run directory and the lines its run printed."""
    out = tmp_path_factory.mktemp("done")
    lines = []
    summary = execute(run_config(out, *TINY), echo=lines.append)
    return out, lines, summary


def test_status_line_before_round_1_and_closing_lines_from_the_runs_own_summary(done):
    out, lines, summary = done
    assert lines[0].startswith("start: digits, 2 clients (iid, 1,347 examples), model 39.21 kB, compressor none, "
                               "1 rounds; engine inprocess")
    assert lines[0].endswith(f"-> {out}")
    assert lines[1] == f"done: {out}"
    assert summary == json.loads((out / SUMMARY_FILE).read_text())
    assert f"failures 0; wall {summary['wall_time_s']:.1f} s" in lines[-1]


def test_a_complete_run_is_skipped(done):
    out, _, summary = done
    lines = []
    assert execute(run_config(out, *TINY), echo=lines.append) == summary
    assert lines == [f"skip: {out} is already complete"]


@pytest.mark.parametrize("damage", ["garbage summary", "truncated ledger"])
def test_a_damaged_run_is_redone_with_a_line_saying_why(tmp_path, damage):
    cfg = run_config(tmp_path, *TINY)
    execute(cfg, echo=lambda _: None)
    if damage == "garbage summary":
        (tmp_path / SUMMARY_FILE).write_text("{garbage")
        why = "unreadable summary.json"
    else:
        data = (tmp_path / LEDGER_FILE).read_bytes()
        (tmp_path / LEDGER_FILE).write_bytes(data[:100])
        why = f"ledger.parquet has 100 bytes, summary.json recorded {len(data)}"
    lines = []
    execute(cfg, echo=lines.append)
    assert lines[0].startswith(f"redo: {tmp_path}: {why}")
    assert lines[1].startswith("start: ") and check_run(tmp_path) is None


def test_a_run_with_other_settings_is_redone(done, tmp_path):
    out, _, _ = done
    saved = run_config(out, *TINY)
    assert config_change(saved, {**saved, "resume": False, "output_dir": "elsewhere"}) is None
    changed = {**saved, "federation": {**saved["federation"], "num_rounds": 7}}
    assert config_change(saved, changed) == "config.yaml has federation.num_rounds=1, this run asks for 7"


def test_a_directory_in_use_is_refused_before_anything_runs(done):
    out, _, _ = done
    def stamps():
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".lock"}

    before = stamps()
    with lock_run_dir(out), pytest.raises(RunDirInUse, match=str(out)):
        execute(run_config(out, *TINY, "resume=false"), echo=lambda _: None)
    assert stamps() == before and check_run(out) is None


def test_run_logging_keeps_tracebacks_in_the_file_and_one_line_on_the_console(tmp_path, capsys):
    with run_logging(tmp_path) as log_file:
        try:
            raise RuntimeError("deep\nfailure")
        except RuntimeError:
            logging.getLogger("flwr").exception("flower's own record")
            logging.getLogger("fedcomp.flower.strategy").warning("round 3: client 1 failed: \x1b[31mInjectedFault: x\x1b[0m")
    out = capsys.readouterr().out
    assert out == "round 3: client 1 failed: InjectedFault: x\n"
    text = log_file.read_text()
    assert "flower's own record" in text and "Traceback (most recent call last)" in text and "\x1b" not in text


def test_engine_description_says_what_starts():
    cfg = run_config("unused", "engine=simulation", "engine.num_cpus=4", "federation.num_clients=10")
    assert engine_description(cfg) == "engine simulation: starting Ray (4 CPUs, 4 ClientApp actors; about 15 s)"
    cfg = run_config("unused", "engine=simulation", "engine.ray_address=auto")
    assert engine_description(cfg) == "engine simulation: attaching to Ray at auto"


def test_an_engine_error_is_one_line_and_its_traceback_goes_to_run_log(tmp_path, monkeypatch, capsys):
    def crash(cfg):
        raise RuntimeError("the engine broke\nsecond line")

    monkeypatch.setattr(launch, "run_engine", crash)
    with pytest.raises(SystemExit) as exit_info:
        launch.execute_cli(run_config(tmp_path, *TINY))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == f"error: run failed: the engine broke second line (traceback in {tmp_path / 'run.log'})\n"
    assert "Traceback (most recent call last)" in (tmp_path / "run.log").read_text()
    assert check_run(tmp_path).startswith("incomplete run (missing")


def test_the_lesson_rounding_line_only_where_flooring_to_whole_mib_means_something(done):
    out, lines, summary = done
    assert not any("lesson rounding" in line for line in lines)  # a 39 KB model floors to 0 MiB
    pythia = {**summary, "formula": {**summary["formula"], "bytes_down": 56_270_848, "bytes_up": 56_270_848,
                                     "lesson_rounding_mb": 212}}
    shown = closing_lines(pythia, load_run(out).ledger, out)
    assert "  lesson rounding  : 212 MB (model size floored to whole MiB)" in shown
