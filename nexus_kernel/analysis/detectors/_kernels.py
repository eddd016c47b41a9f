"""Compiled helpers shared by the detectors: a sorted window with O(w) insert/remove and its median/MAD.

numba is used because these recurrences are sequential (each point's score depends on the state the
previous point left), which numpy cannot vectorize; a compiled loop scores millions of points a second.
``cache=True`` keeps the compiled code on disk so a process pays the compile once.
"""

from __future__ import annotations

from numba import njit

__all__ = ["sorted_insert", "sorted_remove", "median_mad", "EPS"]

EPS = 1e-9


@njit(cache=True, nogil=True)
def _lower_bound(srt, c, v):
    """First index of srt[:c] (sorted) whose value is not below v."""
    lo, hi = 0, c
    while lo < hi:
        mid = (lo + hi) >> 1
        if srt[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def sorted_insert(srt, c, v):
    lo = _lower_bound(srt, c, v)
    for j in range(c, lo, -1):
        srt[j] = srt[j - 1]
    srt[lo] = v


@njit(cache=True, nogil=True)
def sorted_remove(srt, c, v):
    lo = _lower_bound(srt, c, v)
    for j in range(lo, c - 1):
        srt[j] = srt[j + 1]


@njit(cache=True, nogil=True)
def median_mad(srt, c):
    """(median, MAD) of the first ``c`` sorted values, lower medians, O(c/2)."""
    m = (c - 1) >> 1
    med = srt[m]
    lo, hi = m, m + 1
    d = 0.0
    for _ in range(((c - 1) >> 1) + 1):  # walk outwards from the median in order of |x - med|
        if lo >= 0 and (hi >= c or med - srt[lo] <= srt[hi] - med):
            d = med - srt[lo]
            lo -= 1
        elif hi < c:
            d = srt[hi] - med
            hi += 1
    return med, d
