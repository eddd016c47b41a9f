"""The notebook scheduler: definitions, runs, failures that keep their notebook, no overlap, firing, CLI."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from click.testing import CliRunner

from nexus_kernel.config import load_settings
from nexus_kernel.scheduler import JobError, NotebookScheduler, read_history, run_notebook
from nexus_kernel.scheduler._cli import schedule


def _notebook(path: Path, body: str) -> Path:
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "nexus", "display_name": "Python (nexus)", "language": "python"}
    params = nbformat.v4.new_code_cell("value = 1\noutput = ''")
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, nbformat.v4.new_code_cell("print('first cell ran', value)"), nbformat.v4.new_code_cell(body)]
    nbformat.write(book, path)
    return path


@pytest.fixture
def settings(home: Path):
    return load_settings(home=home, store="duckdb")


def test_run_records_success_with_output_and_injected_parameters(settings, tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "ok.ipynb", "open(output, 'w').write(str(value * 2))")
    row = run_notebook("ok", nb, {"value": 21}, settings)
    assert row["status"] == "succeeded", row["error"]
    out = Path(row["output"])
    assert out.parent == settings.runs_dir / "ok" and out.exists()
    assert Path(out.with_suffix(".html")).read_text() == "42"  # 'output' filled in by the runner
    history = read_history(settings, job="ok")
    assert list(history["status"]) == ["succeeded"] and history["params"].iloc[0].count('"value": 21') == 1


def test_failed_run_keeps_its_notebook_and_names_the_failing_cell(settings, tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "bad.ipynb", "raise ValueError('sensor table is empty')")
    row = run_notebook("bad", nb, {}, settings)
    assert row["status"] == "failed"
    assert "ValueError: sensor table is empty" in row["error"] and "raise ValueError" in row["error"]
    assert "cell 4 (index 3)" in row["error"]  # parameters, injected parameters, print, raise
    kept = nbformat.read(row["output"], as_version=4)
    assert any(o.get("output_type") == "error" for c in kept.cells for o in c.get("outputs", []))
    assert "first cell ran" in str(kept.cells)  # the cells before the failure kept their outputs
    assert read_history(settings, job="bad")["status"].tolist() == ["failed"]


def test_two_runs_of_one_job_never_overlap(settings, tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "j.ipynb", "pass")
    folder = settings.runs_dir / "j"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "a+") as held:  # another process's run in progress
        fcntl.flock(held, fcntl.LOCK_EX)
        row = run_notebook("j", nb, {}, settings)
    assert row["status"] == "skipped" and "still running" in row["error"]
    assert run_notebook("j", nb, {}, settings)["status"] == "succeeded"  # lock released: runs again
    assert sorted(read_history(settings, job="j")["status"]) == ["skipped", "succeeded"]


def test_history_parked_while_the_store_is_owned_elsewhere_is_not_lost(settings, tmp_path: Path) -> None:
    from nexus_kernel.storage import open_store

    nb = _notebook(tmp_path / "p.ipynb", "pass")
    owner = open_store(settings)  # DuckDB: one owner; in a second process this would be StoreLockedError
    owner.close()
    pending = settings.runs_dir / "pending"
    pending.mkdir(parents=True)
    row = run_notebook("p", nb, {}, load_settings(home=settings.home, store="duckdb"))
    (pending / "x.json").write_text(
        '{"run_id": "p-parked", "job": "p", "started_at": "2024-01-01T00:00:00Z", "finished_at": '
        '"2024-01-01T00:00:01Z", "status": "succeeded", "output": "", "error": "", "params": "{}"}')
    history = read_history(settings, job="p")
    assert set(history["run_id"]) == {row["run_id"], "p-parked"}
    run_notebook("p", nb, {}, settings)  # a run that can open the store moves parked rows in
    assert not list(pending.glob("*.json"))
    store = open_store(settings)
    assert "p-parked" in set(store.read("job_runs", job="p")["run_id"])
    store.close()


def test_scheduler_definitions_persist_and_jobs_fire(settings, tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "tick.ipynb", "pass")
    with NotebookScheduler(settings) as jobs:
        job = jobs.add("tick", cron="0 6 * * *", params={"value": 3}, notebook=nb)
        assert job["next_run"].hour == 6 and job["params"] == {"value": 3}
        with pytest.raises(JobError, match="already exists"):
            jobs.add("tick", cron="0 6 * * *", notebook=nb)
        with pytest.raises(JobError, match="bad cron"):
            jobs.add("other", cron="61 * * * *", notebook=nb)
    with NotebookScheduler(settings, poll=0.5) as jobs:  # a new process sees the saved definition
        assert [j["name"] for j in jobs.jobs()] == ["tick"]
        jobs._scheduler.modify_job("tick", next_run_time=pd.Timestamp.now(tz="UTC").to_pydatetime())
        jobs.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and read_history(settings, job="tick").empty:
            time.sleep(0.5)
        runs = read_history(settings, job="tick")
        assert runs["status"].tolist() == ["succeeded"]
        jobs.remove("tick")
        assert jobs.jobs() == []


def test_cli_add_list_run_history_remove(settings, tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "cli.ipynb", "assert value == 5, value")
    runner = CliRunner()

    def call(*args: str):
        return runner.invoke(schedule, list(args), obj=settings, catch_exceptions=False)

    added = call("add", "cli", "--cron", "0 6 * * *", "-p", "value=5", "--notebook", str(nb))
    assert added.exit_code == 0 and "next run" in added.output
    assert "cli\t0 6 * * *" in call("list").output
    ran = call("run", "cli")
    assert ran.exit_code == 0 and "succeeded" in ran.output
    failed = call("run", "cli", "-p", "value=6")
    assert failed.exit_code == 1 and "AssertionError: 6" in failed.output
    shown = call("history", "cli").output.splitlines()
    assert " cli failed " in shown[0] and "AssertionError: 6" in shown[1] and " cli succeeded " in shown[2]
    assert call("remove", "cli").exit_code == 0
    assert call("remove", "cli").exit_code == 1
    bad = call("add", "x", "--cron", "0 6 * * *", "-p", "novalue", "--notebook", str(nb))
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
