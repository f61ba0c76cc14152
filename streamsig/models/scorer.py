"""Score feature rows with a saved model: only ``model.onnx`` and ``card.json`` are read.

The sha256 of ``model.onnx`` must match the card, or loading stops with a
one-line :class:`ModelLoadError`; the session is built from the very bytes that
were hashed. Nothing is unpickled. If ``features`` is given it must equal the
card's list, names and order.

:class:`Scorer` is for row models (logreg, rf, lightgbm): ``score_one`` copies
the row into a preallocated float32 buffer bound to an onnxruntime session
(one intra-op thread) and runs it through an I/O binding: no input or output
tensors are created per call, and with ``out=`` not even the result.
:class:`SequenceScorer` is for sequence models (LSTM, Transformer): it keeps
the last ``window`` rows per symbol itself; until a symbol has ``window`` finite rows (after start,
:meth:`SequenceScorer.reset`, or a row with NaN/inf) its probabilities are NaN.
Both return NaN probabilities for rows with NaN/inf features, which training
never saw.

Probabilities are float32 (what the model computes), columns down/flat/up.
``score_batch`` gives bit-identical numbers to ``score_one`` for the same rows,
so offline replays reproduce live signals exactly: tree ensembles run as one
batch (onnxruntime evaluates each row on its own, trees in order, on one
thread); other models run row by row, because onnxruntime's matrix kernels
round differently for a batch of one than for larger batches (seen for the
linear model, in the last bit). ``exact=False`` runs any model as one batch:
faster, equal to within float32 rounding.
"""
from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streamsig.models.card import CARD_FILE, MODEL_FILE, model_id_for, read_card, sha256_bytes
from streamsig.models.export import INPUT_NAME, OUTPUT_NAME, session


class ModelLoadError(ValueError):
    """A model folder that must not be used (tampered, mismatched features, wrong kind)."""


def load_verified(model_dir: Path | str, features: Sequence[str] | None = None
                  ) -> tuple[dict[str, Any], bytes]:
    """``(card, onnx bytes)`` after checking the bytes' sha256 and the feature list."""
    model_dir = Path(model_dir)
    try:
        card = read_card(model_dir)
    except ValueError as e:
        raise ModelLoadError(str(e)) from None
    path = model_dir / MODEL_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing") from None
    got, want = sha256_bytes(data), card["onnx"]["sha256"]
    if got != want:
        raise ModelLoadError(f"{path}: sha256 {got[:16]} does not match {CARD_FILE} "
                             f"({str(want)[:16]}); refusing to load")
    mid = model_id_for(str(card["model_type"]), data)
    if card["model_id"] != mid:
        raise ModelLoadError(f"{path}: the card's model id {card['model_id']!r} does not name these bytes "
                             f"(their id is {mid!r}); refusing to load")
    if features is not None:
        check_features(card, features)
    return card, data


def check_features(card: dict[str, Any], features: Sequence[str]) -> None:
    """Raise :class:`ModelLoadError` unless ``features`` equals the card's list in order."""
    have, want = list(features), card["features"]
    if have == want:
        return
    for i, (a, b) in enumerate(zip(have, want)):
        if a != b:
            raise ModelLoadError(f"model {card['model_id']}: feature {i} is {a!r}, card has {b!r}")
    raise ModelLoadError(f"model {card['model_id']}: {len(have)} features given, card has {len(want)}")


def _binding_runner(sess: ort.InferenceSession, binding: ort.IOBinding) -> Callable[[], None]:
    """A no-argument call that runs ``binding``. It calls the compiled session directly
    when this onnxruntime exposes it (saving a Python frame per row), else the public method."""
    raw, raw_binding = getattr(sess, "_sess", None), getattr(binding, "_iobinding", None)
    if raw is not None and raw_binding is not None and hasattr(raw, "run_with_iobinding"):
        return functools.partial(raw.run_with_iobinding, raw_binding, None)
    return functools.partial(sess.run_with_iobinding, binding)


def _check_input(sess: ort.InferenceSession, card: dict[str, Any], rank: int) -> None:
    inp = sess.get_inputs()[0]
    want = [card["window"], len(card["features"])] if rank == 3 else [len(card["features"])]
    if (inp.name != INPUT_NAME or inp.type != "tensor(float)" or len(inp.shape) != rank
            or list(inp.shape[1:]) != want):
        raise ModelLoadError(f"model {card['model_id']}: ONNX input {inp.name} {inp.type} "
                             f"{inp.shape} does not fit the card")


class Scorer:
    """Probabilities from a row model for one feature row or a batch (see module doc).

    ``score_one(row)`` returns a new (3,) array, or fills ``out`` when given.
    """

    def __init__(self, model_dir: Path | str, features: Sequence[str] | None = None) -> None:
        self.card, data = load_verified(model_dir, features)
        if self.card["window"] != 1:
            raise ModelLoadError(f"model {self.card['model_id']} reads {self.card['window']} rows: "
                                 "use SequenceScorer")
        self.model_id: str = self.card["model_id"]
        self.features: list[str] = list(self.card["features"])
        self._sess = session(data)
        _check_input(self._sess, self.card, 2)
        n = len(self.features)
        self._x = np.zeros((1, n), dtype=np.float32)
        self._row = self._x[0]
        self._y = np.zeros((1, 3), dtype=np.float32)
        self._ones = np.ones(n, dtype=np.float32)
        self._xv = ort.OrtValue.ortvalue_from_numpy(self._x)
        self._yv = ort.OrtValue.ortvalue_from_numpy(self._y)
        self._binding = self._sess.io_binding()
        self._binding.bind_ortvalue_input(INPUT_NAME, self._xv)
        self._binding.bind_ortvalue_output(OUTPUT_NAME, self._yv)
        self._run = _binding_runner(self._sess, self._binding)
        self._n = n
        self._res = self._y[0]

    def score_one(self, row: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (down, flat, up) for one row in card feature order."""
        if len(row) != self._n:
            raise ValueError(f"row has {len(row)} values, model {self.model_id} takes {self._n}")
        self._row[:] = row
        if math.isfinite(self._row.dot(self._ones)):
            self._run()
            res = self._res
        else:
            res = _NAN3
        if out is None:
            return res.copy()
        out[:] = res
        return out

    def score_batch(self, X: np.ndarray, exact: bool = True) -> np.ndarray:
        """(n, 3) probabilities for rows ``X`` (n, F); ``exact`` as in the module doc."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"X has shape {X.shape}, model {self.model_id} takes (n, {len(self.features)})")
        if exact and self.card["model_type"] not in ROW_INDEPENDENT:
            out = np.empty((len(X), 3), dtype=np.float32)
            for i, row in enumerate(X):
                self.score_one(row, out=out[i])
            return out
        proba = self._sess.run([OUTPUT_NAME], {INPUT_NAME: X})[0]
        proba[~np.isfinite(X).all(axis=1)] = np.nan
        return proba


_NAN3 = np.full(3, np.nan, dtype=np.float32)
_STATE_HEAD = struct.Struct("<qq")
#: model types whose onnxruntime output for a row does not depend on the batch around it
ROW_INDEPENDENT = frozenset({"lightgbm", "rf"})


@dataclass
class _Stream:
    x: np.ndarray  #: (1, window, F) input buffer, oldest row first
    rows: int  #: rows seen since start/reset
    ready_at: int  #: rows needed before the window holds only finite rows
    run: Callable[[], None]  #: runs the model on ``x``
    keep: Any  #: the binding and OrtValue over ``x``, kept alive for ``run``


class SequenceScorer:
    """Probabilities from a sequence model, keeping the last ``window`` rows per symbol."""

    def __init__(self, model_dir: Path | str, features: Sequence[str] | None = None) -> None:
        self.card, data = load_verified(model_dir, features)
        self.model_id: str = self.card["model_id"]
        self.features: list[str] = list(self.card["features"])
        self.window: int = int(self.card["window"])
        self._sess = session(data)
        _check_input(self._sess, self.card, 3)
        self._y = np.zeros((1, 3), dtype=np.float32)
        self._yv = ort.OrtValue.ortvalue_from_numpy(self._y)
        self._ones = np.ones(len(self.features), dtype=np.float32)
        self._streams: dict[str, _Stream] = {}
        self._batch = self._new_stream()  #: input buffer of score_batch

    def _new_stream(self) -> _Stream:
        x = np.zeros((1, self.window, len(self.features)), dtype=np.float32)
        xv = ort.OrtValue.ortvalue_from_numpy(x)
        b = self._sess.io_binding()
        b.bind_ortvalue_input(INPUT_NAME, xv)
        b.bind_ortvalue_output(OUTPUT_NAME, self._yv)
        return _Stream(x, 0, self.window, _binding_runner(self._sess, b), (b, xv))

    def _stream(self, symbol: str) -> _Stream:
        st = self._streams.get(symbol)
        if st is None:
            st = self._streams[symbol] = self._new_stream()
        return st

    def score_one(self, row: np.ndarray, symbol: str = "", out: np.ndarray | None = None) -> np.ndarray:
        """Append ``row`` to ``symbol``'s window and score it (NaN while warming up)."""
        if len(row) != len(self.features):
            raise ValueError(f"row has {len(row)} values, model {self.model_id} takes {len(self.features)}")
        st = self._stream(symbol)
        w = st.x[0]
        w[:-1] = w[1:]
        w[-1] = row
        st.rows += 1
        if not math.isfinite(w[-1].dot(self._ones)):
            st.ready_at = st.rows + self.window
        if st.rows >= st.ready_at:
            st.run()
            res = self._y[0]
        else:
            res = _NAN3
        if out is None:
            return res.copy()
        out[:] = res
        return out

    def score_batch(self, X: np.ndarray, exact: bool = True) -> np.ndarray:
        """(n, 3) probabilities for windows ``X`` (n, window, F), oldest row first;
        ``exact`` as in the module doc. Not-finite windows score NaN."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 3 or X.shape[1:] != (self.window, len(self.features)):
            raise ValueError(f"X has shape {X.shape}, model {self.model_id} takes "
                             f"(n, {self.window}, {len(self.features)})")
        if exact:
            proba = np.empty((len(X), 3), dtype=np.float32)
            for i, win in enumerate(X):
                self._batch.x[0] = win
                self._batch.run()
                proba[i] = self._y[0]
        else:
            proba = self._sess.run([OUTPUT_NAME], {INPUT_NAME: X})[0]
        proba[~np.isfinite(X).all(axis=(1, 2))] = np.nan
        return proba

    def reset(self, symbol: str | None = None) -> None:
        """Forget one symbol's window (or all)."""
        if symbol is None:
            self._streams.clear()
        else:
            self._streams.pop(symbol, None)

    def state_bytes(self, symbol: str) -> bytes:
        """One symbol's window as bytes (restore with :meth:`restore`)."""
        st = self._stream(symbol)
        return _STATE_HEAD.pack(st.rows, st.ready_at) + st.x.tobytes()

    def restore(self, symbol: str, state: bytes) -> None:
        """Set ``symbol``'s window from :meth:`state_bytes` output."""
        st = self._stream(symbol)
        if len(state) != _STATE_HEAD.size + st.x.nbytes:
            raise ValueError(f"state for {symbol!r} has {len(state)} bytes, expected "
                             f"{_STATE_HEAD.size + st.x.nbytes}")
        st.rows, st.ready_at = _STATE_HEAD.unpack_from(state)
        st.x[...] = np.frombuffer(state, dtype=np.float32, offset=_STATE_HEAD.size).reshape(st.x.shape)


def load_scorer(model_dir: Path | str, features: Sequence[str] | None = None
                ) -> Scorer | SequenceScorer:
    """The right scorer for the model in ``model_dir``."""
    try:
        window = read_card(model_dir)["window"]
    except ValueError as e:
        raise ModelLoadError(str(e)) from None
    return SequenceScorer(model_dir, features) if window > 1 else Scorer(model_dir, features)
