"""A stream spec from the network is data: steps and functions come from registries, files from the
data directories, and no error carries a file's content.

Findings reproduced: ``apply`` with an import path made the server write any file
(``pandas:DataFrame.to_csv`` + ``path_or_buf``); a ``replay`` source read any server file and its first
line came back in ``last_error``, which viewers read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from nexus_kernel.client import connect
from nexus_kernel.engine import (Pipeline, Predicate, SpecError, StreamManager, Transform, TransformError, sources,
                                 transforms)
from nexus_kernel.engine._transforms import make_transform
from nexus_kernel.records import Schema, Validator

OS_RELEASE = Path("/etc/os-release")


def _headers(gw: Any, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token(role)}"}


def _create(gw: Any, body: dict[str, Any], role: str = "analyst") -> httpx.Response:
    return httpx.post(f"{gw.url}/api/streams", json=body, headers=_headers(gw, role), timeout=30)


def _wait_for(gw: Any, name: str, records: int, timeout: float = 30) -> dict[str, Any]:
    """The stream's status row (as a viewer reads it) once it took ``records`` records or failed."""
    deadline = time.monotonic() + timeout
    while True:
        row = httpx.get(f"{gw.url}/api/streams/{name}", headers=_headers(gw, "viewer"), timeout=10).json()
        if row["state"] == "failed" or row["records_in"] >= records or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def _first_line(path: Path) -> str:
    return path.read_text().splitlines()[0]


# -- apply / filter: registered names only ---------------------------------------------------------

def test_the_file_writing_apply_attack_is_refused_over_rest_and_writes_nothing(gw, tmp_path):
    target = tmp_path / "written-by-the-server.csv"
    attack = {"name": "pwn", "start": True,
              "source": {"kind": "simulator", "params": {"series": 1, "rate": None, "limit": 5}},
              "steps": [{"kind": "apply", "params": {"func": "pandas:DataFrame.to_csv", "path_or_buf": str(target)}}]}
    r = _create(gw, attack)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == "steps.0"
    assert "registered transform" in body["detail"] and "import paths" in body["detail"]
    # an import path given where a transform name goes is an unknown name, not an import
    attack["steps"][0]["params"] = {"transform": "pandas:DataFrame.to_csv", "path_or_buf": str(target)}
    r = _create(gw, attack)
    assert r.status_code == 422 and "unknown transform 'pandas:DataFrame.to_csv'" in r.json()["detail"]
    time.sleep(0.3)  # had a pipeline started, its first batch would have landed by now
    assert not target.exists()
    assert "pwn" not in gw.services.manager.streams()


def test_the_same_attack_through_patch_is_refused(gw, tmp_path):
    target = tmp_path / "patched.csv"
    ok = {"name": "plant", "source": {"kind": "simulator", "params": {"series": 1, "rate": None, "limit": 5}}}
    assert _create(gw, ok).status_code == 201
    r = httpx.patch(f"{gw.url}/api/streams/plant", headers=_headers(gw, "analyst"), timeout=30,
                    json={"steps": [{"kind": "apply", "params": {"func": "pandas:DataFrame.to_csv",
                                                                 "path_or_buf": str(target)}}]})
    assert r.status_code == 422 and r.json()["field"] == "steps.0"
    assert gw.services.manager.streams()["plant"]["spec"]["steps"] == []  # the valid stream is kept as it was
    assert not target.exists()


@pytest.mark.parametrize("query", ["value > 3", "@pd.io.common.os.system('true')", "index.__class__"])
def test_filter_query_strings_are_refused(gw, query):
    r = _create(gw, {"name": "q", "source": {"kind": "simulator"},
                     "steps": [{"kind": "filter", "params": {"predicate": query}}]})
    assert r.status_code == 422 and r.json()["field"] == "steps.0"
    assert "query strings are not accepted" in r.json()["detail"]


def test_a_saved_registry_with_an_import_path_is_refused_when_started(settings, tmp_path):
    target = tmp_path / "from-streams-json.csv"
    settings.home.mkdir(parents=True)
    entry = {"state": "created", "created_at": 0, "updated_at": 0,
             "spec": {"name": "old", "source": {"kind": "simulator", "params": {"series": 1, "rate": None,
                                                                                  "limit": 5}},
                      "steps": [{"kind": "apply", "params": {"func": "pandas:DataFrame.to_csv",
                                                             "path_or_buf": str(target)}}]}}
    settings.registry_path.write_text(json.dumps({"version": 1, "streams": {"old": entry}}))
    manager = StreamManager(settings)
    with pytest.raises(SpecError, match="registered transform"):
        manager.start("old")
    assert not target.exists()


def test_in_process_callables_run_but_cannot_be_saved(settings):
    seen: list[int] = []
    pipe = (Pipeline.from_source(sources.simulator(series=1, rate=None, limit=20, seed=1), settings=settings)
            .validate().apply(lambda b: seen.append(len(b)) or b).collect())
    pipe.run(timeout=30)
    assert sum(seen) == 20 and len(pipe.results()) == 20  # in a notebook, code is the user's own
    with pytest.raises(TypeError, match="register it as a transform"):
        StreamManager(settings).create("mine", Pipeline.from_source(sources.simulator(), settings=settings)
                                       .apply(lambda b: b))
    assert StreamManager(settings).streams() == {}


def test_a_registered_transform_and_predicate_run_end_to_end_over_rest(gw):
    data = gw.settings.home / "data"
    data.mkdir(parents=True)
    ts = pd.date_range("2024-01-01", periods=40, freq="1s", tz="UTC")
    pd.DataFrame({"ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "series": np.where(np.arange(40) % 2, "b", "a"),
                  "value": np.arange(40, dtype=float)}).to_csv(data / "plant.csv", index=False)
    body = {"name": "plant", "start": True,
            "source": {"kind": "replay", "params": {"path": "plant.csv", "time": "ts", "series": "series"}},
            "steps": [{"kind": "validate", "params": {}},
                      {"kind": "apply", "params": {"transform": "scale", "factor": 10, "offset": 1}},
                      {"kind": "filter", "params": {"predicate": "series_in", "series": ["b"]}},
                      {"kind": "store", "params": {}}]}
    r = _create(gw, body)
    assert r.status_code == 201, r.text
    row = _wait_for(gw, "plant", records=40)
    assert row["records_in"] == 40 and row["errors"] == 0 and row["last_error"] is None, row
    deadline = time.monotonic() + 10
    got = connect(gw.url, token=gw.token("viewer")).query("plant")
    while len(got) < 20 and time.monotonic() < deadline:  # the store write follows the count
        time.sleep(0.05)
        got = connect(gw.url, token=gw.token("viewer")).query("plant")
    assert set(got["series"]) == {"b"}
    assert sorted(got["value"]) == [i * 10.0 + 1 for i in range(1, 40, 2)]


# -- file sources: data directories only ----------------------------------------------------------

def test_replay_of_a_system_file_is_refused_over_rest(gw):
    first = _first_line(OS_RELEASE)
    for path in (str(OS_RELEASE), "../../../../../../etc/os-release", "data/../../../etc/os-release"):
        r = _create(gw, {"name": "leak", "start": True,
                         "source": {"kind": "replay", "params": {"path": path, "time": "nope"}}})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "source.params.path"
        assert first not in r.text
    listed = httpx.get(f"{gw.url}/api/streams", headers=_headers(gw, "viewer"), timeout=10)
    assert first not in listed.text and "leak" not in listed.text


def test_a_symlink_inside_a_data_dir_pointing_outside_is_refused(gw):
    data = gw.settings.home / "data"
    data.mkdir(parents=True)
    (data / "innocent.csv").symlink_to(OS_RELEASE)
    (data / "sub").symlink_to("/etc", target_is_directory=True)
    for path in ("innocent.csv", str(data / "innocent.csv"), "sub/os-release"):
        r = _create(gw, {"name": "leak", "source": {"kind": "replay", "params": {"path": path, "time": "x"}}})
        assert r.status_code == 422 and "outside the data directories" in r.json()["detail"], path
        assert _first_line(OS_RELEASE) not in r.text


def test_a_symlink_swapped_in_after_the_spec_was_accepted_is_refused_at_open(settings):
    data = settings.home / "data"
    data.mkdir(parents=True)
    path = data / "pumps.csv"
    path.write_text("timestamp,value\n2024-01-01T00:00:00Z,1\n")
    pipe = Pipeline.from_spec({"source": {"kind": "replay", "params": {"path": "pumps.csv"}}}, settings).collect()
    path.unlink()
    path.symlink_to(OS_RELEASE)
    pipe.run(timeout=10)
    assert pipe.state == "failed" and "outside the data directories" in pipe.last_error
    assert _first_line(OS_RELEASE) not in pipe.last_error and pipe.records_in == 0


def test_the_data_dirs_setting_adds_directories(tmp_path):
    from nexus_kernel.config import load_settings

    extra = tmp_path / "shared"
    extra.mkdir()
    (extra / "feed.csv").write_text("timestamp,value\n2024-01-01T00:00:00Z,1\n")
    spec = {"source": {"kind": "replay", "params": {"path": str(extra / "feed.csv")}}}
    with pytest.raises(SpecError, match="outside the data directories"):
        Pipeline.from_spec(spec, load_settings(home=tmp_path / "home"))
    pipe = Pipeline.from_spec(spec, load_settings(home=tmp_path / "home", data_dirs=[extra])).collect()
    pipe.run(timeout=10)
    assert pipe.state == "stopped" and len(pipe.results()) == 1


def test_in_process_replay_stays_free_but_cannot_be_saved(settings):
    source = sources.replay(OS_RELEASE, time="NAME")  # a notebook user reads what they can read
    assert source.path == OS_RELEASE
    with pytest.raises(SpecError, match="outside the data directories"):
        StreamManager(settings).create("mine", Pipeline.from_source(source, settings=settings))


@pytest.mark.parametrize("content, expected", [
    ("MARKER_alpha,MARKER_beta\n2024-01-01,1\n", "time column 'timestamp' not in leaky.csv"),
    ("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:01Z,2,MARKER_gamma\n",
     "a row has 3 columns where the header has 2"),
    ("timestamp,value\n" + "2024-01-01T00:00:00Z,1\n" * 3 + "2024-01-01T00:00:01Z,MARKER_delta\n",
     None),  # a bad value is a dead letter of the stream's own data, not an error
])
def test_replay_errors_name_the_problem_and_never_quote_the_file(gw, content, expected):
    data = gw.settings.home / "data"
    data.mkdir(parents=True)
    (data / "leaky.csv").write_text(content)
    r = _create(gw, {"name": "leaky", "start": True, "source": {"kind": "replay", "params": {"path": "leaky.csv"}},
                     "steps": [{"kind": "validate", "params": {}}]})
    assert r.status_code == 201, r.text
    row = _wait_for(gw, "leaky", records=4)
    if expected is None:
        assert row["state"] != "failed" and row["dead_letters"] == 1 and row["last_error"] is None, row
        return
    assert row["state"] == "failed" and expected in row["last_error"], row
    for path in ("/api/streams", "/api/streams/leaky", "/api/streams/leaky/status"):
        answer = httpx.get(f"{gw.url}{path}", headers=_headers(gw, "viewer"), timeout=10).text
        assert "MARKER" not in answer, path
    assert "MARKER" not in gw.settings.registry_path.read_text()


def test_a_parquet_file_that_is_not_parquet_gives_our_words(settings):
    data = settings.home / "data"
    data.mkdir(parents=True)
    (data / "fake.parquet").write_text("MARKER_epsilon,not parquet at all\n")
    pipe = Pipeline.from_spec({"source": {"kind": "replay", "params": {"path": "fake.parquet"}}}, settings)
    pipe.run(timeout=10)
    assert pipe.state == "failed" and "fake.parquet: the file cannot be read as Parquet" in pipe.last_error
    assert "MARKER" not in pipe.last_error


@pytest.mark.parametrize("url, reason", [
    ("unix:///var/run/redis.sock", "scheme 'unix' is not allowed"),
    ("redis://127.0.0.1:6379/0?ssl_ca_certs=/etc/os-release", "query options ['ssl_ca_certs']"),
    ("rediss://127.0.0.1:6379/0?ssl_certfile=/etc/os-release&ssl_keyfile=/etc/os-release", "are not allowed"),
])
def test_redis_urls_in_specs_reach_no_files_or_local_sockets(gw, url, reason):
    r = _create(gw, {"name": "r", "source": {"kind": "redis", "params": {"url": url}}})
    assert r.status_code == 422 and r.json()["field"] == "source.params.url" and reason in r.json()["detail"]


def test_a_replay_spec_must_name_a_data_file(settings):
    data = settings.home / "data"
    (data / "folder.csv").mkdir(parents=True)
    (data / "notes.txt").write_text("x")
    for path, reason in (("folder.csv", "not a regular file"), ("notes.txt", "is not a .csv"),
                         ("absent.csv", "is not in the data directories"), ("", "must be a file path")):
        with pytest.raises(SpecError, match=reason):
            Pipeline.from_spec({"source": {"kind": "replay", "params": {"path": path}}}, settings)


# -- the transform registry: every member, built-in or from an entry point -------------------------

def _validated_batch() -> pd.DataFrame:
    raw = pd.DataFrame({"series": ["a", "b", "a", "c", "b", "a"],
                        "ts": pd.date_range("2024-01-01", periods=6, freq="1s", tz="UTC"),
                        "value": [0.5, 2.0, 3.0, 9.0, -4.0, np.nan], "other": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    good, _ = Validator(Schema(stream="t"))(raw.iloc[:5])
    return good


@pytest.mark.parametrize("name", transforms.names())
def test_transform_conformance(name, settings):
    member = transforms.get(name)
    assert issubclass(member, Transform) and member.name == name and member.__doc__
    batch = _validated_batch()
    before = batch.copy(deep=True)
    transform = make_transform(name, **member.example)
    out = transform(batch)
    pd.testing.assert_frame_equal(batch, before)  # the input is never changed
    assert isinstance(out, pd.DataFrame) and {"stream", "series", "ts", "seq"} <= set(out.columns)
    if issubclass(member, Predicate):
        mask = transform.mask(batch)
        assert mask.dtype == bool and len(mask) == len(batch)
        pd.testing.assert_frame_equal(out, batch[mask.to_numpy()])
    else:
        assert len(out) == len(batch)
    spec = transform.spec()
    assert json.loads(json.dumps(spec)) == spec and spec.pop("transform") == name
    pd.testing.assert_frame_equal(make_transform(name, **spec)(batch), out)  # the spec rebuilds it
    with pytest.raises(TransformError, match=f"transform '{name}': bogus"):
        make_transform(name, **member.example, bogus=1)
    # the member works from a spec, as apply (and as filter when it is a predicate)
    step = {"kind": "filter", "params": {"predicate": name, **member.example}} if issubclass(member, Predicate) \
        else {"kind": "apply", "params": {"transform": name, **member.example}}
    pipe = Pipeline.from_spec({"source": {"kind": "iterable", "params": {"data": []}}, "steps": [step]}, settings)
    assert pipe.spec()["steps"] == [step]


def test_builtin_transforms_compute_what_they_say():
    batch = _validated_batch()
    assert make_transform("scale", factor=2, offset=1)(batch)["value"].tolist() == [2.0, 5.0, 7.0, 19.0, -7.0]
    assert make_transform("scale", fields=["absent"], factor=3)(batch).equals(batch)  # absent fields: left alone
    assert make_transform("clip", lower=0, upper=3)(batch)["value"].tolist() == [0.5, 2.0, 3.0, 3.0, 0.0]
    assert make_transform("clip", fields=["value", "other"], upper=2)(batch)["other"].tolist() == [1, 2, 2, 2, 2]
    renamed = make_transform("rename", mapping={"value": "reading"})(batch)
    assert "reading" in renamed.columns and "value" not in renamed.columns
    with pytest.raises(ValueError, match="already has such a field"):
        make_transform("rename", mapping={"value": "other"})(batch)
    assert "other" not in make_transform("drop_fields", fields=["other"])(batch).columns
    assert make_transform("series_in", series=["a", "c"])(batch)["series"].astype(str).tolist() == ["a", "a", "c"]
    assert make_transform("series_not_in", series=["a"])(batch)["series"].astype(str).tolist() == ["b", "c", "b"]
    assert make_transform("value_between", lower=0, upper=3)(batch)["value"].tolist() == [0.5, 2.0, 3.0]
    assert make_transform("value_between", lower=0, upper=3, inclusive=False)(batch)["value"].tolist() == [0.5, 2.0]
    assert make_transform("value_between", upper=0)(batch)["value"].tolist() == [-4.0]
    raw = batch.assign(value=batch["value"].astype(object))
    with pytest.raises(TypeError, match="put validate before"):
        make_transform("scale", factor=2)(raw)


@pytest.mark.parametrize("name, params, reason", [
    ("scale", {"factor": "ten"}, "factor: Input should be a valid number"),
    ("scale", {"factor": float("inf")}, "factor: Input should be a finite number"),
    ("scale", {"fields": ["ts"]}, "'ts' is a key column"),
    ("scale", {"fields": []}, "fields: List should have at least 1 item"),
    ("clip", {}, "give lower, upper or both"),
    ("clip", {"lower": 3, "upper": 1}, "lower must not exceed upper"),
    ("rename", {"mapping": {"a": "x", "b": "x"}}, "same new name"),
    ("rename", {"mapping": {"value": "series"}}, "'series' is a key column"),
    ("series_in", {"series": []}, "series: List should have at least 1 item"),
    ("value_between", {"lower": 2, "upper": 1}, "lower must not exceed upper"),
])
def test_transform_params_are_validated_with_clear_reasons(name, params, reason):
    with pytest.raises(TransformError) as exc:
        make_transform(name, **params)
    assert reason in str(exc.value) and str(exc.value).startswith(f"transform '{name}'")
    assert "ten" not in str(exc.value)  # our words and field names, not the values given


def test_a_transform_from_an_entry_point_is_found(monkeypatch, tmp_path, settings):
    """Third-party transforms arrive through the ``nexus_kernel.transforms`` entry-point group: here an
    installed distribution (a dist-info folder on sys.path) that importlib.metadata really discovers."""
    (tmp_path / "nexus_negate.py").write_text(
        "import pandas as pd\n"
        "from nexus_kernel.engine import Transform\n\n\n"
        "class Negate(Transform):\n"
        "    \"\"\"Negate ``value``.\"\"\"\n\n"
        "    name = 'negate'\n\n"
        "    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:\n"
        "        return batch.assign(value=-batch['value'])\n")
    info = tmp_path / "nexus_negate-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nexus-negate\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nexus_kernel.transforms]\nnegate = nexus_negate:Negate\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(transforms, "_members", dict(transforms._members))  # forget it after the test
    monkeypatch.setattr(transforms, "_entry_points_loaded", False)
    assert "negate" in transforms.names()
    pipe = Pipeline.from_spec({"source": {"kind": "iterable", "params": {"data": []}},
                               "steps": [{"kind": "apply", "params": {"transform": "negate"}}]}, settings)
    assert pipe.steps[0](_validated_batch())["value"].tolist() == [-0.5, -2.0, -3.0, -9.0, 4.0]


def test_a_spec_cannot_ask_the_simulator_for_unbounded_memory(gw):
    for params in ({"series": 10**9}, {"series": 2, "batch_size": 10**12}, {"series": "many"}):
        r = _create(gw, {"name": "huge", "source": {"kind": "simulator", "params": params}})
        assert r.status_code == 422, (params, r.text)
        assert "simulator" in r.json()["detail"] and "whole number from 1 to" in r.json()["detail"]
    assert "huge" not in gw.services.manager.streams()
    at_bound = {"series": 3, "batch_size": 1_000_000, "rate": None, "limit": 6}
    assert _create(gw, {"name": "fine", "source": {"kind": "simulator", "params": at_bound}}).status_code == 201


def test_rename_cannot_mint_a_name_the_validator_would_refuse():
    for bad in ("v\x00", "v\u202e", "x" * 257):
        with pytest.raises(TransformError, match="field name|at most 256 characters"):
            make_transform("rename", mapping={"value": bad})
    ok = make_transform("rename", mapping={"value": "température"})
    assert list(ok(pd.DataFrame({"series": ["a"], "value": [1.0]})).columns) == ["series", "température"]
