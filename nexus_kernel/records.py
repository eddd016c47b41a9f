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
``future``             an event time further ahead of the stream's clock than ``max_future``
``missing_series``     no series key
``bad_series``         a series name that is too long or holds a control or format character
``unknown_series``     series not declared by a closed schema
``bad_field``          a value in a field column whose name is too long, empty or holds such a character
``non_numeric``        a field value that is not a number
``not_finite``         a field value that is NaN, missing or infinite
``late``               event time behind the series' watermark by more than the allowed lateness
``oversized_attrs``    attributes whose JSON is larger than the limit
``bad_attrs``          attributes that are not a JSON object
``processing_error``   a pipeline step failed on the batch the row was in (detail: the error)
=====================  ==============================================================

A row with several faults is dead-lettered once, under the first reason in that table; lateness is
judged only for rows that are otherwise valid.

*The stream's clock* is the later of wall-clock UTC now and the source's own clock (the ``clock``
callable a :class:`Validator` is given — a pipeline passes its source's
:meth:`~nexus_kernel.engine.sources.Source.clock`): a simulator that runs ahead of real time has its own
records judged against its own timeline, while a record from the network is judged against now. A
``future`` record never moves a watermark, so one far-future time cannot make a series refuse every real
record after it as ``late``. ``max_future=0`` means no slack at all (a sender whose clock runs a
millisecond ahead is refused); ``Schema(max_future=None)`` turns the check off.

*Names*: series and field names are at most ``max_name_length`` characters and hold no character of
Unicode categories Cc (controls: NUL, ESC...), Cf (format: the bidi overrides and isolates U+202A–U+202E,
U+2066–U+2069, zero-width characters, soft hyphen...), Cs (lone surrogates), Zl or Zp (line and paragraph
separators) — what can spoof a name on a screen or break a log line. ZWJ and ZWNJ are Cf too, so emoji
sequences and scripts that need them cannot be written in a name; look-alike letters (Cyrillic а for
Latin a) are not caught. Each distinct name is checked once per batch, not once per row. A dead letter's
detail shows the name escaped (``repr``) and cut to 40 characters, never raw.
"""

from __future__ import annotations

import json
import threading
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
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
    "Clock",
    "future_bound",
    "future_horizon",
    "future_detail",
    "name_fault",
]

STREAM, SERIES, TIME, SEQ, ATTRS = "stream", "series", "ts", "seq", "attrs"
KEY_COLUMNS: tuple[str, ...] = (STREAM, SERIES, TIME, SEQ)
_RESERVED = frozenset((*KEY_COLUMNS, ATTRS))

REASONS: tuple[str, ...] = (
    "missing_time",
    "bad_time",
    "future",
    "missing_series",
    "bad_series",
    "unknown_series",
    "bad_field",
    "non_numeric",
    "not_finite",
    "late",
    "oversized_attrs",
    "bad_attrs",
    "processing_error",
)
_REASON_RANK = {reason: rank for rank, reason in enumerate(REASONS)}

DEAD_LETTER_COLUMNS: tuple[str, ...] = ("stream", "reason", "detail", "payload", "received_at", "seq")

#: A source's own clock: the event time it has reached, or ``None`` to follow the wall clock.
Clock = Callable[[], "pd.Timestamp | None"]

_INT64_MAX = np.iinfo(np.int64).max
# the newest time nanoseconds can hold is 2262-04-11: a bound further out than that checks nothing
_LONGEST_FUTURE = timedelta(seconds=_INT64_MAX // 1_000_000_000)
_SPOOFING = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))  # see "Names" in the module docstring
_SHOWN = 40


def future_bound(seconds: float) -> timedelta | None:
    """The ``max_future`` setting (seconds) as a :class:`Schema` bound; ``None`` (no check) when it reaches
    past what nanosecond times can hold (about 292 years, infinity included), since no time is that far ahead."""
    if not seconds < _LONGEST_FUTURE.total_seconds():
        return None
    return timedelta(seconds=seconds)


def future_horizon(max_future: timedelta, clock: Clock | None = None) -> tuple[int, int]:
    """The stream's clock and the newest admissible event time (its clock plus ``max_future``), in ns
    since the epoch.

    The stream's clock is the later of wall-clock UTC now and ``clock()`` (when given and not ``None``),
    so a source's clock can only widen what wall time admits. The horizon is capped at the newest time
    nanoseconds hold.
    """
    now = time.time_ns()
    reached = clock() if clock is not None else None
    if reached is not None:
        now = max(now, pd.Timestamp(reached).value)
    return now, min(now + max_future // timedelta(microseconds=1) * 1000, _INT64_MAX)


def future_detail(max_future: timedelta, now_ns: int) -> str:
    """The detail of a ``future`` dead letter."""
    return (f"event time more than {max_future.total_seconds():g} s ahead of the stream's clock "
            f"({pd.Timestamp(now_ns, tz='UTC').isoformat()})")


def name_fault(name: object, limit: int) -> str | None:
    """Why ``name`` cannot name a series or a field, or ``None`` when it can.

    A name is refused when it is empty, longer than ``limit`` characters, or holds a character of a
    category in Cc, Cf, Cs, Zl, Zp. Cheap for ordinary names: ``str.isprintable`` (C) settles them, and
    only names it rejects are looked at character by character.
    """
    text = str(name)
    if not text:
        return "is empty"
    if len(text) > limit:
        return f"is longer than {limit} characters"
    if text.isprintable():
        return None
    for char in text:  # isprintable also rejects spaces beyond ASCII, private use and unassigned: allowed
        if unicodedata.category(char) in _SPOOFING:
            return f"holds the control or format character U+{ord(char):04X}"
    return None


def _shown_name(name: object) -> str:
    """A name as a dead letter's detail shows it: escaped by ``repr``, cut to 40 characters."""
    text = str(name)
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text)} characters)"


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
    """A dead-letter frame without rows (a new frame each call, made from one template: every batch
    validated asks for one, and building six typed columns costs about a millisecond)."""
    return _EMPTY_DEAD_LETTERS.copy(deep=False)


_EMPTY_DEAD_LETTERS = pd.DataFrame(
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
    max_future
        How far ahead of the stream's clock an event time may be (``0``: not at all), as a timedelta or
        in seconds (the ``max_future`` setting, turned into a timedelta by :func:`future_bound`);
        ``None`` checks nothing.
    max_name_length
        Longest series or field name, in characters.
    """

    stream: str
    fields: tuple[str, ...] | None = None
    series: frozenset[str] | None = None
    allowed_lateness: timedelta = timedelta(seconds=60)
    max_attr_bytes: int = 4096
    max_future: timedelta | float | None = timedelta(seconds=300)
    max_name_length: int = 256

    def __post_init__(self) -> None:
        if isinstance(self.max_future, (int, float)):  # seconds, as settings give it
            object.__setattr__(self, "max_future", future_bound(self.max_future))

    @property
    def closed(self) -> bool:
        return self.series is not None


@dataclass
class Validated:
    """The two halves of a validated batch, and which input rows went to the dead letters.

    ``dead_rows`` is a boolean mask over the rows of the batch as given (True: dead-lettered), so a caller
    that must say which of its records were refused — the gateway answers each request with its body
    indexes — maps dead letters back to its input without parsing their payloads.
    """

    good: pd.DataFrame
    dead: pd.DataFrame
    dead_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __iter__(self):  # allows ``good, dead = validator(batch)``
        yield self.good
        yield self.dead


class Validator:
    """Vectorized validation of raw micro-batches against a :class:`Schema`.

    Keeps, per series, the newest event time seen so far, so that lateness is judged across batches.
    That state is bounded by the number of series. Rows come out in input order; ``seq`` is filled from
    a running counter where the source gave none.

    Parameters
    ----------
    schema
        What the stream accepts. A declared field whose name is refused (see "Names" in the module
        docs) is no field: the values records give it are dead-lettered as ``bad_field``.
    clock
        The source's clock (see "The stream's clock" in the module docs); ``None``: wall clock only.

    Example
    -------
    >>> import pandas as pd
    >>> v = Validator(Schema("pumps"))
    >>> good, dead = v(pd.DataFrame({"series": ["a", "a"], "ts": ["2024-01-01T00:00:00Z", "nope"],
    ...                              "value": [1.0, 2.0]}))
    >>> len(good), list(dead["reason"])
    (1, ['bad_time'])
    """

    def __init__(self, schema: Schema, clock: Clock | None = None) -> None:
        declared = schema.fields or ()
        self._bad_declared = {name: fault for name in declared
                              if (fault := name_fault(name, schema.max_name_length)) is not None}
        if self._bad_declared:
            schema = replace(schema, fields=tuple(f for f in declared if f not in self._bad_declared))
        self.schema = schema
        self.clock = clock
        self._series_faults: tuple[pd.Index, np.ndarray] | None = None  # last categories checked, their faults
        self._ids = SeriesIds()
        self._newest = np.empty(0, dtype=np.int64)
        self._next_seq = 0
        self._lateness = pd.Timedelta(schema.allowed_lateness)

    def __call__(self, raw: pd.DataFrame) -> Validated:
        return self.validate(raw)

    def validate(self, raw: pd.DataFrame, payload: pd.DataFrame | None = None) -> Validated:
        """Split ``raw`` into its good rows and its dead letters.

        Parameters
        ----------
        raw
            The raw batch (any dtypes).
        payload
            What the dead letters keep as each refused row's payload, row for row ``raw`` (default:
            ``raw`` itself) — the records as received when the caller filled gaps in them first.
        """
        n = len(raw)
        if n == 0:
            return Validated(empty_batch(self.schema.fields or ("value",)), empty_dead_letters())
        raw = raw.reset_index(drop=True)
        # what dead letters keep: the payload as it came, refused field names included
        received = raw if payload is None else payload.reset_index(drop=True)
        reason = np.full(n, len(REASONS), dtype=np.int16)  # len(REASONS) means "good"
        detail = np.full(n, "", dtype=object)

        def flag(mask: np.ndarray, name: str, text: str | np.ndarray = "") -> None:
            rank = _REASON_RANK[name]
            hit = mask & (reason > rank)
            if hit.any():
                reason[hit] = rank
                detail[hit] = text if isinstance(text, str) else text[hit]

        ts = self._times(raw, flag)
        self._future(ts, flag)
        series = self._series(raw, flag)
        raw = self._without_bad_fields(raw, flag)  # before fields are inferred: a refused name is no field
        fields = self._fields(raw)
        values = {}
        for name in fields:
            if name in raw.columns:
                values[name] = self._numbers(raw[name], name, flag)
            else:  # no record of the batch has this field (a lone record without "value", say)
                flag(np.ones(n, dtype=bool), "not_finite", f"field '{name}' is missing")
                values[name] = np.full(n, np.nan)
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
        dead = self._dead_letters(received, ~good_mask, reason, detail, seq)
        return Validated(good, dead, ~good_mask)

    def validate_records(self, raw: pd.DataFrame) -> Validated:
        """Validate records that came from outside as JSON objects, each judged on the keys it carries.

        A batch of such records is the union of their keys (one body of records that differ, or several
        requests coalesced), so a record lacking a key another has gets a hole there; a hole is a key not
        sent, never a fault. A hole in ``series`` is the series a record without one gets (``default``);
        holes in fields are filled for the checks and emptied again in the good batch (the store keeps no
        empty cell) — unless the record carries no field at all, which stays ``not_finite`` (missing). A
        field no good record carries is no column of the good batch. Dead letters keep each record as
        received (holes left out), and the source's clock is not used: records from outside are judged
        against wall-clock time only (see "The stream's clock" in the module docs).

        Caveat: a NaN in a field column is read as a hole — what JSON records give (JSON has no NaN). A
        source whose batches carry NaN values to refuse (a simulator's bad rows) calls :meth:`validate`.

        >>> v = Validator(Schema("pumps"))
        >>> out = v.validate_records(pd.DataFrame({"series": ["a", "a"], "ts": ["2024-01-01T00:00:00Z"] * 2,
        ...                                        "value": [1.0, None], "temp": [None, 2.0]}))
        >>> len(out.good), out.dead_rows.tolist()
        (2, [False, False])
        """
        if len(raw) == 0:  # not raw.empty: records of no known key ({}) are rows without columns
            return Validated(raw, empty_dead_letters())
        raw = raw.reset_index(drop=True)
        if len(raw.columns) == 0:  # payloads cannot be built from rows without columns
            raw = pd.DataFrame({TIME: [None] * len(raw)})
        filled, holes = _fill_holes(raw, self.schema.max_name_length)
        clock, self.clock = self.clock, None
        try:
            result = self.validate(filled, payload=raw if filled is not raw else None)
        finally:
            self.clock = clock
        good, mask = result.good, result.dead_rows
        holes = {name: hole for name, hole in holes.items() if name in good.columns}  # refused names are no field
        for name, hole in holes.items():
            good[name] = good[name].mask(hole[~mask])
        unused = [name for name in holes if len(good) and good[name].isna().all()]
        if unused:
            good = good.drop(columns=unused)
        return Validated(good, result.dead, mask)

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

    def _future(self, ts: np.ndarray, flag: Callable[..., None]) -> None:
        """Flag times further ahead of the stream's clock than ``max_future`` (NaT never is)."""
        bound = self.schema.max_future
        if bound is None:
            return
        if not isinstance(bound, timedelta):  # Schema.__post_init__ converts seconds; a timedelta from here on
            bound = future_bound(bound)
            if bound is None:
                return
        now, horizon = future_horizon(bound, self.clock)
        ahead = ts.view("int64") > horizon
        if ahead.any():
            flag(ahead, "future", future_detail(bound, now))

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

    def _series(self, raw: pd.DataFrame, flag: Callable[..., None]) -> pd.Categorical[Any]:
        """Series keys as a categorical of strings (cheap to group by downstream)."""
        n = len(raw)
        if SERIES not in raw.columns:
            return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=pd.Index(["default"]))
        keys = _as_categorical(raw[SERIES])
        empty = keys.categories == ""
        missing = keys.codes < 0
        if empty.any():
            missing |= np.isin(keys.codes, np.flatnonzero(empty))
        flag(missing, "missing_series", "series key is empty")
        faults = self._faults_of(keys.categories)
        if faults is not None:
            refused = faults != ""
            per_row = np.maximum(keys.codes, 0)
            flag(~missing & refused[per_row], "bad_series", faults[per_row])
            # refused names leave the categories, so no good row, watermark or series id ever holds one
            keys = keys.remove_categories(keys.categories[refused])
        if self.schema.series is not None and len(keys.categories):
            declared = keys.categories.isin(list(self.schema.series))
            unknown = ~missing & (keys.codes >= 0) & ~declared[np.maximum(keys.codes, 0)]
            flag(unknown, "unknown_series", "series is not declared by the stream's schema")
        return keys

    def _faults_of(self, categories: pd.Index) -> np.ndarray | None:
        """Per category, why its name is refused as a series ("" when it is not); ``None``: none is.

        Each distinct name is checked once per batch, and not at all when a source hands the same
        categories again (the simulator, a replay of one file).
        """
        if self._series_faults is not None and self._series_faults[0] is categories:
            return self._series_faults[1] if self._series_faults[1].size else None
        limit = self.schema.max_name_length
        faults = [name_fault(name, limit) for name in categories]
        found = np.empty(0, dtype=object)
        if any(fault is not None for fault in faults):  # an empty name is a fault too, but missing_series wins
            found = np.array(["" if fault is None else f"series name {_shown_name(name)} {fault}"
                              for fault, name in zip(faults, categories)], dtype=object)
        self._series_faults = (categories, found)
        return found if found.size else None

    def _without_bad_fields(self, raw: pd.DataFrame, flag: Callable[..., None]) -> pd.DataFrame:
        """``raw`` without the field columns whose name is refused; records with a value there are flagged.

        Only columns that would be fields are judged: with declared fields, the other columns are
        ignored anyway (and a declared field with a refused name was taken out of the schema).
        """
        if self.schema.fields is None:
            limit = self.schema.max_name_length
            refused = {name: fault for name in field_columns(raw) if (fault := name_fault(name, limit)) is not None}
        else:
            refused = {name: fault for name, fault in self._bad_declared.items() if name in raw.columns}
        if not refused:
            return raw
        for name, fault in refused.items():
            flag(raw[name].notna().to_numpy(), "bad_field", f"field name {_shown_name(name)} {fault}")
        return raw.drop(columns=list(refused))

    def _fields(self, raw: pd.DataFrame) -> list[str]:
        if self.schema.fields is not None:
            return list(self.schema.fields)
        names = field_columns(raw)
        return names or ["value"]

    @staticmethod
    def _numbers(column: pd.Series, name: str, flag: Callable[..., None]) -> np.ndarray:
        if pd.api.types.is_float_dtype(column.dtype) or pd.api.types.is_integer_dtype(column.dtype):
            numbers = column.to_numpy(dtype="float64", na_value=np.nan)
            non_numeric = np.zeros(len(column), dtype=bool)
        else:
            coerced = pd.to_numeric(column, errors="coerce")
            numbers = coerced.to_numpy(dtype="float64", na_value=np.nan)
            non_numeric = np.isnan(numbers) & column.notna().to_numpy()
            if pd.api.types.is_bool_dtype(column.dtype) or column.map(lambda v: type(v) is bool).any():
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

    def _stream_column(self, raw: pd.DataFrame) -> pd.Categorical[Any]:
        if STREAM in raw.columns:
            return _as_categorical(raw[STREAM].astype(object).where(raw[STREAM].notna(), self.schema.stream))
        return pd.Categorical.from_codes(np.zeros(len(raw), dtype=np.int8),
                                          categories=pd.Index([self.schema.stream]))

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


_DEFAULT_SERIES = "default"  # the series the Validator gives a batch without a series column
_FIELD_HOLE = 0.0  # any finite number: the validator judges it, the good batch never keeps it


def _fill_holes(raw: pd.DataFrame, name_limit: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The batch with its holes filled (see :meth:`Validator.validate_records`) and the field holes.

    Columns whose name the validator refuses are left alone: it flags the records with a value there.
    """
    out = raw
    if SERIES in raw.columns and raw[SERIES].isna().any():
        out = raw.copy()
        out[SERIES] = raw[SERIES].astype(object).where(raw[SERIES].notna(), _DEFAULT_SERIES)
    fields = [name for name in field_columns(raw) if name_fault(name, name_limit) is None]
    holes: dict[str, np.ndarray] = {}
    if not fields:
        return out, holes
    empty = raw[fields].isna().to_numpy()
    if not empty.any():
        return out, holes
    carries = ~empty.all(axis=1)  # a record with no field at all stays missing
    for j, name in enumerate(fields):
        hole = empty[:, j] & carries
        if hole.any():
            if out is raw:
                out = raw.copy()
            out[name] = raw[name].astype(object).mask(hole, _FIELD_HOLE) \
                if not pd.api.types.is_float_dtype(raw[name].dtype) else raw[name].mask(hole, _FIELD_HOLE)
            holes[name] = hole
    return out, holes


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
