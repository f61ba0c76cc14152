"""The feature kernel: one compiled loop that applies events and writes feature rows.

``run(events, istate, fstate, ipar, fpar, out, row_ev, reasons)`` walks events in
order, validates each, applies it to the book held in the state arrays, and at
every accepted end-of-batch writes one feature row. The batch path calls it once
on a whole array; the live path calls it per batch of frames (or per event). There is no
other implementation of any formula in :mod:`streamsig.features.spec`.

Validation (reason codes from :class:`streamsig.book.events.Reason`): NaN/inf or
negative sizes, a sequence that goes
backwards or reopens a closed batch, a depth event without exactly one side, and
a crossed or locked book after a batch. A crossed batch leaves the book
untrusted: later events are dropped with ``RESYNC`` until a CLEAR snapshot.
A sequence gap (a batch more than one above the last) also forces a resync.
Snapshot events of an update already applied are skipped (``DUPLICATE``):
that is how a healthy stream passes over periodic snapshots. A delete of a
level the book does not hold is a no-op counted as ``BENIGN_DELETE`` (the
count is in the reasons array, hence in ``FeatureTable.rejects``); it is not a
reject and does not stop the batch from producing a row. The kernel names
the codes through the ``R_*`` module ints below, taken from ``Reason`` (numba
reads module-level ints as compile-time constants).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from streamsig.book import events as E
from streamsig.book.book import set_level
from streamsig.features import spec as S

_NAN = np.nan
# reason codes as plain module ints (numba freezes globals into the compiled kernel)
R_OK = int(E.Reason.OK)
R_NAN = int(E.Reason.NAN)
R_NEGATIVE_SIZE = int(E.Reason.NEGATIVE_SIZE)
R_SEQUENCE = int(E.Reason.SEQUENCE)
R_CROSSED = int(E.Reason.CROSSED)
R_BAD_FLAGS = int(E.Reason.BAD_FLAGS)
R_RESYNC = int(E.Reason.RESYNC)
R_DUPLICATE = int(E.Reason.DUPLICATE)
R_BENIGN_DELETE = int(E.Reason.BENIGN_DELETE)


@nb.njit(cache=True, error_model="numpy")
def _write_row(ist, fst, ipar, fpar, out, r, ts):
    L = ipar[S.P_L]
    o_bpx, o_apx, o_pbpx, o_papx = ipar[S.P_OBPX], ipar[S.P_OAPX], ipar[S.P_OPBPX], ipar[S.P_OPAPX]
    o_bsz, o_asz, o_pbsz, o_pasz = ipar[S.P_OBSZ], ipar[S.P_OASZ], ipar[S.P_OPBSZ], ipar[S.P_OPASZ]
    nks, now, nrr, nvr, ntw = ipar[S.P_NKS], ipar[S.P_NOW], ipar[S.P_NRR], ipar[S.P_NVR], ipar[S.P_NTW]
    p_ks = S.P_HEAD
    p_ow = p_ks + nks
    p_rr = p_ow + now
    p_vr = p_rr + nrr
    nimb = ipar[S.P_IMBB]
    f_tab = 1 + ntw
    f_w = f_tab + 2 * nimb
    tick = fpar[0]
    nbid, nask = ist[S.I_NBID], ist[S.I_NASK]
    row = out[r]
    b1 = ist[o_bpx] * tick
    a1 = ist[o_apx] * tick
    qb = fst[o_bsz]
    qa = fst[o_asz]
    mid = 0.5 * (a1 + b1)
    spread = a1 - b1
    spread_ticks = ist[o_apx] - ist[o_bpx]
    q = qb + qa
    row[0] = mid
    row[1] = spread
    row[2] = spread_ticks
    row[3] = spread / mid
    row[4] = (a1 * qb + b1 * qa) / q
    ib = int(qb / q * nimb)
    if ib >= nimb:
        ib = nimb - 1
    sb = 0 if spread_ticks <= 1 else 1
    row[5] = mid + spread * fpar[f_tab + sb * nimb + ib]
    row[6] = (qb - qa) / q
    bpx = ist[o_bpx:o_bpx + L]
    apx = ist[o_apx:o_apx + L]
    bsz = fst[o_bsz:o_bsz + L]
    asz = fst[o_asz:o_asz + L]
    pbpx = ist[o_pbpx:o_pbpx + L]
    papx = ist[o_papx:o_papx + L]
    pbsz = fst[o_pbsz:o_pbsz + L]
    pasz = fst[o_pasz:o_pasz + L]
    ofi_w = fpar[f_w:f_w + L]
    # depth, imbalance and depth VWAP over the best k levels, one cumulative pass
    c_vwap = 7 + 3 * nks + L + 1 + 2 * now
    db = 0.0
    da = 0.0
    nbp = 0.0
    nap = 0.0
    j = 0
    kmax = ipar[p_ks + nks - 1]
    for m in range(kmax):
        if m < nbid:
            x = bsz[m]
            db += x
            nbp += bpx[m] * x
        if m < nask:
            x = asz[m]
            da += x
            nap += apx[m] * x
        if m + 1 == ipar[p_ks + j]:
            c = 7 + 3 * j
            row[c] = db
            row[c + 1] = da
            row[c + 2] = (db - da) / (db + da) if db + da > 0 else 0.0
            c = c_vwap + 2 * j
            row[c] = nbp * tick / db if db > 0 else _NAN
            row[c + 1] = nap * tick / da if da > 0 else _NAN
            j += 1
    # OFI per level against the previous state; then remember this state
    c = 7 + 3 * nks
    have_prev = ist[S.I_HAVE_PREV]
    ofi_dw = 0.0
    e1 = 0.0
    for m in range(L):
        bb, qbb, aa, qaa = 0, 0.0, 0, 0.0
        if m < nbid:
            bb, qbb = bpx[m], bsz[m]
        if m < nask:
            aa, qaa = apx[m], asz[m]
        e = 0.0
        if have_prev:
            # branch-free: a missing level (size 0) counts as an unchanged price
            pb, pa = pbpx[m], papx[m]
            qpb, qpa = pbsz[m], pasz[m]
            mb = (qbb == 0.0) | (qpb == 0.0)
            ma = (qaa == 0.0) | (qpa == 0.0)
            e = (((bb >= pb) | mb) * qbb - ((bb <= pb) | mb) * qpb
                 - ((aa <= pa) | ma) * qaa + ((aa >= pa) | ma) * qpa)
        pbpx[m] = bb
        pbsz[m] = qbb
        papx[m] = aa
        pasz[m] = qaa
        row[c + m] = e
        if m == 0:
            e1 = e
        ofi_dw += e * ofi_w[m]
    ist[S.I_HAVE_PREV] = 1
    c += L
    row[c] = ofi_dw
    c += 1
    # rolling OFI sums over the last w states (running sums over a ring)
    rows = ist[S.I_ROWS]  # states before this one
    wmask = ipar[S.P_WMAX] - 1
    o_ofi, o_ofisum = ipar[S.P_OOFI], ipar[S.P_OOFISUM]
    for j in range(now):
        w = ipar[p_ow + j]
        s1 = fst[o_ofisum + 2 * j] + e1
        s2 = fst[o_ofisum + 2 * j + 1] + ofi_dw
        if rows >= w:
            old = (rows - w) & wmask
            s1 -= fst[o_ofi + 2 * old]
            s2 -= fst[o_ofi + 2 * old + 1]
        fst[o_ofisum + 2 * j] = s1
        fst[o_ofisum + 2 * j + 1] = s2
        row[c] = s1
        row[c + 1] = s2
        c += 2
    slot = rows & wmask
    fst[o_ofi + 2 * slot] = e1
    fst[o_ofi + 2 * slot + 1] = ofi_dw
    c += 2 * nks  # depth VWAPs were written above
    # trade VWAP
    tsz = fst[S.F_TRADE_SZ]
    row[c] = fst[S.F_TRADE_PXSZ] / tsz if ist[S.I_TRADES] > 0 and tsz > 0 else _NAN
    c += 1
    # returns and realised volatility over states
    hmask = ipar[S.P_HMAX] - 1
    o_lm, o_r2, o_r2sum = ipar[S.P_OLM], ipar[S.P_OR2], ipar[S.P_OR2SUM]
    lm = math.log(mid)
    fst[o_lm + (rows & hmask)] = lm
    r2 = 0.0
    if rows >= 1:
        d = lm - fst[S.F_LAST_LM]
        r2 = d * d
    fst[S.F_LAST_LM] = lm
    for j in range(nrr):
        h = ipar[p_rr + j]
        row[c] = lm - fst[o_lm + ((rows - h) & hmask)] if rows >= h else _NAN
        c += 1
    # the i-th return (i = rows) sits in slot (rows - 1) & hmask; sums hold the last h returns
    for j in range(nvr):
        h = ipar[p_vr + j]
        if rows >= 1:
            s = fst[o_r2sum + j] + r2
            if rows - 1 >= h:
                s -= fst[o_r2 + ((rows - 1 - h) & hmask)]
            if s < 0.0:
                s = 0.0
            fst[o_r2sum + j] = s
        row[c] = math.sqrt(fst[o_r2sum + j]) if rows >= h else _NAN
        c += 1
    if rows >= 1:
        fst[o_r2 + ((rows - 1) & hmask)] = r2
    # time windows: ring of (ts, log mid, cumulative r2)
    tc = ipar[S.P_TC]
    tmask = tc - 1
    o_tptr, o_tts, o_tlm, o_tr2 = ipar[S.P_OTPTR], ipar[S.P_OTTS], ipar[S.P_OTLM], ipar[S.P_OTR2]
    cum = fst[S.F_CUM_R2] + r2
    fst[S.F_CUM_R2] = cum
    head = ist[S.I_THEAD]
    hs = head & tmask
    ist[o_tts + hs] = ts
    fst[o_tlm + hs] = lm
    fst[o_tr2 + hs] = cum
    ist[S.I_THEAD] = head + 1
    oldest = head + 1 - tc if head + 1 > tc else 0
    for j in range(ntw):
        cut = ts - fpar[1 + j]
        p = ist[o_tptr + j]
        if p < oldest:
            p = oldest
        while p + 1 <= head and ist[o_tts + ((p + 1) & tmask)] <= cut:
            p += 1
        ist[o_tptr + j] = p
        ps = p & tmask
        if ist[o_tts + ps] <= cut:
            row[c] = lm - fst[o_tlm + ps]
            v = cum - fst[o_tr2 + ps]
            row[c + 1] = math.sqrt(v) if v > 0 else 0.0
        else:
            row[c] = _NAN
            row[c + 1] = _NAN
        c += 2
    ist[S.I_ROWS] = rows + 1


@nb.njit(cache=True, error_model="numpy")
def run(ev, ist, fst, ipar, fpar, out, row_ev, reasons):
    """Apply ``ev`` to the state; write feature rows; return the number of rows.

    ``out`` needs at least one row per EOB event; ``row_ev[i]`` is the index in
    ``ev`` of the event that closed row ``i``; ``reasons[k]`` is the reason code
    for event ``k`` (0 = accepted).
    """
    cap = ipar[S.P_CAP]
    o_bpx, o_apx, o_bsz, o_asz = ipar[S.P_OBPX], ipar[S.P_OAPX], ipar[S.P_OBSZ], ipar[S.P_OASZ]
    tw = ipar[S.P_TRADEW]
    tmask = ipar[S.P_TRADER] - 1
    o_trd = ipar[S.P_OTRD]
    bpx = ist[o_bpx:o_bpx + cap]
    apx = ist[o_apx:o_apx + cap]
    bsz = fst[o_bsz:o_bsz + cap]
    asz = fst[o_asz:o_asz + cap]
    nrows = 0
    for k in range(ev.shape[0]):
        f = ev[k]["flags"]
        seq = ev[k]["seq"]
        size = ev[k]["size"]
        eob = (f & E.EOB) != 0
        reason = R_OK
        if (f & E.SNAPSHOT) != 0 and seq <= ist[S.I_LAST_EOB_SEQ] and ist[S.I_RESYNC] == 0:
            reasons[k] = R_DUPLICATE  # a periodic snapshot of a state we already hold
            continue
        if f & E.CLEAR:
            ist[S.I_NBID] = 0
            ist[S.I_NASK] = 0
            ist[S.I_RESYNC] = 0
            ist[S.I_HAVE_PREV] = 0
            ist[S.I_LAST_SEQ] = seq
            ist[S.I_LAST_EOB_SEQ] = seq - 1
        elif seq < ist[S.I_LAST_SEQ] or seq <= ist[S.I_LAST_EOB_SEQ]:
            reason = R_SEQUENCE
        elif seq > ist[S.I_LAST_EOB_SEQ] + 1 and ist[S.I_LAST_SEQ] == ist[S.I_LAST_EOB_SEQ]:
            ist[S.I_RESYNC] = 1  # gap: missed batches; wait for a snapshot
        if reason == R_OK and ist[S.I_RESYNC] == 1:
            reason = R_RESYNC
        if reason == R_OK and (f & (E.DEPTH | E.TRADE)) != 0:
            if not math.isfinite(size):
                reason = R_NAN
            elif size < 0.0:
                reason = R_NEGATIVE_SIZE
            elif ((f & E.BUY) != 0) == ((f & E.SELL) != 0) and (f & E.DEPTH) != 0:
                reason = R_BAD_FLAGS
        if reason == R_OK:
            ist[S.I_LAST_SEQ] = seq
            if f & E.DEPTH:
                if f & E.BUY:
                    n, rr = set_level(bpx, bsz, ist[S.I_NBID], ev[k]["price"], size, True)
                    ist[S.I_NBID] = n
                else:
                    n, rr = set_level(apx, asz, ist[S.I_NASK], ev[k]["price"], size, False)
                    ist[S.I_NASK] = n
                reason = rr
            if f & E.TRADE:
                t = ist[S.I_TRADES]
                slot = t & tmask
                pxsz = ev[k]["price"] * fpar[0] * size
                fst[S.F_TRADE_PXSZ] += pxsz
                fst[S.F_TRADE_SZ] += size
                if t >= tw:
                    old = (t - tw) & tmask
                    fst[S.F_TRADE_PXSZ] -= fst[o_trd + 2 * old]
                    fst[S.F_TRADE_SZ] -= fst[o_trd + 2 * old + 1]
                fst[o_trd + 2 * slot] = pxsz
                fst[o_trd + 2 * slot + 1] = size
                ist[S.I_TRADES] = t + 1
        if eob and reason != R_SEQUENCE and ist[S.I_RESYNC] == 0:
            ist[S.I_LAST_EOB_SEQ] = seq
            ist[S.I_LAST_SEQ] = seq
            nb_, na_ = ist[S.I_NBID], ist[S.I_NASK]
            if nb_ > 0 and na_ > 0:
                if ist[o_bpx] >= ist[o_apx]:
                    if reason == R_OK or reason == R_BENIGN_DELETE:  # a benign delete does not hide a cross
                        reason = R_CROSSED
                    ist[S.I_RESYNC] = 1
                else:
                    _write_row(ist, fst, ipar, fpar, out, nrows, ev[k]["exch_ts"])
                    row_ev[nrows] = k
                    nrows += 1
        reasons[k] = reason
    return nrows
