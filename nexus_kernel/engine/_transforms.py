"""Transforms: named, parameterized batch functions that a stream spec may use (``apply`` and ``filter``).

A spec names a transform by its registry name and gives its parameters as JSON, checked by the
transform's pydantic model — never an import path::

    {"kind": "apply",  "params": {"transform": "scale", "fields": ["value"], "factor": 0.001}}
    {"kind": "filter", "params": {"predicate": "value_between", "lower": 0, "upper": 100}}

In a notebook the same names work (``pipe.apply("scale", factor=0.001)``), and so does any Python
callable (``pipe.apply(my_function)``) — but a pipeline with a plain callable cannot be saved into the
stream manager; register the function as a transform to do that.

Built-ins (all vectorized over every series of the batch; meant for validated batches, so put
``validate`` first — a field that is present but not numeric makes the step fail, and its batch goes to
the dead-letter queue with reason ``processing_error``; a field absent from a batch is left alone):

=================  ===========================================================================
``scale``          ``field * factor + offset`` for each of ``fields`` (unit changes, calibration)
``clip``           bound ``fields`` to ``[lower, upper]`` (either bound may be omitted)
``rename``         rename fields: ``mapping = {"old": "new"}``
``drop_fields``    remove ``fields`` from the batch
``series_in``      predicate: keep the rows of the listed ``series``
``series_not_in``  predicate: drop the rows of the listed ``series``
``value_between``  predicate: keep rows whose ``field`` lies in ``[lower, upper]`` (NaN never does)
=================  ===========================================================================

Other packages add transforms through the entry-point group ``nexus_kernel.transforms``: a subclass of
:class:`Transform` (or :class:`Predicate`) with a ``name``, a ``Params`` model and an ``example``.

Why no pandas ``query`` strings: ``DataFrame.query`` evaluates an expression language that can call
functions and reach attributes (``@`` names, methods), so a query string in a spec would be code. Use a
registered predicate in a spec; in a notebook, ``pipe.filter(lambda b: b.eval("value > 3"))``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._registry import Registry
from ..records import ATTRS, KEY_COLUMNS, SERIES, name_fault

__all__ = [
    "Clip",
    "DropFields",
    "Predicate",
    "Rename",
    "Scale",
    "SeriesIn",
    "SeriesNotIn",
    "Transform",
    "TransformError",
    "ValueBetween",
    "make_transform",
    "transforms",
]

transforms: Registry[type["Transform"]] = Registry("transforms")

_RESERVED = frozenset((*KEY_COLUMNS, ATTRS))


class TransformError(ValueError):
    """Parameters a transform does not accept, or a transform used where it does not fit."""


_MAX_FIELD_NAME = 256  # the max_name_length default: a transform's params are checked before settings exist


def _field_name(name: str) -> str:
    if name in _RESERVED:
        raise ValueError(f"'{name}' is a key column of the batch, not a field")
    fault = name_fault(name, _MAX_FIELD_NAME)  # the validator's own rule: rename must not mint a bad name
    if fault is not None:
        raise ValueError(f"a field name {fault}")
    return name


FieldName = Annotated[str, Field(min_length=1, max_length=_MAX_FIELD_NAME), AfterValidator(_field_name)]
Fields = Annotated[list[FieldName], Field(min_length=1, max_length=1024)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
SeriesList = Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1,
                                                                                          max_length=100_000)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Bounds(_Params):
    """``lower`` and/or ``upper``, finite, in order (clip and value_between share the rule)."""

    lower: Finite | None = None
    upper: Finite | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "_Bounds":
        if self.lower is None and self.upper is None:
            raise ValueError("give lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError("lower must not exceed upper")
        return self


class Transform:
    """A registered batch function: ``Transform(**params)(batch) -> batch``; never changes its input.

    Subclasses set ``name`` (their registry name), ``Params`` (a pydantic model: the accepted parameters,
    extra ones refused) and ``example`` (parameters that the conformance suite builds it with), and
    implement :meth:`__call__`.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = _Params
    example: ClassVar[dict[str, Any]] = {}
    params: BaseModel  # an instance of Params; subclasses name their own model, so its fields type-check

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params.model_validate(params)
        except ValidationError as exc:
            # our own words and field names only: pydantic's text would echo the values given
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}"
                                 for e in exc.errors(include_input=False))
            raise TransformError(f"transform '{self.name}': {problems}") from None

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The parameters that rebuild this transform, with its name under ``transform``."""
        return {"transform": self.name, **self.params.model_dump(mode="json")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class Predicate(Transform):
    """A transform that keeps the rows where :meth:`mask` is true; ``filter`` takes only these."""

    def mask(self, batch: pd.DataFrame) -> pd.Series:
        raise NotImplementedError

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return batch[self.mask(batch).to_numpy(dtype=bool)]


def make_transform(name: str, **params: Any) -> Transform:
    """Build the registered transform ``name`` with ``params`` (checked by its model)."""
    return transforms.get(name)(**params)


def _numeric(batch: pd.DataFrame, field: str) -> pd.Series:
    column = batch[field]
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise TypeError(f"field '{field}' is not numeric (put validate before this step)")
    return column


@transforms.register("scale")
class Scale(Transform):
    """``field * factor + offset`` for each of ``fields`` present in the batch."""

    class Params(_Params):
        fields: Fields = ["value"]
        factor: Finite = 1.0
        offset: Finite = 0.0

    name = "scale"
    params: Params  # the model above: its fields, typed
    example = {"fields": ["value"], "factor": 2.0, "offset": -1.0}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        out = batch.copy(deep=False)
        for field in p.fields:
            if field in out.columns:
                out[field] = _numeric(out, field) * p.factor + p.offset
        return out


@transforms.register("clip")
class Clip(Transform):
    """Bound each of ``fields`` to ``[lower, upper]``; NaN stays NaN."""

    class Params(_Bounds):
        fields: Fields = ["value"]

    name = "clip"
    params: Params  # the model above: its fields, typed
    example = {"fields": ["value"], "lower": 0.0, "upper": 5.0}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        out = batch.copy(deep=False)
        for field in p.fields:
            if field in out.columns:
                out[field] = _numeric(out, field).clip(lower=p.lower, upper=p.upper)
        return out


@transforms.register("rename")
class Rename(Transform):
    """Rename fields (``{"old": "new"}``); a new name that another field of the batch already has fails."""

    class Params(_Params):
        mapping: Annotated[dict[FieldName, FieldName], Field(min_length=1, max_length=1024)]

        @model_validator(mode="after")
        def _distinct(self) -> "Rename.Params":
            if len(set(self.mapping.values())) != len(self.mapping):
                raise ValueError("two fields cannot get the same new name")
            return self

    name = "rename"
    params: Params  # the model above: its fields, typed
    example = {"mapping": {"value": "reading"}}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        present = {old: new for old, new in self.params.mapping.items() if old in batch.columns}
        clash = sorted(set(present.values()) & (set(batch.columns) - set(present)))
        if clash:
            raise ValueError(f"cannot rename to {clash}: the batch already has such a field")
        return batch.rename(columns=present)


@transforms.register("drop_fields")
class DropFields(Transform):
    """Remove ``fields`` from the batch (those it does not have are ignored)."""

    class Params(_Params):
        fields: Fields

    name = "drop_fields"
    params: Params  # the model above: its fields, typed
    example = {"fields": ["value"]}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return batch.drop(columns=[f for f in self.params.fields if f in batch.columns])


class _SeriesParams(_Params):
    series: SeriesList


@transforms.register("series_in")
class SeriesIn(Predicate):
    """Keep the rows whose series key is one of ``series``."""

    Params = _SeriesParams
    name = "series_in"
    params: _SeriesParams  # the model above: its fields, typed
    example = {"series": ["a"]}

    def mask(self, batch: pd.DataFrame) -> pd.Series:
        return batch[SERIES].astype(str).isin(self.params.series)


@transforms.register("series_not_in")
class SeriesNotIn(Predicate):
    """Drop the rows whose series key is one of ``series``."""

    Params = _SeriesParams
    name = "series_not_in"
    params: _SeriesParams  # the model above: its fields, typed
    example = {"series": ["a"]}

    def mask(self, batch: pd.DataFrame) -> pd.Series:
        return ~batch[SERIES].astype(str).isin(self.params.series)


@transforms.register("value_between")
class ValueBetween(Predicate):
    """Keep rows whose ``field`` is within ``[lower, upper]`` (``inclusive=False``: strictly inside); an
    omitted bound is open. A row whose field is NaN, or a batch without the field, passes nothing.
    """

    class Params(_Bounds):
        field: FieldName = "value"
        inclusive: bool = True

    name = "value_between"
    params: Params  # the model above: its fields, typed
    example = {"field": "value", "lower": 1.0, "upper": 3.0}

    def mask(self, batch: pd.DataFrame) -> pd.Series:
        p = self.params
        if p.field not in batch.columns:
            return pd.Series(False, index=batch.index)
        lower = -math.inf if p.lower is None else p.lower
        upper = math.inf if p.upper is None else p.upper
        return _numeric(batch, p.field).between(lower, upper, inclusive="both" if p.inclusive else "neither")
