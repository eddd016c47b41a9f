"""Compiled core of :mod:`.context_ose`: CAD OSE's context memory in flat, growable numpy arrays.

Written from the algorithm of M. Smirnov's Contextual Anomaly Detector, Open Source Edition
(``nab/detectors/context_ose`` in numenta/NAB), not from its code. The Python original keeps
semi-contexts and contexts in dicts of lists; here every table is a numpy array so the state pickles
and a numba loop runs it:

* *facts* are indices: ``0..63`` sensor facts (bit ``s`` of the quantised value is fact ``2s + bit``;
  62 marks a value below the range, a case the original never meets because NAB hands it the file's
  minimum) and ``64 + c`` the "neuron" fact of context ``c``;
* a left semi-context is a sorted fact list in ``pool``; a right one (always a subset of the sensor
  facts) a bit mask; both are keyed, as in the original, by CPython 2's tuple hash of the fact values
  (``65536 + i`` and ``2**31 + c``), which also breaks ties when the most active contexts are chosen;
* ``fact -> semi-contexts`` lists are linked lists (``adjL``/``adjR``), a semi-context's contexts a
  linked list in creation order (the original iterates a Python 2 dict, whose order only changes
  which of several new contexts gets the lower id);
* open-addressing hash tables map hashes to semi-context ids and (left, right) to context ids.

The kernel stops before a point when the arrays might overflow during it and returns how far it got;
the Python side doubles the capacity and calls again, so nothing is lost.
"""

from __future__ import annotations

import numpy as np
from numba import njit

KS = 64  # sensor fact slots; neuron facts start here
NEG = 62  # "below the range" marker fact
ABOVE = 60  # "above the range" marker fact (clipped encoding only)
# columns of the left semi-context table
L_HASH, L_LEN, L_CNT, L_START, L_HEAD, L_TAIL, L_NCTX = range(7)
# columns of the right semi-context table
R_HASH, R_LEN, R_CNT, R_MASK = range(4)
# columns of the context table
C_N, C_HIT, C_ACT, C_R, C_L, C_ZERO, C_NEXT = range(7)
# slots of the integer counters
I_NL, I_NR, I_NC, I_POOL, I_NAL, I_NAR, I_NXL, I_NXR, I_NG, I_PRED, I_QUIET, I_STEP = range(12)

_GOLD = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def fact_value(f):
    return 65536 + f if f < KS else 2147483648 + (f - KS)


@njit(cache=True, nogil=True)
def py2_hash_facts(facts, n):
    """CPython 2's ``hash(tuple)`` of the fact values (ints hash to themselves there)."""
    x = np.uint64(0x345678)
    mult = np.uint64(1000003)
    for i in range(n):
        x = (x ^ np.uint64(fact_value(facts[i]))) * mult
        mult += np.uint64(82520 + 2 * (n - 1 - i))
    x += np.uint64(97531)
    h = np.int64(x)
    return -2 if h == -1 else h


@njit(cache=True, nogil=True)
def py2_hash_mask(mask, buf):
    n = 0
    for f in range(KS):
        if (mask >> f) & 1:
            buf[n] = f
            n += 1
    return py2_hash_facts(buf, n)


@njit(cache=True, nogil=True)
def _slot(key, size):
    return np.int64((np.uint64(key) * _GOLD) >> np.uint64(64 - size))


@njit(cache=True, nogil=True)
def table_find(table, bits, keys, key):
    """Index stored under ``key`` (``keys[id] == key``) or -1; ``table`` holds id + 1, 0 = empty."""
    m = (1 << bits) - 1
    s = _slot(key, bits)
    while table[s] != 0:
        if keys[table[s] - 1] == key:
            return table[s] - 1
        s = (s + 1) & m
    return -1


@njit(cache=True, nogil=True)
def table_put(table, bits, key, ident):
    m = (1 << bits) - 1
    s = _slot(key, bits)
    while table[s] != 0:
        s = (s + 1) & m
    table[s] = ident + 1


@njit(cache=True, nogil=True)
def rebuild(table, bits, keys, n):
    table[:] = 0
    for i in range(n):
        table_put(table, bits, keys[i], i)


@njit(cache=True, nogil=True)
def _left(ic, lsc, pool, adjl, headl, hl, hbits, lkeys, start, n, h):
    """Id of the left semi-context with hash ``h`` whose facts sit at ``pool[start:start+n]``; creates it."""
    found = table_find(hl, hbits, lkeys, h)
    if found >= 0:
        return found
    i = ic[I_NL]
    lsc[i, L_HASH], lsc[i, L_LEN], lsc[i, L_CNT], lsc[i, L_START] = h, n, 0, start
    lsc[i, L_HEAD], lsc[i, L_TAIL], lsc[i, L_NCTX] = -1, -1, 0
    lkeys[i] = h
    table_put(hl, hbits, h, i)
    for j in range(n):
        e = ic[I_NAL]
        adjl[e, 0], adjl[e, 1] = i, headl[pool[start + j]]
        headl[pool[start + j]] = e
        ic[I_NAL] += 1
    ic[I_NL] += 1
    ic[I_POOL] = start + n
    return i


@njit(cache=True, nogil=True)
def _right(ic, rsc, adjr, headr, hr, hbits, rkeys, mask, buf):
    h = py2_hash_mask(mask, buf)
    found = table_find(hr, hbits, rkeys, h)
    if found >= 0:
        return found
    i = ic[I_NR]
    n = 0
    for f in range(KS):
        if (mask >> f) & 1:
            e = ic[I_NAR]
            adjr[e, 0], adjr[e, 1] = i, headr[f]
            headr[f] = e
            ic[I_NAR] += 1
            n += 1
    rsc[i, R_HASH], rsc[i, R_LEN], rsc[i, R_CNT], rsc[i, R_MASK] = h, n, 0, mask
    rkeys[i] = h
    table_put(hr, hbits, h, i)
    ic[I_NR] += 1
    return i


@njit(cache=True, nogil=True)
def _context(ic, ctx, lsc, hc, hbits, ckeys, left, right, zero):
    """(id, created) of the context (left, right)."""
    key = left * 4294967296 + right
    found = table_find(hc, hbits, ckeys, key)
    if found >= 0:
        return found, False
    c = ic[I_NC]
    ctx[c, C_N], ctx[c, C_HIT], ctx[c, C_ACT], ctx[c, C_R], ctx[c, C_L] = 0, 0, 0, right, left
    ctx[c, C_ZERO], ctx[c, C_NEXT] = zero, -1
    if lsc[left, L_TAIL] < 0:
        lsc[left, L_HEAD] = c
    else:
        ctx[lsc[left, L_TAIL], C_NEXT] = c
    lsc[left, L_TAIL] = c
    lsc[left, L_NCTX] += 1
    ckeys[c] = key
    table_put(hc, hbits, key, c)
    ic[I_NC] += 1
    return c, True


@njit(cache=True, nogil=True)
def _better(ctx, lsc, rsc, a, b):
    """Context ``a`` ranks above ``b``: more activations, then larger left hash, then right hash."""
    if ctx[a, C_ACT] != ctx[b, C_ACT]:
        return ctx[a, C_ACT] > ctx[b, C_ACT]
    ha, hb = lsc[ctx[a, C_L], L_HASH], lsc[ctx[b, C_L], L_HASH]
    if ha != hb:
        return ha > hb
    return rsc[ctx[a, C_R], R_HASH] > rsc[ctx[b, C_R], R_HASH]


@njit(cache=True, nogil=True)
def encode(v, lo, hi, nbits, clip):
    """Sensor facts of ``v`` as a mask: the bits of ``int((v - lo) / step)``, at least ``nbits`` of them.

    With ``clip`` the level is held to the range and a value beyond it gets the "above"/"below" fact
    instead of more digits (a bounded alphabet for a range guessed online).
    """
    maxbin = float((1 << nbits) - 1)
    full = hi - lo
    if full == 0.0:
        full = maxbin
    q = (v - lo) / (full / maxbin)
    if q != q:
        q = 0.0
    neg = q <= -1.0
    above = False
    if clip:
        if q >= maxbin + 1.0:
            above = True
            q = maxbin
        if neg:
            q = 0.0
    a = abs(q)
    k = int(a) if a < 536870911.0 else 536870911
    nb = 0
    t = k
    while t > 0:
        nb += 1
        t >>= 1
    nb = max(nb, nbits)
    mask = np.int64(0)
    for s in range(nb):
        mask |= np.int64(1) << np.int64(2 * s + ((k >> s) & 1))
    if neg:
        mask |= np.int64(1) << np.int64(NEG)
    if above:
        mask |= np.int64(1) << np.int64(ABOVE)
    return mask


@njit(cache=True, nogil=True)
def run(x, raw, ret, ic, lsc, rsc, ctx, pool, adjl, adjr, headl, headr, hl, hr, hc, hbits, lkeys, rkeys, ckeys,
        crossl, crossr, group, act, potl, potm, poth, stamp, tmp, lo, hi, nbits, max_left, max_active, rest,
        base, max_contexts, clip):
    """Score then learn ``x``; returns how many points were done (fewer when the tables must grow)."""
    n = x.shape[0]
    buf = np.empty(KS, dtype=np.int64)
    top = np.empty(max_active, dtype=np.int64)
    newgroup = np.empty(KS + max_active, dtype=np.int64)
    cap_c, cap_l, cap_r = ctx.shape[0], lsc.shape[0], rsc.shape[0]
    for i in range(n):
        # worst case growth of this step: every context of the crossed left semi-contexts spawns one
        p = 1
        for j in range(ic[I_NXL]):
            p += lsc[crossl[j], L_NCTX]
        ng = ic[I_NG]
        if (ic[I_NC] + p > cap_c or ic[I_NL] + p > cap_l or ic[I_NR] + p > cap_r
                or ic[I_POOL] + p * (ng + 1) > pool.shape[0] or ic[I_NAL] + p * (ng + 1) > adjl.shape[0]
                or ic[I_NAR] + p * 32 > adjr.shape[0]):
            return i
        learn = ic[I_NC] + p <= max_contexts  # the memory cap: past it, no new context is made
        ic[I_STEP] += 1
        step = ic[I_STEP]
        s_mask = encode(x[i], lo, hi, nbits, clip)
        error = (s_mask & ~ic[I_PRED]) != 0

        # 1. the zero-level context (previous left group -> current sensor facts)
        new_flag = False
        new_id = 0  # the original's "False", which compares equal to context 0: context 0 is skipped then
        nuniq_keys = 0
        for j in range(ng):
            stamp[group[j]] = step
        if ng > 0 and learn:
            start = ic[I_POOL]
            for j in range(ng):
                pool[start + j] = group[j]
            gh = py2_hash_facts(group, ng)
            l0 = _left(ic, lsc, pool, adjl, headl, hl, hbits, lkeys, start, ng, gh)
            r0 = _right(ic, rsc, adjr, headr, hr, hbits, rkeys, s_mask, buf)
            c0, created = _context(ic, ctx, lsc, hc, hbits, ckeys, l0, r0, 1)
            if created:
                new_flag = True
                new_id = c0
            else:
                ctx[c0, C_ZERO] = 1
            tmp[0] = gh * 1000003 ^ s_mask
            nuniq_keys = 1

        # 2. cross the right semi-contexts with the sensor facts
        for j in range(ic[I_NXR]):
            rsc[crossr[j], R_CNT] = 0
        nx = 0
        for f in range(KS):
            if (s_mask >> f) & 1:
                e = headr[f]
                while e >= 0:
                    sc = adjr[e, 0]
                    if rsc[sc, R_CNT] == 0:
                        crossr[nx] = sc
                        nx += 1
                    rsc[sc, R_CNT] += 1
                    e = adjr[e, 1]
        ic[I_NXR] = nx

        # 3. update the contexts of the left semi-contexts crossed last step; collect active and new ones
        nact, nsel, npot = 0, 0, 0
        for j in range(ic[I_NXL]):
            lft = crossl[j]
            lcnt = lsc[lft, L_CNT]
            full = lcnt == lsc[lft, L_LEN]
            c = lsc[lft, L_HEAD]
            while c >= 0:
                if c != new_id:
                    r = ctx[c, C_R]
                    rl, rc = rsc[r, R_LEN], rsc[r, R_CNT]
                    spawn = False
                    if full:
                        nsel += 1
                        ctx[c, C_N] += rl
                        if rc > 0:
                            ctx[c, C_HIT] += rc
                            if rl == rc:
                                ctx[c, C_ACT] += 1
                                act[nact] = c
                                nact += 1
                            elif ctx[c, C_ZERO] == 1 and new_flag and lcnt <= max_left:
                                spawn = True
                    elif ctx[c, C_ZERO] == 1 and new_flag and rc > 0 and lcnt <= max_left:
                        spawn = True
                    if spawn:
                        potl[npot] = lft
                        potm[npot] = rsc[r, R_MASK] & s_mask
                        npot += 1
                c = ctx[c, C_NEXT]
        selected_active = nact / nsel if nsel > 0 else 0.0

        # distinct candidate contexts (the left part is the semi-context's facts seen in the last group)
        for k in range(npot):
            lft = potl[k]
            m = 0
            st = lsc[lft, L_START]
            for j in range(lsc[lft, L_LEN]):
                f = pool[st + j]
                if stamp[f] == step:
                    buf[m] = f
                    m += 1
            poth[k] = py2_hash_facts(buf, m)
            tmp[nuniq_keys + k] = poth[k] * 1000003 ^ potm[k]
        total = nuniq_keys + npot
        n_uniq = 0
        if total > 0:
            keys = np.sort(tmp[:total])
            n_uniq = 1
            for j in range(1, total):
                if keys[j] != keys[j - 1]:
                    n_uniq += 1

        # 4. the most active contexts become the neuron facts of the next left group
        ntop = 0
        for j in range(nact):  # ``top`` is kept ascending, the weakest first
            c = act[j]
            if ntop < max_active:
                top[ntop] = c
                k = ntop
                ntop += 1
                while k > 0 and _better(ctx, lsc, rsc, top[k - 1], top[k]):
                    top[k - 1], top[k] = top[k], top[k - 1]
                    k -= 1
            elif _better(ctx, lsc, rsc, c, top[0]):
                top[0] = c
                k = 0
                while k + 1 < ntop and _better(ctx, lsc, rsc, top[k], top[k + 1]):
                    top[k + 1], top[k] = top[k], top[k + 1]
                    k += 1
        m = 0
        for f in range(KS):
            if (s_mask >> f) & 1:
                newgroup[m] = f
                m += 1
        neurons = np.sort(top[:ntop])
        for j in range(ntop):
            newgroup[m + j] = KS + neurons[j]
        m += ntop

        # 5. store the candidate contexts (left facts against the group they were crossed with)
        added = 0
        if learn:
            for k in range(npot):
                lft = potl[k]
                start = ic[I_POOL]
                q = 0
                st = lsc[lft, L_START]
                for j in range(lsc[lft, L_LEN]):
                    f = pool[st + j]
                    if stamp[f] == step:
                        pool[start + q] = f
                        q += 1
                li = _left(ic, lsc, pool, adjl, headl, hl, hbits, lkeys, start, q, poth[k])
                ri = _right(ic, rsc, adjr, headr, hr, hbits, rkeys, potm[k], buf)
                _, created = _context(ic, ctx, lsc, hc, hbits, ckeys, li, ri, 0)
                if created:
                    added += 1

        # 6. cross the left semi-contexts with the new group; predict from the most reliable contexts
        for j in range(ic[I_NXL]):
            lsc[crossl[j], L_CNT] = 0
        nx = 0
        for j in range(m):
            e = headl[newgroup[j]]
            while e >= 0:
                sc = adjl[e, 0]
                if lsc[sc, L_CNT] == 0:
                    tmp[nx] = sc
                    nx += 1
                lsc[sc, L_CNT] += 1
                e = adjl[e, 1]
        order = np.sort(tmp[:nx])
        best = 0.0
        pred = np.int64(0)
        for j in range(nx):
            sc = order[j]
            crossl[j] = sc
            if lsc[sc, L_CNT] == lsc[sc, L_LEN]:
                c = lsc[sc, L_HEAD]
                while c >= 0:
                    w = ctx[c, C_HIT] / ctx[c, C_N] if ctx[c, C_N] > 0 else 0.0
                    if w > best:
                        best = w
                        pred = rsc[ctx[c, C_R], R_MASK]
                    elif w == best:
                        pred |= rsc[ctx[c, C_R], R_MASK]
                    c = ctx[c, C_NEXT]
        ic[I_NXL] = nx
        for j in range(m):
            group[j] = newgroup[j]
        ic[I_NG] = m
        ic[I_PRED] = pred

        if new_flag:
            added += 1
        added_share = added / n_uniq if new_flag and n_uniq > 0 else 0.0
        score = (1.0 - selected_active + added_share) / 2.0 if error else 0.0
        raw[i] = score
        # the rest period: silent while a score >= base is among the last ``rest`` raw scores
        # (the history starts with one 1.0, so the first ``rest`` points are silent too)
        ret[i] = score if ic[I_QUIET] >= rest else 0.0
        if score >= base:
            ic[I_QUIET] = 0
        else:
            ic[I_QUIET] += 1
    return n
