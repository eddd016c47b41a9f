"""Rolling features per series, vectorized across every series of a batch.

For each row of a batch and each numeric field, :class:`FeatureExtractor` computes over the trailing
``window`` points of the row's series: ``mean``, ``std``, ``min``, ``max``, the chosen quantiles
(``q10``, ``q50``, ...), ``slope`` (least-squares slope against time, per second), ``roc`` (rate of change
from the first point of the window to this one, per second), ``acf<k>`` (autocorrelation at each chosen
lag ``k`` within the window), and per series ``period`` (dominant period in points, 0 when none) and
``seasonality`` (strength of that season in [0, 1]), both from :mod:`nexus_kernel.analysis.seasonality`.

The same object works in a notebook on a whole DataFrame and as an engine step on micro-batches: it keeps
the last ``max(window, season_window)`` points of every series, so features of a micro-batch equal those
of the whole stream cut anywhere (memory is bounded by that many points per series and field).

Caveats
-------
* ``period`` and ``seasonality`` are computed once per series per call, on the trailing
  ``season_window`` points at the end of the call, and repeated on that series' rows of the call: a season
  is a property of many points, not of one.
* Rows whose field is NaN are kept in the output with NaN features for that field; they do not enter
  any window. Rows are returned in input order.
* Features need ``min_periods`` points in the window (default 2); before that they are NaN.

Example
-------
>>> import numpy as np, pandas as pd
>>> ts = pd.date_range("2024-01-01", periods=200, freq="1min", tz="UTC")
>>> df = pd.DataFrame({"series": "a", "ts": ts, "value": np.sin(np.arange(200) * 2 * np.pi / 20)})
>>> out = FeatureExtractor(window=40)(df)
>>> int(out["period"].iloc[-1])
20

References
----------
Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed.), §4.2 (STL features:
seasonal strength). Box, Jenkins & Reinsel, *Time Series Analysis*, ch. 2 (autocorrelation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nexus_kernel.analysis.seasonality import dominant_period, seasonal_strength
from nexus_kernel.records import SERIES, TIME, field_columns

if TYPE_CHECKING:  # pandas spells it RollingGroupby (pandas.api.typing); its stubs, RollingGroupBy
    from pandas.api.typing import RollingGroupBy

__all__ = ["FeatureExtractor", "rolling_features"]


# -- rolling features ----------------------------------------------------------------------------


class FeatureExtractor:
    """Rolling features per series; call it on a batch, get one row per input row and field.

    Parameters
    ----------
    window
        Points in each rolling window.
    fields
        Numeric fields to describe; default every field column of the batch.
    lags
        Lags (in points) of the rolling autocorrelation features ``acf<k>``.
    quantiles
        Quantiles to report, as ``q<100·p>`` columns.
    season_window
        Trailing points used for ``period`` and ``seasonality``.
    min_periods
        Points a window needs before its features are reported.

    Output columns: ``series``, ``ts``, ``field`` (plus ``stream`` when the batch has it), then the
    features. The frame's index is the input's row position repeated once per field.
    """

    def __init__(
        self,
        window: int = 60,
        fields: Sequence[str] | None = None,
        lags: Sequence[int] = (1,),
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        season_window: int = 1024,
        min_periods: int = 2,
    ) -> None:
        if window < 2:
            raise ValueError("window must be at least 2 points")
        if any(lag < 1 or lag >= window for lag in lags):
            raise ValueError("every lag must be between 1 and window - 1")
        if any(not 0.0 <= q <= 1.0 for q in quantiles):
            raise ValueError("quantiles must lie in [0, 1]")
        self.window = int(window)
        self.fields = tuple(fields) if fields is not None else None
        self.lags = tuple(int(lag) for lag in lags)
        self.quantiles = tuple(float(q) for q in quantiles)
        self.season_window = int(season_window)
        self.min_periods = max(1, int(min_periods))
        self._tail: pd.DataFrame | None = None  # last points of each series, carried across calls

    @property
    def feature_names(self) -> list[str]:
        names = ["mean", "std", "min", "max"]
        names += [_qname(q) for q in self.quantiles]
        names += ["slope", "roc"] + [f"acf{lag}" for lag in self.lags] + ["period", "seasonality"]
        return names

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if SERIES not in batch.columns or TIME not in batch.columns:
            raise ValueError(f"a batch needs '{SERIES}' and '{TIME}' columns (got {list(batch.columns)})")
        fields = list(self.fields) if self.fields is not None else field_columns(batch)
        fields = [f for f in fields if f != "stream"]
        missing = [f for f in fields if f not in batch.columns]
        if missing:
            raise ValueError(f"fields not in the batch: {missing}")
        keep = [SERIES, TIME, *fields]
        new = batch[keep].copy()
        new[TIME] = _utc(new[TIME])
        new["_row"] = np.arange(len(new))
        history = self._tail if self._tail is not None else new.iloc[:0]
        history = history.reindex(columns=new.columns)
        history["_row"] = -1
        frame = pd.concat([history, new], ignore_index=True) if len(history) else new.reset_index(drop=True)
        frame = frame.sort_values([SERIES, TIME], kind="stable").reset_index(drop=True)
        # rolling windows need only the last window-1 carried points; the season uses all of them
        if len(history):
            recent = frame.groupby(SERIES, sort=False).cumcount(ascending=False)
            fresh_after = frame["_row"].ge(0).groupby(frame[SERIES], sort=False).transform("sum")
            short = frame[(frame["_row"] >= 0) | (recent < fresh_after + self.window - 1)]
            short = short.reset_index(drop=True)
        else:
            short = frame
        parts = [self._describe(short, f, frame) for f in fields]
        self._keep_tail(frame, fields)
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        out = out[out["_row"] >= 0].sort_values(["_row", "field"], kind="stable")
        if "stream" in batch.columns:
            out.insert(0, "stream", batch["stream"].to_numpy()[out["_row"].to_numpy()])
        index = batch.index[out["_row"].to_numpy()]
        return out.drop(columns="_row").set_index(index)

    def _describe(self, frame: pd.DataFrame, field: str, long: pd.DataFrame) -> pd.DataFrame:
        w, mp = self.window, self.min_periods
        values = frame[field].astype("float64")
        valid = values.notna().to_numpy()
        sub = frame.loc[valid, [SERIES, TIME, "_row"]].reset_index(drop=True)
        x = values[valid].reset_index(drop=True)
        key = sub[SERIES]
        secs = (sub[TIME] - sub[TIME].groupby(key, sort=False).transform("first")).dt.total_seconds()
        group = x.groupby(key, sort=False)

        def roll(s: pd.Series) -> RollingGroupBy[pd.Series]:
            return s.groupby(key, sort=False).rolling(w, min_periods=mp)

        def flat(r: pd.Series) -> np.ndarray:  # groupby-rolling output back to row order
            return r.reset_index(level=0, drop=True).sort_index().to_numpy()

        feats: dict[str, np.ndarray] = {}
        rolled = group.rolling(w, min_periods=mp)
        feats["mean"] = flat(rolled.mean())
        feats["std"] = flat(rolled.std())
        feats["min"] = flat(rolled.min())
        feats["max"] = flat(rolled.max())
        for q in self.quantiles:
            feats[_qname(q)] = flat(rolled.quantile(q))
        # slope against time: cov(x, t) / var(t) from rolling moments; x and t are shifted to the
        # series' first point so the moments stay small
        x0 = x - group.transform("first")
        mt, mx = flat(roll(secs).mean()), flat(roll(x0).mean())
        mtt, mxt = flat(roll(secs * secs).mean()), flat(roll(secs * x0).mean())
        var_t = mtt - mt * mt
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(var_t > 1e-12, (mxt - mx * mt) / var_t, np.nan)
        feats["slope"] = slope
        first_x = _window_first(x, key, w)
        first_t = _window_first(secs, key, w)
        span = secs.to_numpy() - first_t
        with np.errstate(divide="ignore", invalid="ignore"):
            feats["roc"] = np.where(span > 0, (x.to_numpy() - first_x) / span, np.nan)
        for lag in self.lags:
            feats[f"acf{lag}"] = self._rolling_acf(x0, key, lag)
        period, strength = self._seasons(x, key, long, field)
        feats["period"], feats["seasonality"] = period, strength
        out = pd.DataFrame({SERIES: sub[SERIES], TIME: sub[TIME].astype("datetime64[ns, UTC]"), "field": field,
                            "_row": sub["_row"]})
        for name, arr in feats.items():
            out[name] = arr
        if not valid.all():  # NaN rows stay in the output with NaN features
            gone = frame.loc[~valid, [SERIES, TIME, "_row"]].assign(field=field)
            gone[TIME] = gone[TIME].astype("datetime64[ns, UTC]")
            out = pd.concat([out, gone], ignore_index=True)
        return out

    def _rolling_acf(self, x: pd.Series, key: pd.Series, lag: int) -> np.ndarray:
        """Correlation of (x_t, x_{t-lag}) over the pairs inside each window."""
        lagged = x.groupby(key, sort=False).shift(lag)
        pair = lagged.notna()
        a = x.where(pair)
        b = lagged
        n = self.window - lag

        def mean(s: pd.Series) -> np.ndarray:
            r = s.groupby(key, sort=False).rolling(n, min_periods=max(2, self.min_periods)).mean()
            return r.reset_index(level=0, drop=True).sort_index().to_numpy()

        ma, mb = mean(a), mean(b)
        cov = mean(a * b) - ma * mb
        va, vb = mean(a * a) - ma * ma, mean(b * b) - mb * mb
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = np.sqrt(np.clip(va, 0, None) * np.clip(vb, 0, None))
            return np.where(denom > 1e-12, np.clip(cov / denom, -1.0, 1.0), np.nan)

    def _seasons(self, x: pd.Series, key: pd.Series, long: pd.DataFrame, field: str
                 ) -> tuple[np.ndarray, np.ndarray]:
        period = np.zeros(len(x))
        strength = np.zeros(len(x))
        history = long.groupby(SERIES, sort=False)[field]
        for name, idx in key.groupby(key, sort=False).indices.items():
            values = history.get_group(name).to_numpy(dtype="float64")
            tail = values[np.isfinite(values)][-self.season_window:]
            p = dominant_period(tail, max_period=self.season_window // 3)
            period[idx] = p or 0
            strength[idx] = seasonal_strength(tail, p)
        return period, strength

    def _keep_tail(self, frame: pd.DataFrame, fields: list[str]) -> None:
        keep = max(self.window, self.season_window)
        self._tail = frame.groupby(SERIES, sort=False).tail(keep).drop(columns="_row").reset_index(drop=True)

    def reset(self) -> None:
        """Forget every series' carried points."""
        self._tail = None


def rolling_features(df: pd.DataFrame, window: int = 60, **options) -> pd.DataFrame:
    """Notebook form of :class:`FeatureExtractor`: features of a whole frame in one call.

    A frame without a ``series`` column is taken as a single series named ``""``.
    """
    if SERIES not in df.columns:
        df = df.assign(**{SERIES: ""})
    return FeatureExtractor(window=window, **options)(df)


def _window_first(x: pd.Series, key: pd.Series, w: int) -> np.ndarray:
    """Value at the first position of each row's trailing window (the series' first point early on)."""
    pos = key.groupby(key, sort=False).cumcount().to_numpy()
    idx = np.arange(len(x)) - np.minimum(pos, w - 1)
    return x.to_numpy()[idx]


def _qname(q: float) -> str:
    return f"q{round(q * 100):g}"


def _utc(ts: pd.Series) -> pd.Series:
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        return ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    return pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]")
