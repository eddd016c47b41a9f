"""The public surface: what ``import nexus_kernel`` offers (lazy names included), the subpackages' ``__all__``,
the PEP 561 marker, the bus topic helpers, and the magics' home."""

from __future__ import annotations

import asyncio
import importlib
import importlib.resources
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

import nexus_kernel as nk
from nexus_kernel.engine import Pipeline, SpecError, sources
from nexus_kernel.storage import MemoryBus, split_topic, topic, topic_pattern

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_SUBPACKAGES = ["engine", "analysis", "storage", "gateway", "client"]
#: public in the module but called by a host, not by analysts: deliberately not in __all__
HOOKS = {"load_ipython_extension"}


# ---- nexus_kernel itself ----------------------------------------------------------------------------------

def test_every_name_in_all_resolves_and_shows_in_dir():
    assert len(nk.__all__) == len(set(nk.__all__)), "a name listed twice in nexus_kernel.__all__"
    missing = [name for name in nk.__all__ if not hasattr(nk, name)]
    assert missing == []
    assert set(nk.__all__) <= set(dir(nk))
    assert set(nk._LAZY) <= set(nk.__all__), "a lazy name missing from __all__"
    assert callable(nk.detect) and callable(nk.forecast) and callable(nk.open_store) and callable(nk.connect)


def test_every_public_object_of_ours_is_listed():
    """A class or function of the package reachable as ``nk.X`` is in __all__ (modules and hooks aside)."""
    unlisted = sorted(
        name for name, value in vars(nk).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name not in HOOKS
        and str(getattr(value, "__module__", "")).startswith("nexus_kernel")
        and name not in nk.__all__
    )
    assert unlisted == []


def test_an_unknown_name_still_raises_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        nk.nope  # noqa: B018


def test_dir_offers_lazy_names_without_importing_them():
    """Tab completion shows ``nk.detect`` at once, and neither it nor ``import nexus_kernel`` loads the
    heavy parts (analysis, the storage package with DuckDB) — the engine imports the bus topic helper lazily."""
    code = (
        "import sys, nexus_kernel as nk\n"
        "names = dir(nk)\n"
        "print(all(n in names for n in nk.__all__))\n"
        "print(sorted(m for m in ('nexus_kernel.analysis', 'nexus_kernel.storage', 'nexus_kernel.client', 'duckdb')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.splitlines() == ["True", "[]"], out.stderr


@pytest.mark.parametrize("package", PUBLIC_SUBPACKAGES)
def test_public_subpackage_all_resolves(package):
    module = importlib.import_module(f"nexus_kernel.{package}")
    assert module.__all__, f"nexus_kernel.{package} has an empty __all__"
    assert len(module.__all__) == len(set(module.__all__)), f"a name listed twice in nexus_kernel.{package}"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


# ---- PEP 561 ----------------------------------------------------------------------------------------------

def test_py_typed_ships():
    assert importlib.resources.files("nexus_kernel").joinpath("py.typed").is_file()
    # the build copies it into the wheel only because pyproject.toml lists it (setuptools package-data)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["nexus_kernel"]


# ---- bus topics -------------------------------------------------------------------------------------------

def test_topic_and_its_inverse():
    assert topic("pumps", "points") == "stream:pumps:points"
    assert split_topic(topic("pumps", "anomalies")) == ("pumps", "anomalies")
    # the kind is what follows the last ':', so a stream name holding ':' comes back whole
    assert split_topic(topic("site:pumps", "points")) == ("site:pumps", "points")


@pytest.mark.parametrize("kind, reason", [("points:raw", "cannot contain ':'"), ("", "non-empty"),
                                          ("p*", "glob character"), (None, "non-empty")])
def test_a_bad_kind_is_refused_with_the_reason(kind, reason):
    with pytest.raises(ValueError, match=reason):
        topic("pumps", kind)


@pytest.mark.parametrize("stream, reason", [("", "non-empty"), ("pump?", "glob character"),
                                            ("p[12]", "glob character")])
def test_a_bad_stream_is_refused_with_the_reason(stream, reason):
    with pytest.raises(ValueError, match=reason):
        topic(stream, "points")


@pytest.mark.parametrize("name", ["other:x:anomalies", "stream:pumps", "stream::points", "stream:pumps:", "pumps"])
def test_split_topic_refuses_what_is_no_stream_topic(name):
    with pytest.raises(ValueError, match="not a stream topic"):
        split_topic(name)


def test_topic_pattern_routes_one_stream_or_one_kind():
    assert topic_pattern("pumps") == "stream:pumps:*"
    assert topic_pattern(kind="anomalies") == "stream:*:anomalies"
    with pytest.raises(ValueError, match="without ':'"):
        topic_pattern("pumps", "a:b")
    frame = pd.DataFrame({"value": [1.0]})
    sent = [topic("pumps", "points"), topic("pumps", "anomalies"), topic("pumps2", "points"),
            topic("boiler", "anomalies")]

    async def main() -> list[list[str]]:
        bus = MemoryBus()
        async with bus.subscribe(topic_pattern("pumps"), maxsize=10) as pumps, \
                bus.subscribe(topic_pattern(kind="anomalies"), maxsize=10) as anomalies:
            for name in sent:
                await bus.publish(name, frame)
            return [[(await sub.get(timeout=1)).topic for _ in range(2)] + [sub.pending]
                    for sub in (pumps, anomalies)]

    assert asyncio.run(main()) == [[sent[0], sent[1], 0], [sent[1], sent[3], 0]]


def test_a_spec_with_a_bad_publish_kind_is_refused_when_built(settings):
    spec = {"source": {"kind": "simulator"}, "steps": [{"kind": "publish", "params": {"topic": "points:raw"}}]}
    with pytest.raises(SpecError, match="cannot contain ':'") as exc:
        Pipeline.from_spec(spec, settings)
    assert exc.value.field == "steps.0"


def test_the_publish_step_publishes_on_the_stream_topic(settings):
    bus = MemoryBus()
    sim = sources.simulator(series=2, freq="1s", rate=None, seed=3, limit=200, start="2024-01-01")
    pipe = Pipeline.from_source(sim, name="pumps", settings=settings).validate().publish(topic="checked")
    pipe.services["bus"] = bus
    pipe.run(timeout=60)
    assert pipe.status()["errors"] == 0, pipe.status()["last_error"]
    published = bus.replay(topic("pumps", "checked"))
    assert published and sum(len(m.frame) for m in published) == 200


# ---- magics -----------------------------------------------------------------------------------------------

def test_the_magics_live_at_the_package_top():
    """``%load_ext nexus_kernel`` reaches them through nexus_kernel._magics; the gateway no longer holds them
    (tests/gateway/test_jupyter.py runs them in a real IPython shell)."""
    magics = importlib.import_module("nexus_kernel._magics")
    assert callable(magics.load_ipython_extension) and callable(magics.nexus) and callable(magics.nexus_sql)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("nexus_kernel.gateway._magics")
