"""A client of the runtime writes the results it made: the ``retrain`` notebook's model and forecasts.

Against a real ``nexus up --headless`` (DuckDB, whose file admits one process, and PostgreSQL):
``nexus schedule run retrain`` trains, records the new model version and serves forecasts through the
owner's gateway; the model endpoint accepts an artifact only inside the home's model directory (a client
must not make the runtime unpickle a file of its choosing); results are keyed (a resend adds nothing)
and scoped (a credential for another stream, or a viewer, is refused).
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from nexus_kernel.client import NexusError, RemoteStoreError, connect, home_store
from nexus_kernel.gateway import mint_token
from nexus_kernel.runtime._discovery import live_runtime

from .conftest import NOTEBOOKS, Home


def test_the_retrain_notebook_records_its_model_and_forecasts_through_the_runtime(live: Home) -> None:
    added = live.nexus("schedule", "add", "retrain", "--cron", "0 3 * * *", "-p", "stream=sensors",
                       "--notebook", str(NOTEBOOKS / "retrain.ipynb"))
    assert added.returncode == 0, added.stderr
    ran = live.nexus("schedule", "run", "retrain", "-p", "lookback=10min", "-p", "horizon=5", timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "succeeded" in ran.stdout
    executed = json.loads(open(ran.stdout.split("→")[1].strip()).read())
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "SIMULATED" not in printed  # trained on the live points, read through the gateway
    with live_runtime(live.settings()).client() as client:
        models = client.models(stream="sensors")
        forecasts = client.forecasts("sensors", limit=10_000)
    assert len(models) >= 1 and set(models["name"]) == {"sensors:forecast"}
    newest = models.sort_values("version").iloc[-1]
    assert os.path.dirname(newest["artifact"]) == os.path.realpath(live.path / "models")
    assert os.path.isfile(newest["artifact"])
    assert len(forecasts) >= 5 * 2 and set(forecasts["series"]) == {"s0000", "s0001"}  # horizon 5, two series
    assert (forecasts["lo"] <= forecasts["hi"]).all()
    assert forecasts["made_at"].max() >= newest["train_end"]  # served by the model just trained, after its data


def _record(live: Home, artifact: str, version: int = 1, stream: str = "sensors") -> dict:
    return {"name": f"{stream}:guarded", "version": version, "stream": stream, "kind": "ets",
            "created_at": "2024-01-01T00:00:00Z", "train_start": None, "train_end": None,
            "metrics": "{}", "features": "{}", "params": "{}", "artifact": artifact}


def test_a_model_record_may_name_only_a_file_of_the_homes_model_directory(live: Home, tmp_path) -> None:
    models = live.path / "models"
    models.mkdir(exist_ok=True)
    outside = tmp_path / "evil.joblib"
    outside.write_bytes(b"not a model")
    inside = models / "guarded-v1.joblib"
    inside.write_bytes(b"a model")
    (models / "escape.joblib").unlink(missing_ok=True)
    (models / "escape.joblib").symlink_to(outside)
    (models / "folder.joblib").mkdir(exist_ok=True)
    refused = {
        str(outside): "leads out of that directory",
        f"{models}/{'../' * len(models.parts)}{outside.relative_to('/')}": "leads out of that directory",  # '..'

        str(models / "escape.joblib"): "leads out of that directory",                 # a symlink out
        str(models / "folder.joblib"): "not a regular file",
        str(models / "missing.joblib"): "no such file",
        "models/guarded-v1.joblib": "a relative path",
        "/etc/passwd": "leads out of that directory",
    }
    settings = live.settings()
    with connect(live.gateway, mint_token(settings, "a", "analyst")) as analyst:
        for artifact, why in refused.items():
            with pytest.raises(NexusError) as bad:
                analyst.record_model(_record(live, artifact))
            assert bad.value.status == 422 and bad.value.field == "artifact", artifact
            assert "inside the home's model directory" in bad.value.detail and why in bad.value.detail, artifact
        assert analyst.models(stream="sensors").query("name == 'sensors:guarded'").empty  # none was recorded
        sideways = f"{models}/folder.joblib/../guarded-v1.joblib"  # '..' that stays inside: the file itself
        answer = analyst.record_model(_record(live, sideways))
        assert answer == {"name": "sensors:guarded", "version": 1, "recorded": 1,
                          "artifact": str(inside.resolve())}
        assert analyst.record_model(_record(live, str(inside)))["recorded"] == 0  # keyed by name and version
        stored = analyst.models(stream="sensors").query("name == 'sensors:guarded'")
        assert stored["artifact"].tolist() == [str(inside.resolve())]
        with pytest.raises(NexusError) as invalid:
            analyst.record_model({**_record(live, str(inside), 2), "metrics": "[1, 2]"})
        assert invalid.value.status == 422 and invalid.value.field == "metrics"
    with connect(live.gateway, mint_token(settings, "v", "viewer")) as viewer:
        with pytest.raises(NexusError) as forbidden:
            viewer.record_model(_record(live, str(inside), 3))
        assert forbidden.value.status == 403
    with connect(live.gateway, mint_token(settings, "s", "analyst", streams=["other"])) as scoped:
        with pytest.raises(NexusError) as forbidden:
            scoped.record_model(_record(live, str(inside), 3))
        assert forbidden.value.status == 403 and "'sensors'" in forbidden.value.detail


def _forecasts(made_at: str, n: int = 3) -> pd.DataFrame:
    ts = pd.date_range("2030-01-01", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame({"stream": "sensors", "series": "s0000", "field": "value", "model": "probe",
                         "made_at": pd.Timestamp(made_at), "ts": ts, "yhat": [1.0, float("nan"), 3.0][:n],
                         "lo": 0.5, "hi": 3.5, "level": 0.9})


def test_results_append_through_a_remote_store_keyed_and_scoped(live: Home) -> None:
    settings = live.settings()
    store = home_store(settings)
    try:
        assert type(store).__name__ == "RemoteStore"
        rows = _forecasts("2029-12-31T23:00:00Z")
        assert store.append("forecasts", rows) == 3
        assert store.append("forecasts", rows) == 0  # keyed: a resend adds nothing
        back = store.read("forecasts", stream="sensors", start="2030-01-01", series="s0000")
        probe = back[back["model"] == "probe"].reset_index(drop=True)
        assert len(probe) == 3 and pd.isna(probe["yhat"][1]) and probe["yhat"][2] == 3.0  # NaN travels as null
        found = pd.DataFrame({"stream": "sensors", "series": "s0001", "field": "value",
                              "ts": pd.Timestamp("2030-01-01", tz="UTC"), "detector": "probe", "score": 9.5,
                              "is_anomaly": True, "reason": "a test spike"}, index=[0])
        assert store.append("anomalies", found) == 1 and store.append("anomalies", found) == 0
        assert "a test spike" in set(store.read("anomalies", stream="sensors", detector="probe")["reason"])
        elsewhere = pd.DataFrame([{**_record(live, "/etc/passwd", 7), "created_at": pd.Timestamp.now(tz="UTC")}])
        with pytest.raises(ValueError, match="inside the home's model directory.*leads out of that directory"):
            store.append("models", elsewhere)  # what save_model(directory=/elsewhere) would send
        with pytest.raises(RemoteStoreError, match="written by its pipelines.*may append job_runs, models"):
            store.append("alerts", pd.DataFrame())
    finally:
        store.close()
    with connect(live.gateway, mint_token(settings, "s", "analyst", streams=["other"])) as scoped:
        with pytest.raises(NexusError) as forbidden:
            scoped.append_forecasts("sensors", _forecasts("2029-12-31T22:00:00Z"))
        assert forbidden.value.status == 403
    with connect(live.gateway, mint_token(settings, "a", "analyst")) as analyst:
        with pytest.raises(NexusError) as unknown:
            analyst.append_forecasts("sensors", _forecasts("2029-12-31T22:00:00Z").assign(extra=1))
        assert unknown.value.status == 422 and "extra" in str(unknown.value.field)
        too_many = pd.concat([_forecasts("2029-12-31T21:00:00Z", 1)] * 10_001, ignore_index=True)
        with pytest.raises(NexusError) as big:
            analyst.append_forecasts("sensors", too_many)
        assert big.value.status == 422
