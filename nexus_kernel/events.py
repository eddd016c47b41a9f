"""Records, their validation, and the dead-letter queue.

A *record* is one observation: ``stream``, ``series`` (the series key), ``ts`` (event time, timezone-aware
UTC), ``seq`` (a per-source sequence number), one or more numeric *fields*, and optional ``attrs``
(a JSON object, kept as its JSON text). Records travel in micro-batches: a pandas DataFrame with one row
per record and those columns — the *batch contract* every source, step, sink and store shares::

    stream: str   series: str   ts: datetime64[ns, UTC]   seq: int64   <field>...: float64   [attrs: str]

``stream`` and ``series`` are text: a string column, or a categorical of strings — what the validator
emits, because grouping by a categorical is many times cheaper on the hot path.

:class:`Validator` turns a raw batch (any dtypes: strings for times, objects for values) into a clean
batch, vectorized over the whole frame. Bad rows are split off — never dropped, never raised — into a
dead-letter frame that keeps the original payload and says why:

=====================  ==============================================================
reason                 meaning
=====================  ==============================================================
``missing_time``       no event time
``bad_time``           an event time that cannot be parsed
``missing_series``     no series key
``unknown_series``     series not declared by a closed schema
``non_numeric``        a field value that is not a number
``not_finite``         a field value that is NaN, missing or infinite
``late``               event time behind the series' watermark by more than the allowed lateness
``oversized_attrs``    attributes whose JSON is larger than the limit
``bad_attrs``          attributes that are not a JSON object
``processing_error``   a pipeline step failed on the batch the row was in (detail: the error)
=====================  ==============================================================

A row with several faults is dead-lettered once, under the first reason in that table; lateness is
judged only for rows that are otherwise valid.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "STREAM",
    "SERIES",
    "TIME",
    "SEQ",
    "ATTRS",
    "KEY_COLUMNS",
    "REASONS",
    "DEAD_LETTER_COLUMNS",
    "Schema",
    "Validator",
    "Validated",
    "DeadLetterQueue",
    "field_columns",
    "empty_batch",
    "empty_dead_letters",
    "make_dead_letters",
    "SeriesIds",
]

STREAM, SERIES, TIME, SEQ, ATTRS = "stream", "series", "ts", "seq", "attrs"
KEY_COLUMNS: tuple[str, ...] = (STREAM, SERIES, TIME, SEQ)
_RESERVED = frozenset((*KEY_COLUMNS, ATTRS))

REASONS: tuple[str, ...] = (
    "missing_time",
    "bad_time",
    "missing_series",
    "unknown_series",
    "non_numeric",
    "not_finite",
    "late",
    "oversized_attrs",
    "bad_attrs",
    "processing_error",
)
_REASON_RANK = {reason: rank for rank, reason in enumerate(REASONS)}

DEAD_LETTER_COLUMNS: tuple[str, ...] = ("stream", "reason", "detail", "payload", "received_at", "seq")


def field_columns(batch: pd.DataFrame) -> list[str]:
    """The numeric field columns of a batch: every column that is not a key or ``attrs``."""
    return [c for c in batch.columns if c not in _RESERVED]


def empty_batch(fields: Sequence[str] = ("value",)) -> pd.DataFrame:
    """A batch with no rows and the contract's dtypes."""
    frame = pd.DataFrame(
        {
            STREAM: pd.Series([], dtype="string"),
            SERIES: pd.Series([], dtype="string"),
            TIME: pd.Series([], dtype="datetime64[ns, UTC]"),
            SEQ: pd.Series([], dtype="int64"),
        }
    )
    for name in fields:
        frame[name] = pd.Series([], dtype="float64")
    return frame


def empty_dead_letters() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stream": pd.Series([], dtype="string"),
            "reason": pd.Series([], dtype="string"),
            "detail": pd.Series([], dtype="string"),
            "payload": pd.Series([], dtype="string"),
            "received_at": pd.Series([], dtype="datetime64[ns, UTC]"),
            "seq": pd.Series([], dtype="int64"),
        }
    )


def make_dead_letters(rows: pd.DataFrame, stream: str, reason: str, detail: str) -> pd.DataFrame:
    """Dead letters for whole rows of a batch (each row's payload kept as JSON)."""
    if reason not in _REASON_RANK:
        raise ValueError(f"unknown dead-letter reason '{reason}'")
    if rows.empty:
        return empty_dead_letters()
    payload = [json.dumps(r, default=str) for r in rows.to_dict(orient="records")]
    n = len(rows)
    seq = rows[SEQ].to_numpy(dtype="int64") if SEQ in rows.columns else np.full(n, -1, dtype=np.int64)
    return pd.DataFrame(
        {
            "stream": pd.array([stream] * n, dtype="string"),
            "reason": pd.array([reason] * n, dtype="string"),
            "detail": pd.array([detail] * n, dtype="string"),
            "payload": pd.array(payload, dtype="string"),
            "received_at": pd.Timestamp.now(tz="UTC"),
            "seq": seq,
        }
    ).astype({"received_at": "datetime64[ns, UTC]"})


@dataclass(frozen=True)
class Schema:
    """What a stream accepts.

    Parameters
    ----------
    stream
        Stream name written into every record that does not carry one.
    fields
        Numeric field columns. ``None`` takes every column that is not a key or ``attrs``.
    series
        Declared series keys. When given the schema is *closed*: other keys are dead-lettered as
        ``unknown_series``.
    allowed_lateness
        How far behind the newest event time seen for its series a record may arrive.
    max_attr_bytes
        Largest UTF-8 size of a record's attributes as JSON.
    """

    stream: str
    fields: tuple[str, ...] | None = None
    series: frozenset[str] | None = None
    allowed_lateness: timedelta = timedelta(seconds=60)
    max_attr_bytes: int = 4096

    @property
    def closed(self) -> bool:
        return self.series is not None


@dataclass
class Validated:
    """The two halves of a validated batch."""

    good: pd.DataFrame
    dead: pd.DataFrame

    def __iter__(self):  # allows ``good, dead = validator(batch)``
        yield self.good
        yield self.dead


class Validator:
    """Vectorized validation of raw micro-batches against a :class:`Schema`.

    Keeps, per series, the newest event time seen so far, so that lateness is judged across batches.
    That state is bounded by the number of series. Rows come out in input order; ``seq`` is filled from
    a running counter where the source gave none.

    Example
    -------
    >>> import pandas as pd
    >>> v = Validator(Schema("pumps"))
    >>> good, dead = v(pd.DataFrame({"series": ["a", "a"], "ts": ["2024-01-01T00:00:00Z", "nope"],
    ...                              "value": [1.0, 2.0]}))
    >>> len(good), list(dead["reason"])
    (1, ['bad_time'])
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._ids = SeriesIds()
        self._newest = np.empty(0, dtype=np.int64)
        self._next_seq = 0
        self._lateness = pd.Timedelta(schema.allowed_lateness)

    def __call__(self, raw: pd.DataFrame) -> Validated:
        return self.validate(raw)

    def validate(self, raw: pd.DataFrame) -> Validated:
        n = len(raw)
        if n == 0:
            return Validated(empty_batch(self.schema.fields or ("value",)), empty_dead_letters())
        raw = raw.reset_index(drop=True)
        reason = np.full(n, len(REASONS), dtype=np.int16)  # len(REASONS) means "good"
        detail = np.full(n, "", dtype=object)

        def flag(mask: np.ndarray, name: str, text: str | np.ndarray = "") -> None:
            rank = _REASON_RANK[name]
            hit = mask & (reason > rank)
            if hit.any():
                reason[hit] = rank
                detail[hit] = text if isinstance(text, str) else text[hit]

        ts = self._times(raw, flag)
        series = self._series(raw, flag)
        fields = self._fields(raw)
        values = {}
        for name in fields:
            values[name] = self._numbers(raw[name], name, flag)
        attrs = self._attrs(raw, flag) if ATTRS in raw.columns else None

        candidate = reason == len(REASONS)
        late = self._late(series, ts, candidate)
        flag(late, "late", "behind watermark by more than allowed lateness")

        good_mask = reason == len(REASONS)
        keep: slice | np.ndarray = slice(None) if good_mask.all() else good_mask
        seq = self._sequence(raw, n)
        good = pd.DataFrame(
            {
                STREAM: self._stream_column(raw)[keep],
                SERIES: series[keep],
                TIME: pd.DatetimeIndex(ts[keep]).tz_localize("UTC"),
                SEQ: seq[keep],
            }
        )
        for name in fields:
            good[name] = values[name][keep]
        if attrs is not None:
            good[ATTRS] = pd.array(attrs[keep], dtype="string")
        self._advance(series.codes[keep], series.categories, ts[keep])
        dead = self._dead_letters(raw, ~good_mask, reason, detail, seq)
        return Validated(good, dead)

    # -- columns -------------------------------------------------------------------------------

    def _times(self, raw: pd.DataFrame, flag: Callable[..., None]) -> np.ndarray:
        n = len(raw)
        if TIME not in raw.columns:
            flag(np.ones(n, dtype=bool), "missing_time", f"no '{TIME}' column")
            return np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        column = raw[TIME]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            parsed = column.dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_dtype(column.dtype):
            parsed = column.dt.tz_localize("UTC")  # naive event times are taken as UTC
        else:
            parsed = self._parse_times(column)
        missing = column.isna().to_numpy()
        bad = parsed.isna().to_numpy() & ~missing
        flag(missing, "missing_time", "event time is empty")
        flag(bad, "bad_time", "event time cannot be parsed")
        return parsed.dt.tz_convert(None).dt.as_unit("ns").to_numpy()  # naive UTC datetime64[ns]

    @staticmethod
    def _parse_times(column: pd.Series) -> pd.Series:
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            # numbers are seconds since the epoch
            secs = pd.to_numeric(column, errors="coerce").astype("float64")
            secs = secs.where(np.isfinite(secs) & (secs.abs() < 9e9))
            return pd.to_datetime(secs, unit="s", utc=True, errors="coerce")
        try:
            parsed = _in_ns_range(pd.to_datetime(column.astype("string"), utc=True, errors="coerce",
                                                 format="ISO8601"))
        except (ValueError, OverflowError):
            parsed = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
        retry = (parsed.isna() & column.notna()).to_numpy()
        if not retry.any():
            return parsed
        # mixed formats or types: parse the leftovers one by one
        naive = parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").copy()
        naive[retry] = np.array([_parse_one(v) for v in column[retry]], dtype="datetime64[ns]")
        return pd.Series(naive, index=column.index).dt.tz_localize("UTC")

    def _series(self, raw: pd.DataFrame, flag: Callable[..., None]) -> pd.Categorical:
        """Series keys as a categorical of strings (cheap to group by downstream)."""
        n = len(raw)
        if SERIES not in raw.columns:
            return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=["default"])
        keys = _as_categorical(raw[SERIES])
        empty = keys.categories == ""
        missing = keys.codes < 0
        if empty.any():
            missing |= np.isin(keys.codes, np.flatnonzero(empty))
        flag(missing, "missing_series", "series key is empty")
        if self.schema.series is not None:
            declared = keys.categories.isin(list(self.schema.series))
            unknown = ~missing & ~declared[np.maximum(keys.codes, 0)]
            flag(unknown, "unknown_series", "series is not declared by the stream's schema")
        return keys

    def _fields(self, raw: pd.DataFrame) -> list[str]:
        if self.schema.fields is not None:
            return list(self.schema.fields)
        names = field_columns(raw)
        return names or ["value"]

    @staticmethod
    def _numbers(column: pd.Series | None, name: str, flag: Callable[..., None]) -> np.ndarray:
        if column is None:
            raise KeyError(name)
        if pd.api.types.is_float_dtype(column.dtype) or pd.api.types.is_integer_dtype(column.dtype):
            numbers = column.to_numpy(dtype="float64", na_value=np.nan)
            non_numeric = np.zeros(len(column), dtype=bool)
        else:
            coerced = pd.to_numeric(column, errors="coerce")
            numbers = coerced.to_numpy(dtype="float64", na_value=np.nan)
            non_numeric = np.isnan(numbers) & column.notna().to_numpy()
            if pd.api.types.is_bool_dtype(column.dtype) or column.map(type).eq(bool).any():
                non_numeric |= column.map(lambda v: isinstance(v, bool)).to_numpy()
            # strings that pandas reads as NaN/inf are values, not garbage: judge them as not finite
            textual = column.astype("string").str.strip().str.lower()
            spelled = textual.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"]).fillna(False).to_numpy()
            non_numeric &= ~spelled
        flag(non_numeric, "non_numeric", f"field '{name}' is not a number")
        flag(~np.isfinite(numbers) & ~non_numeric, "not_finite", f"field '{name}' is missing, NaN or infinite")
        return numbers

    def _attrs(self, raw: pd.DataFrame, flag: Callable[..., None]) -> np.ndarray:
        column = raw[ATTRS]

        def encode(value: Any) -> str | None:
            if value is None or (isinstance(value, float) and np.isnan(value)):
                return None
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    return "\0"
            if not isinstance(value, dict):
                return "\0"
            return json.dumps(value, separators=(",", ":"), default=str)

        encoded = column.map(encode)
        bad = (encoded == "\0").to_numpy()
        flag(bad, "bad_attrs", "attrs is not a JSON object")
        sizes = encoded.map(lambda s: len(s.encode()) if isinstance(s, str) else 0).to_numpy()
        flag(sizes > self.schema.max_attr_bytes, "oversized_attrs",
             f"attrs larger than {self.schema.max_attr_bytes} bytes")
        out = np.array(encoded.to_numpy(dtype=object), copy=True)
        out[bad] = None
        return out

    def _stream_column(self, raw: pd.DataFrame) -> pd.Categorical:
        if STREAM in raw.columns:
            return _as_categorical(raw[STREAM].astype(object).where(raw[STREAM].notna(), self.schema.stream))
        return pd.Categorical.from_codes(np.zeros(len(raw), dtype=np.int8), categories=[self.schema.stream])

    def _sequence(self, raw: pd.DataFrame, n: int) -> np.ndarray:
        fallback = np.arange(self._next_seq, self._next_seq + n, dtype=np.int64)
        if SEQ not in raw.columns:
            self._next_seq += n
            return fallback
        column = raw[SEQ]
        if pd.api.types.is_integer_dtype(column.dtype) and not column.isna().any():
            seq = column.to_numpy(dtype=np.int64)  # exact: no trip through float64
        else:
            numeric = pd.to_numeric(column, errors="coerce")
            if pd.api.types.is_integer_dtype(numeric.dtype):  # nullable integers: exact where given
                missing = numeric.isna().to_numpy()
                exact = numeric.fillna(0).to_numpy(dtype=np.int64)
                seq = np.where(missing, fallback, exact)
            else:
                f = numeric.to_numpy(dtype="float64", na_value=np.nan)
                ok = np.isfinite(f) & (np.abs(f) < 2**63)
                seq = np.where(ok, np.nan_to_num(f).astype(np.int64), fallback)
        self._next_seq = max(self._next_seq + n, int(seq.max()) + 1)
        return seq

    # -- lateness ------------------------------------------------------------------------------

    def _late(self, series: pd.Categorical, ts: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        """Rows whose time is behind the newest time of their series by more than the lateness.

        The newest time includes earlier rows of this batch, so the answer does not depend on how
        records were cut into batches.
        """
        late = np.zeros(len(ts), dtype=bool)
        if not candidate.any():
            return late
        idx = np.flatnonzero(candidate)
        sid = self._ids.lookup(series.categories)[series.codes[idx]]
        t = ts[idx].view("int64")
        if len(t) > 1 and not (t[1:] >= t[:-1]).all():
            # out of order inside the batch: the running newest time per series
            t_running = pd.Series(t).groupby(sid, sort=False).cummax().to_numpy()
        else:
            t_running = t  # sorted: each row is the newest of its series so far
        newest = self._newest_ns(len(self._ids))
        t_running = np.maximum(t_running, newest[sid])
        late[idx] = t < t_running - self._lateness.value
        return late

    def _newest_ns(self, size: int) -> np.ndarray:
        """Newest time per series id (int64 ns; the minimum int64 where none was seen yet)."""
        if len(self._newest) < size:
            grown = np.full(max(size, 2 * len(self._newest)), np.iinfo(np.int64).min, dtype=np.int64)
            grown[: len(self._newest)] = self._newest
            self._newest = grown
        return self._newest

    def _advance(self, codes: np.ndarray, categories: pd.Index, ts: np.ndarray) -> None:
        if len(ts) == 0:
            return
        sid = self._ids.lookup(categories)[codes]
        np.maximum.at(self._newest_ns(len(self._ids)), sid, ts.view("int64"))

    def newest(self) -> dict[str, pd.Timestamp]:
        """Newest event time seen per series."""
        none = np.iinfo(np.int64).min
        return {name: pd.Timestamp(int(self._newest[i]), tz="UTC")
                for i, name in enumerate(self._ids.names) if i < len(self._newest) and self._newest[i] != none}

    # -- dead letters --------------------------------------------------------------------------

    def _dead_letters(
        self, raw: pd.DataFrame, mask: np.ndarray, reason: np.ndarray, detail: np.ndarray, seq: np.ndarray
    ) -> pd.DataFrame:
        if not mask.any():
            return empty_dead_letters()
        rows = raw.loc[mask]
        payload = [json.dumps(row, default=str, allow_nan=True) for row in rows.to_dict(orient="records")]
        names = np.asarray(REASONS, dtype=object)[reason[mask]]
        return pd.DataFrame(
            {
                "stream": pd.array(np.full(len(rows), self.schema.stream, dtype=object), dtype="string"),
                "reason": pd.array(names, dtype="string"),
                "detail": pd.array(detail[mask], dtype="string"),
                "payload": pd.array(payload, dtype="string"),
                "received_at": pd.Timestamp.now(tz="UTC"),
                "seq": seq[mask],
            }
        ).astype({"received_at": "datetime64[ns, UTC]"})


class SeriesIds:
    """Dense integer ids for series keys, stable for the life of the object.

    Batches carry series as categoricals whose categories differ from batch to batch; ``lookup`` maps
    a batch's categories to ids (remembering the last categories seen, which a source usually reuses).
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.names: list[str] = []
        self._last: tuple[pd.Index, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, categories: pd.Index) -> np.ndarray:
        if self._last is not None and self._last[0] is categories:
            return self._last[1]
        ids = np.fromiter((self.id_of(str(name)) for name in categories), dtype=np.int64, count=len(categories))
        self._last = (categories, ids)
        return ids

    def id_of(self, name: str) -> int:
        found = self._ids.get(name)
        if found is None:
            found = self._ids[name] = len(self.names)
            self.names.append(name)
        return found


def _as_categorical(column: pd.Series) -> pd.Categorical:
    """A column as a categorical whose categories are distinct strings; missing values get code -1."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        keys = column.array
        if keys.categories.inferred_type == "string" and keys.categories.is_unique:
            return keys
        codes, uniques = keys.codes, keys.categories
    else:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
    names = pd.Index([str(u) for u in uniques], dtype=object)
    if not names.is_unique:  # e.g. 1 and "1": same key once written as text
        remap, names = pd.factorize(names)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
        names = pd.Index(names, dtype=object)
    return pd.Categorical.from_codes(np.asarray(codes), categories=names)


_NS_MIN = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX = pd.Timestamp.max.tz_localize("UTC")


def _in_ns_range(parsed: pd.Series) -> pd.Series:
    """Times outside what nanoseconds can hold (years 1677–2262) become NaT, then nanoseconds."""
    if parsed.dt.unit != "ns":
        parsed = parsed.where((parsed >= _NS_MIN) & (parsed <= _NS_MAX))
    return parsed.astype("datetime64[ns, UTC]")


def _parse_one(value: Any) -> np.datetime64:
    """One event time of any form as naive-UTC nanoseconds, or NaT.

    Numbers are epoch seconds; text is read leniently; times outside years 1677–2262 are NaT.
    """
    nat = np.datetime64("NaT", "ns")
    try:
        if isinstance(value, (bool, np.bool_)):
            return nat
        if isinstance(value, (int, float, np.integer, np.floating)):
            if not abs(float(value)) < 9e9:
                return nat
            stamp = pd.Timestamp(float(value), unit="s", tz="UTC")
        else:
            stamp = pd.Timestamp(value)
        if stamp is pd.NaT:
            return nat
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        if not _NS_MIN <= stamp <= _NS_MAX:
            return nat
        return stamp.tz_convert(None).as_unit("ns").to_datetime64()
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        return nat


@dataclass
class DeadLetterQueue:
    """Where bad records wait, with their reasons.

    Keeps the newest ``capacity`` dead letters in memory for inspection and counts every one by reason.
    Nothing is lost when the memory bound is reached: every dead letter is also handed to each
    registered sink (a store table, a file) as it arrives.
    """

    capacity: int = 10_000
    sinks: list[Callable[[pd.DataFrame], None]] = field(default_factory=list)
    _recent: deque = field(default_factory=deque, init=False, repr=False)
    _counts: Counter = field(default_factory=Counter, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def put(self, dead: pd.DataFrame) -> None:
        if dead is None or dead.empty:
            return
        with self._lock:
            self._counts.update(dead["reason"].astype(str).tolist())
            for record in dead.to_dict(orient="records"):
                self._recent.append(record)
                if len(self._recent) > self.capacity:
                    self._recent.popleft()
        for sink in self.sinks:
            sink(dead)

    def add_sink(self, sink: Callable[[pd.DataFrame], None]) -> None:
        self.sinks.append(sink)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def recent(self, limit: int | None = None) -> pd.DataFrame:
        with self._lock:
            rows = list(self._recent)[-limit:] if limit else list(self._recent)
        return pd.DataFrame(rows, columns=list(DEAD_LETTER_COLUMNS)) if rows else empty_dead_letters()

    def __len__(self) -> int:
        return self.total

    def extend(self, batches: Iterable[pd.DataFrame]) -> None:
        for batch in batches:
            self.put(batch)
