"""Every other process of a home is a client of its live runtime: found from the home, no settings added.

Against a real ``nexus up --headless`` on DuckDB (whose file admits one process: any direct open would be
``StoreLockedError``) and on PostgreSQL: ``nexus query``, ``nexus schedule run daily_report`` then ``nexus
schedule history`` (one history: the gateway's ``job_runs``, which the monitor's panel reads), ``nk.store`` /
``nk.query`` in a Python process, the magics in an IPython shell. Then the same with no runtime running.
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from nexus_kernel.runtime._discovery import RUNTIME_FILE, live_runtime

from .conftest import NOTEBOOKS, Home


def test_nexus_query_prints_the_live_history(live: Home) -> None:
    shown = live.nexus("query", "sensors", "--last", "1h", "--every", "1min")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["stream", "series", "ts", "seq", "value"]
    assert any(line.split()[:2] == ["sensors", "s0000"] for line in lines[1:]), shown.stdout
    raw = live.nexus("query", "sensors", "--last", "10min", "--format", "json", "--limit", "0")
    assert raw.returncode == 0, raw.stderr
    rows = json.loads(raw.stdout)
    assert len(rows) > 10 and {r["series"] for r in rows} == {"s0000", "s0001"}
    bad = live.nexus("query", "sensors", "--last", "1h", "--every", "soon")
    assert bad.returncode == 1 and "not a duration: 'soon'" in bad.stderr  # refused as the store refuses it


def test_a_scheduled_notebook_reads_through_the_runtime_and_its_run_has_one_history(live: Home) -> None:
    added = live.nexus("schedule", "add", "daily_report", "--cron", "0 6 * * *", "-p", "stream=sensors",
                       "--notebook", str(NOTEBOOKS / "daily_report.ipynb"))
    assert added.returncode == 0, added.stderr
    since = (pd.Timestamp.now(tz="UTC") - pd.Timedelta("10min")).isoformat()
    ran = live.nexus("schedule", "run", "daily_report", "-p", f"start={since}", timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = ran.stdout.split(":")[0]
    assert "succeeded" in ran.stdout
    executed = json.loads(open(ran.stdout.split("→")[1].strip()).read())
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "store: RemoteStore" in printed and "SIMULATED" not in printed  # the live points, via the gateway
    history = live.nexus("schedule", "history", "daily_report")
    assert history.returncode == 0 and history.stdout.startswith(
        pd.Timestamp(run_id.split("-")[1]).strftime("%Y-%m-%d %H:%M:%S") + " daily_report succeeded "), history.stdout
    assert not list((live.path / "runs" / "pending").glob("*.json"))  # recorded, not parked
    # the table the monitor's Job runs panel reads: the same run, through the owner
    with live_runtime(live.settings()).client() as client:
        runs = client.job_runs(job="daily_report")
    assert run_id in set(runs["run_id"]) and set(runs["status"]) == {"succeeded"}


def test_nk_store_and_query_in_another_python_reach_the_runtime(live: Home) -> None:
    code = """
import json, nexus_kernel as nk
from nexus_kernel.client import RemoteStoreError
db = nk.store()
out = {"kind": type(db).__name__, "latest": sorted(db.latest("sensors")["series"].tolist()),
       "buckets": len(nk.query("sensors", last="1h", every="1min")), "streams": db.streams(),
       "anomaly_columns": list(db.read("anomalies", stream="sensors", limit=5).columns)}
try:
    db.read("alerts")
except RemoteStoreError as exc:
    out["alerts"] = str(exc)
try:
    db.write(db.query("sensors", last="1min"))
except RemoteStoreError as exc:
    out["write"] = str(exc)
db.close()
print(json.dumps(out))
"""
    done = live.python(code)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])  # the shell echoes its results before
    assert out["kind"] == "RemoteStore" and out["latest"] == ["s0000", "s0001"] and out["buckets"] >= 2
    assert out["streams"] == ["sensors"]
    assert out["anomaly_columns"] == ["stream", "series", "field", "ts", "detector", "score", "is_anomaly", "reason"]
    assert "serves no 'alerts' table" in out["alerts"]
    assert "done by the store's owner, nexus up (pid" in out["write"]


def test_the_magics_in_an_ipython_shell_read_the_live_runtime(live: Home) -> None:
    code = """
import json
from IPython.core.interactiveshell import InteractiveShell
from nexus_kernel import _magics
shell = InteractiveShell.instance()
assert shell.run_cell("%load_ext nexus_kernel").success
status = shell.run_cell("%nexus status")
sql = shell.run_cell("%%nexus_sql\\nselect p.series, count(*) as n from points p where p.field = 'value' "
                     "group by p.series order by p.series")
runs = shell.run_cell("%%nexus_sql\\nselect count(*) as n from job_runs")
_magics.SQL_MAX_ROWS = 5
big = shell.run_cell("%%nexus_sql\\nselect count(*) from points")
print(json.dumps({"status": status.result.to_dict("records"), "sql": sql.result.to_dict("list"),
                  "runs": int(runs.result["n"][0]), "big": str(big.error_in_exec)}, default=str))
"""
    done = live.python(code)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])  # the shell echoes its results before
    sensors = next(r for r in out["status"] if r["name"] == "sensors")
    assert sensors["state"] == "running" and sensors["rate"] > 0 and sensors["records_in"] > 0  # live counters
    assert out["sql"]["series"] == ["s0000", "s0001"] and min(out["sql"]["n"]) > 0
    with live_runtime(live.settings()).client() as client:
        assert out["runs"] == len(client.job_runs(limit=10_000))  # the table the gateway serves, whole
    assert "holds more than 5 rows, too many to fetch" in out["big"]


def test_the_owners_gateway_guards_the_job_history(live: Home) -> None:
    from nexus_kernel.client import NexusError, connect
    from nexus_kernel.gateway import mint_token

    settings = live.settings()
    run = {"run_id": "guarded-1", "job": "guarded", "started_at": "2024-01-01T00:00:00Z",
           "finished_at": "2024-01-01T00:00:01Z", "status": "succeeded", "output": "", "error": "", "params": "{}"}
    with connect(live.gateway, mint_token(settings, "v", "viewer")) as viewer:
        with pytest.raises(NexusError) as refused:
            viewer.record_job_run(run)
        assert refused.value.status == 403
    with connect(live.gateway, mint_token(settings, "s", "admin", streams=["sensors"])) as scoped:
        with pytest.raises(NexusError) as refused:
            scoped.job_runs()
        assert refused.value.status == 403 and "span streams" in refused.value.detail
    with connect(live.gateway, mint_token(settings, "a", "analyst")) as analyst:
        with pytest.raises(NexusError) as invalid:
            analyst.record_job_run({**run, "status": "done"})
        assert invalid.value.status == 422
        assert analyst.record_job_run(run)["recorded"] == 1
        assert analyst.record_job_run(run)["recorded"] == 0  # keyed by run_id: a resend adds nothing
        assert analyst.job_runs(job="guarded")["run_id"].tolist() == ["guarded-1"]


def test_a_runtime_file_is_believed_only_while_its_pid_holds_the_lock(live: Home, tmp_path) -> None:
    from nexus_kernel._home_lock import HomeLock
    from nexus_kernel.config import load_settings

    found = live_runtime(live.settings())
    assert found is not None and found.pid == live.proc.pid and found.gateway == live.gateway
    stale = load_settings(home=tmp_path / "stale", store="duckdb")
    stale.home.mkdir()
    (stale.home / RUNTIME_FILE).write_text(json.dumps({"pid": live.proc.pid, "gateway": live.gateway}))
    assert live_runtime(stale) is None  # lock free: a file left by a killed process
    with HomeLock(stale.home):
        assert live_runtime(stale) is None  # held by another PID than the file names
        (stale.home / RUNTIME_FILE).write_text(json.dumps({"pid": os.getpid(), "gateway": live.gateway}))
        assert live_runtime(stale).gateway == live.gateway
    other = live.settings().model_copy(update={"store": "memory"})
    from nexus_kernel.client import home_store

    with home_store(other) as elsewhere:  # settings naming another store than the owner's: opened here
        assert type(elsewhere).__name__ != "RemoteStore"


def test_with_no_runtime_every_client_opens_the_store_itself(idle: Home, tmp_path) -> None:
    from nexus_kernel.storage import open_store

    stream = f"pumps_{os.getpid()}_{tmp_path.name[-8:]}".replace("-", "_")
    now = pd.Timestamp.now(tz="UTC").floor("s")
    with open_store(idle.settings()) as store:
        store.write(pd.DataFrame({"stream": [stream] * 3, "series": ["a", "a", "b"],
                                  "ts": [now - pd.Timedelta("2min"), now - pd.Timedelta("1min"), now],
                                  "seq": [1, 2, 3], "value": [1.0, 3.0, 5.0]}))
    shown = idle.nexus("query", stream, "--last", "1h", "--every", "1min")
    assert shown.returncode == 0 and shown.stdout.count(stream) == 3, shown.stdout + shown.stderr
    code = f"""
import json, nexus_kernel as nk
from IPython.core.interactiveshell import InteractiveShell
db = nk.store()
shell = InteractiveShell.instance()
shell.run_cell("%load_ext nexus_kernel")
sql = shell.run_cell("%%nexus_sql\\nselect sum(value) as total from points where stream = '{stream}'")
print(json.dumps({{"kind": type(db).__name__, "rows": len(nk.query("{stream}")),
                  "status": shell.run_cell("%nexus status").result.to_dict("records"),
                  "total": float(sql.result["total"][0])}}))
db.close()
"""
    done = idle.python(code)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])  # the shell echoes its results before
    assert out["kind"] != "RemoteStore" and out["rows"] == 3 and out["total"] == 9.0 and out["status"] == []
    if idle.store != "duckdb":
        return  # the runner records on any store alike (the parked-run test below covers it, on DuckDB)
    book = tmp_path / "tiny.ipynb"
    _tiny_notebook(book, stream)
    assert idle.nexus("schedule", "add", "tiny", "--cron", "0 6 * * *", "--notebook", str(book)).returncode == 0
    ran = idle.nexus("schedule", "run", "tiny", timeout=300)
    assert ran.returncode == 0 and "succeeded" in ran.stdout, ran.stdout + ran.stderr
    history = idle.nexus("schedule", "history", "tiny")
    assert " tiny succeeded " in history.stdout and not list((idle.path / "runs" / "pending").glob("*.json"))


def _tiny_notebook(path, stream: str) -> None:
    """A job whose kernel reads the home's store (given as parameters) and fails unless it finds the rows."""
    import nbformat

    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "nexus", "display_name": "Python (nexus)", "language": "python"}
    params = nbformat.v4.new_code_cell('home = ""\nstore = ""')
    params.metadata["tags"] = ["parameters"]
    body = ("import nexus_kernel as nk\n"
            "db = nk.store(nk.load_settings(**{k: v for k, v in (('home', home), ('store', store)) if v}))\n"
            f"assert len(db.query('{stream}')) == 3, db\n"
            "db.close()")
    book.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(book, path)


def test_a_run_is_parked_only_when_the_store_cannot_be_reached_at_all(tmp_path) -> None:
    """An owner serving no gateway (here: this test, holding the home's lock and its DuckDB file, advertised
    as ``nexus up --no-gateway`` advertises itself) leaves a run nowhere to go but ``runs/pending``; the error
    names the owner; the next reachable store takes it. (Not advertised, the owner would be a ``nexus up``
    still starting, which every client waits for, up to a minute.)"""
    import nbformat

    from nexus_kernel._home_lock import HomeLock
    from nexus_kernel.runtime._discovery import advertise
    from nexus_kernel.storage import open_store

    idle = Home(tmp_path / "home", "duckdb", tmp_path)
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "nexus", "display_name": "Python (nexus)", "language": "python"}
    book.cells = [nbformat.v4.new_code_cell("pass")]
    nbformat.write(book, tmp_path / "noop.ipynb")
    assert idle.nexus("schedule", "add", "noop", "--cron", "0 6 * * *", "--notebook",
                      str(tmp_path / "noop.ipynb")).returncode == 0
    with HomeLock(idle.path), open_store(idle.settings()):
        advertise(idle.settings())  # no gateway
        shown = idle.nexus("query", "sensors")
        assert shown.returncode == 1 and f"nexus up (pid {os.getpid()}) owns" in shown.stderr
        ran = idle.nexus("schedule", "run", "noop", timeout=300)
        assert ran.returncode == 0 and "succeeded" in ran.stdout, ran.stdout + ran.stderr
        parked = list((idle.path / "runs" / "pending").glob("*.json"))
        assert len(parked) == 1 and " noop succeeded " in idle.nexus("schedule", "history").stdout
    from nexus_kernel.scheduler import flush_pending

    with open_store(idle.settings()) as store:
        assert flush_pending(store, idle.settings()) == 1
        assert store.read("job_runs")["job"].tolist() == ["noop"]


def test_a_voila_page_of_the_home_reads_the_live_runtime_without_a_token(live: Home) -> None:
    """``open_source`` (what the monitor notebook calls under Voila) finds ``nexus up`` from the home: the
    page is a remote source over its gateway, shows its streams and the job runs the CLI recorded."""
    code = """
import json
from dashboards import open_source
from nexus_kernel.config import load_settings
source = open_source(load_settings())
streams = source.streams()
out = {"mode": source.mode, "streams": sorted(streams["name"]), "states": sorted(set(streams["state"])),
       "series": source.series("sensors"), "runs": len(source.job_runs(limit=50))}
print(json.dumps(out))
"""
    ran = live.nexus("schedule", "add", "voila_probe", "--cron", "0 6 * * *", "--notebook",
                     str(NOTEBOOKS / "daily_report.ipynb"), "-p", "stream=sensors", "--replace")
    assert ran.returncode == 0, ran.stderr
    ran = live.nexus("schedule", "run", "voila_probe", timeout=300)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    done = live.python(code)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["mode"] == "remote"  # not the private embedded fallback
    assert out["streams"] == ["sensors"] and out["states"] == ["running"]
    assert out["series"] == ["s0000", "s0001"]
    assert out["runs"] >= 1
