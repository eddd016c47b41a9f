"""Stream lifecycle through the manager: transitions, refusals, persistence, reconcile."""

from __future__ import annotations

import time

import pytest

from nexus_kernel.engine import Pipeline, StreamManager, StreamStateError, sources


def sim_pipeline(settings, **kw):
    return Pipeline.from_source(sources.simulator(series=2, freq="1s", rate=500, seed=1, **kw),
                                settings=settings).validate().window("1min")


def test_lifecycle_and_every_refusal(settings):
    m = StreamManager(settings)
    m.create("plant", sim_pipeline(settings))
    assert m.status("plant")["state"] == "created"
    for action in ("pause", "resume", "stop"):
        with pytest.raises(StreamStateError, match=f"cannot {action} stream 'plant': it is created"):
            getattr(m, action)("plant")
    assert m.start("plant") == "running"
    with pytest.raises(StreamStateError, match="allowed now: pause, stop"):
        m.start("plant")
    with pytest.raises(StreamStateError, match="cannot delete"):
        m.delete("plant")
    deadline = time.monotonic() + 10
    while m.pipelines["plant"].records_in == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.pipelines["plant"].records_in > 0
    assert m.pause("plant") == "paused"
    assert m.status("plant")["state"] == "paused"
    with pytest.raises(StreamStateError, match="allowed now: resume, stop"):
        m.pause("plant")
    with pytest.raises(StreamStateError, match="a paused stream still holds its source .* stop it first"):
        m.delete("plant")  # the refusal says why, not only what is allowed
    assert m.resume("plant") == "running"
    assert m.stop("plant") == "stopped"
    assert m.pipelines["plant"].state == "stopped"
    assert m.start("plant") == "running"  # a stopped stream can start again
    m.stop("plant")
    m.delete("plant")
    assert m.streams() == {}
    with pytest.raises(StreamStateError, match="no stream named 'plant'"):
        m.start("plant")


def test_names_are_checked_and_unique(settings):
    m = StreamManager(settings)
    for bad in ("", "1abc", "a b", "x;drop", "a" * 80):
        with pytest.raises(StreamStateError, match="invalid stream name"):
            m.create(bad, sim_pipeline(settings))
    m.create("ok", sim_pipeline(settings))
    with pytest.raises(StreamStateError, match="already exists"):
        m.create("ok", sim_pipeline(settings))


def test_registry_survives_a_restart_and_restores_running_streams(settings):
    first = StreamManager(settings)
    first.create("a", sim_pipeline(settings))
    first.create("b", sim_pipeline(settings))
    first.create("c", sim_pipeline(settings))
    first.start("a")
    first.start("b")
    first.pause("b")
    first.shutdown()  # the process goes away; saved states stay as they were

    second = StreamManager(settings)
    assert {k: v["state"] for k, v in second.streams().items()} == {"a": "running", "b": "paused", "c": "created"}
    assert sorted(second.restore()) == ["a", "b"]
    deadline = time.monotonic() + 10
    while second.pipelines["a"].records_in == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second.pipelines["a"].state == "running" and second.pipelines["a"].records_in > 0
    assert second.pipelines["b"].state == "paused"
    assert "c" not in second.pipelines
    second.shutdown()


def test_reconcile_applies_changes_made_by_another_process(settings):
    runner = StreamManager(settings, run=True)
    cli = StreamManager(settings, run=False)  # what the `nexus streams` commands use
    cli.create("x", sim_pipeline(settings))
    cli.start("x")
    runner.reconcile()
    assert runner.pipelines["x"].state == "running"
    cli.pause("x")
    runner.reconcile()
    assert runner.pipelines["x"].state == "paused"
    cli.stop("x")
    runner.reconcile()
    assert runner.pipelines["x"].state == "stopped"
    cli.delete("x")
    runner.reconcile()
    assert "x" not in runner.pipelines


def test_a_failed_stream_is_recorded_as_failed(settings):
    data = settings.home / "data"  # a saved stream reads files only inside the data directories
    data.mkdir(parents=True)
    missing = data / "gone.csv"
    missing.write_text("timestamp,value\n2024-01-01,1\n")
    m = StreamManager(settings)
    m.create("r", Pipeline.from_source(sources.replay(missing), settings=settings).validate())
    missing.unlink()
    m.start("r")
    deadline = time.monotonic() + 5
    while m.pipelines["r"].state != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    m.reconcile()
    entry = m.streams()["r"]
    assert entry["state"] == "failed" and "gone.csv" in entry["error"]
    assert m.streams()["r"]["spec"]["source"]["params"]["path"] == str(missing)  # absolute: any cwd rebuilds it
    assert m.status("r")["last_error"].startswith("source: FileNotFoundError")
    assert m.start("r") == "running"  # a failed stream may be started again (here it fails again)


def test_a_corrupt_registry_gives_a_clear_error(settings):
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.registry_path.write_text("{not json")
    with pytest.raises(StreamStateError, match="corrupt"):
        StreamManager(settings).streams()
