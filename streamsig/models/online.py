"""An online challenger: river softmax regression that learns each row once its label matures.

Every row is first scored, then queued per symbol. A queued row is learned
(``learn_one``) only when the row that completes its label arrives: ``h`` rows
later, the first row at least ``h`` seconds later, or ``k`` rows later for
smoothed labels, never before. Labels are computed as :mod:`streamsig.labels`
computes them offline, so the challenger learns exactly the offline labels.

The 0/1 error of the prediction made for each row when it was scored feeds an
ADWIN detector (Bifet & Gavaldà 2007, "Learning from time-changing data with
adaptive windowing", SDM); detected drifts are counted in ``drifts`` and, with
``reset_on_drift``, the model starts afresh.

Given the champion's probabilities for a row (``champion=``), a second ADWIN
watches the champion's 0/1 error on the same matured labels. :meth:`take_tally`
hands out the challenger's matured count, hits and calibration counts, and both
models' drift alarms, since the last call (the champion's hits and calibration
come from :class:`~streamsig.models.outcomes.MaturedScores`, which needs no challenger).

Checkpoints (:meth:`state_bytes` / :meth:`from_bytes`) pickle the river model,
which has no other serialised form. Reading one resolves only the classes such
a checkpoint holds (:data:`SAFE_GLOBALS`: river's pipeline, scaler, softmax
regression, SGD and ADWIN, a few containers, numpy arrays); any other global,
such as ``os.system``, is refused before it is called, so a crafted checkpoint
cannot run code. The champion model is never pickled; it is ONNX plus a card
(:mod:`streamsig.models.scorer`).

>>> import numpy as np
>>> from streamsig.labels import LabelConfig
>>> ch = OnlineChallenger(["x"], LabelConfig(horizon=2))
>>> for i, mid in enumerate([1.0, 1.0, 1.1, 1.0, 1.2]):
...     p = ch.process_one(np.array([float(i)]), mid=mid)
>>> ch.learned, ch.pending()
(3, 2)
"""
from __future__ import annotations

import io
import pickle
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamsig.labels import LabelConfig, mid_change, ternary
from streamsig.models.outcomes import empty_tally, tally

_MAGIC = b"streamsig-online-v1\n"

#: every ``(module, name)`` a challenger checkpoint refers to; unpickling resolves no other
SAFE_GLOBALS = frozenset({
    ("builtins", "float"), ("builtins", "int"), ("builtins", "complex"), ("builtins", "set"),
    ("builtins", "frozenset"), ("collections", "Counter"), ("collections", "OrderedDict"),
    ("collections", "defaultdict"), ("collections", "deque"), ("copy", "deepcopy"), ("functools", "partial"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
    ("river._river_rust.drift", "AdaptiveWindowing"), ("river.compose.pipeline", "Pipeline"),
    ("river.drift.adwin", "ADWIN"), ("river.linear_model.softmax", "SoftmaxRegression"),
    ("river.optim.losses", "CrossEntropy"), ("river.optim.schedulers", "Constant"), ("river.optim.sgd", "SGD"),
    ("river.preprocessing.scale", "StandardScaler"), ("streamsig.labels", "LabelConfig"),
    ("streamsig.models.online", "_Stream"), ("streamsig.models.online", "_Waiting"),
})


class _CheckpointUnpickler(pickle.Unpickler):
    """Resolves only :data:`SAFE_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which no challenger checkpoint holds")
        return super().find_class(module, name)


@dataclass
class _Waiting:
    x: dict[str, float]
    mid: float
    ts_ns: int
    index: int
    back: float  #: mean(mid[t-k+1..t] - mid[t]) for past_mean labels, else 0
    pred: int  #: class predicted when the row was scored, -1 if none
    proba: np.ndarray | None = None  #: the challenger's probabilities when scored
    champion: np.ndarray | None = None  #: the champion's probabilities for the row, if given


@dataclass
class _Stream:
    rows: int = 0
    queue: deque[_Waiting] = field(default_factory=deque)
    recent: deque[float] = field(default_factory=deque)  #: last k mids (smoothed labels)


class OnlineChallenger:
    """Online multiclass logistic regression on matured labels, with ADWIN drift detection."""

    def __init__(self, features: Sequence[str], label_cfg: LabelConfig | dict[str, Any], *,
                 lr: float = 0.01, l2: float = 0.0, adwin_delta: float = 0.002,
                 reset_on_drift: bool = False) -> None:
        self.features = list(features)
        self.label = LabelConfig.coerce(label_cfg)
        self.lr, self.l2, self.reset_on_drift = lr, l2, reset_on_drift
        self.model = self._new_model()
        from river import drift
        self.detector = drift.ADWIN(delta=adwin_delta)
        self.learned = 0
        self.drifts: list[int] = []  #: ``learned`` at each detected drift
        self._streams: dict[str, _Stream] = {}
        self._init_scoring(adwin_delta)

    def _init_scoring(self, adwin_delta: float = 0.002) -> None:
        from river import drift
        self.champion_detector = drift.ADWIN(delta=adwin_delta)
        self.champion_drifts = 0
        self._tally = _new_tally()

    def _new_model(self) -> Any:
        from river import linear_model, optim, preprocessing
        return preprocessing.StandardScaler() | linear_model.SoftmaxRegression(
            optimizer=optim.SGD(self.lr), l2=self.l2)

    def predict_proba_one(self, row: np.ndarray | dict[str, float]) -> np.ndarray:
        """(3,) probabilities down/flat/up; NaN before the first learned row."""
        x = row if isinstance(row, dict) else dict(zip(self.features, np.asarray(row).tolist()))
        p = self.model.predict_proba_one(x)
        if not p:
            return np.full(3, np.nan)
        return np.array([p.get(k, 0.0) for k in range(3)])

    def process_one(self, row: np.ndarray, *, mid: float, ts_ns: int = 0, symbol: str = "",
                    champion: np.ndarray | None = None) -> np.ndarray:
        """Learn the rows this one matures, then score it and queue it until its label matures.

        ``champion`` (the champion's down/flat/up probabilities for this row) is
        scored against the same label when it matures (see :meth:`take_tally`).
        """
        st = self._streams.setdefault(symbol, _Stream())
        cfg = self.label
        if cfg.kind == "smoothed":
            st.recent.append(float(mid))
            if len(st.recent) > cfg.horizon:
                st.recent.popleft()
        self._mature(st, float(mid), int(ts_ns))
        x = dict(zip(self.features, np.asarray(row).tolist()))
        proba = self.predict_proba_one(x)
        back = 0.0
        if cfg.reference == "past_mean":
            if len(st.recent) < cfg.horizon:
                st.rows += 1
                return proba  # no label will ever exist for this row
            back = float(np.add.reduce(np.asarray(st.recent) - mid)) / cfg.horizon
        pred = int(np.argmax(proba)) if np.isfinite(proba).all() else -1
        champ = None if champion is None else np.asarray(champion, np.float64)
        st.queue.append(_Waiting(x, float(mid), int(ts_ns), st.rows, back, pred, proba, champ))
        st.rows += 1
        return proba

    def _mature(self, st: _Stream, mid: float, ts_ns: int) -> None:
        cfg, q, now = self.label, st.queue, st.rows
        while q:
            w = q[0]
            if cfg.kind == "horizon" and cfg.unit == "seconds":
                if ts_ns < w.ts_ns + cfg.horizon_ns:
                    break
                diff = mid - w.mid
            elif w.index + int(cfg.horizon) > now:
                break
            elif cfg.kind == "horizon":
                diff = mid - w.mid
            else:
                diff = float(np.add.reduce(np.asarray(st.recent) - w.mid)) / cfg.horizon - w.back
            q.popleft()
            ref = w.mid + w.back
            change = mid_change(diff, ref, cfg)
            self._learn(w, int(ternary(np.array([change]), cfg.threshold)[0]))

    def _learn(self, w: _Waiting, y: int) -> None:
        self.model.learn_one(w.x, y)
        self.learned += 1
        if w.pred >= 0 and w.proba is not None:
            _add(self._tally["challenger"], tally(w.proba[None, :], np.array([y])))
            self.detector.update(float(w.pred != y))
            if self.detector.drift_detected:
                self.drifts.append(self.learned)
                self._tally["challenger"]["drifts"] += 1
                if self.reset_on_drift:
                    self.model = self._new_model()
        if w.champion is not None and np.isfinite(w.champion).all() and y >= 0:
            self.champion_detector.update(float(int(np.argmax(w.champion)) != y))
            if self.champion_detector.drift_detected:
                self.champion_drifts += 1
                self._tally["champion"]["drifts"] += 1

    def take_tally(self) -> dict[str, dict[str, Any]]:
        """Matured-label scores since the last call, per role ("champion", "challenger").

        Each role is a :func:`streamsig.models.outcomes.tally` plus ``drifts`` (ADWIN
        alarms); the champion's role carries only its drifts.
        """
        out, self._tally = self._tally, _new_tally()
        return out

    def pending(self, symbol: str | None = None) -> int:
        """Rows scored but not yet learned (for one symbol, or all)."""
        streams = self._streams.values() if symbol is None else [self._streams.get(symbol, _Stream())]
        return sum(len(s.queue) for s in streams)

    def state_bytes(self) -> bytes:
        """Checkpoint of the whole challenger (pickle; see the module doc)."""
        return _MAGIC + pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> OnlineChallenger:
        """Restore a checkpoint written by :meth:`state_bytes`; raise ValueError if it is not one.

        Only :data:`SAFE_GLOBALS` are resolved, so no other code runs.
        """
        if not data.startswith(_MAGIC):
            raise ValueError("not an online challenger checkpoint")
        try:
            state = _CheckpointUnpickler(io.BytesIO(memoryview(data)[len(_MAGIC):])).load()
        except Exception as exc:  # noqa: BLE001 - any failure means: not a checkpoint we can use
            raise ValueError(f"bad online challenger checkpoint: {exc}") from None
        if not isinstance(state, dict) or "model" not in state or "features" not in state:
            raise ValueError("bad online challenger checkpoint: not a challenger's state")
        obj = cls.__new__(cls)
        obj._init_scoring()  # checkpoints written before champion scoring existed lack these
        obj.__dict__.update(state)
        return obj


def _new_tally() -> dict[str, dict[str, Any]]:
    return {"champion": empty_tally(), "challenger": empty_tally()}


def _add(t: dict[str, Any], more: dict[str, Any]) -> None:
    for k in ("matured", "hits", "predicted", "observed"):
        t[k] += more[k]
