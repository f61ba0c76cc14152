"""An LSTM classifier over the last ``window`` feature rows (PyTorch, CPU).

Inputs are standardised inside the network (training means and deviations are
buffers), so the exported ONNX graph takes raw float32 features of shape
``[batch, window, F]`` and returns softmax probabilities ``[batch, 3]``.

Training is deterministic: seeded initialisation and minibatch order (on a
private generator, leaving the global RNG as it was), deterministic algorithms
and one thread, restored afterwards.

torch is optional: it is imported when an LSTM is built, so this module loads
without it and only fitting an LSTM needs it (``pip install 'streamsig[lstm]'``).
"""
from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("lstm models need torch: pip install 'streamsig[lstm]'") from None
    return torch


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    torch = _torch()
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


@functools.cache
def net_class() -> type:
    """The network: standardise -> one-layer LSTM -> linear head on the last step -> softmax."""
    torch = _torch()
    nn = torch.nn

    class LstmNet(nn.Module):
        def __init__(self, n_features: int, hidden: int, mean: np.ndarray, std: np.ndarray) -> None:
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
            self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 3)

        def logits(self, x: Any) -> Any:
            out, _ = self.lstm((x - self.mean) / self.std)
            return self.head(out[:, -1, :])

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.logits(x), dim=-1)

    return LstmNet


class LstmClassifier:
    """Fit/predict wrapper with the same face as the sklearn models."""

    def __init__(self, *, seed: int = 0, hidden: int = 16, epochs: int = 3, lr: float = 3e-3,
                 batch_size: int = 64) -> None:
        self.seed, self.hidden, self.epochs, self.lr, self.batch_size = seed, hidden, epochs, lr, batch_size
        self.net: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> LstmClassifier:
        """Train on windows ``X`` (n, window, F) float32 and labels 0/1/2."""
        self.net = fit_net(lambda F, mean, std: net_class()(F, self.hidden, mean, std), X, y, seed=self.seed,
                           epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        self.window = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, 3) probabilities for windows ``X``."""
        assert self.net is not None, "fit first"
        return predict_net(self.net, X, self.seed)

    def onnx_bytes(self, input_name: str, output_name: str) -> bytes:
        """The network as an ONNX model (opset 17) with input ``[batch, window, F]``, as
        ``torch.onnx.export`` writes it (:func:`streamsig.models.export.to_onnx` then
        puts it in canonical form)."""
        assert self.net is not None, "fit first"
        return export_net(self.net, self.window, self.net.lstm.input_size, self.seed, input_name, output_name)


def fit_net(make: Callable[[int, np.ndarray, np.ndarray], Any], X: np.ndarray, y: np.ndarray, *,
            seed: int, epochs: int, lr: float, batch_size: int) -> Any:
    """Build ``make(F, mean, std)`` (standardisation from ``X``) and train it with Adam on
    cross-entropy, deterministically for ``seed``; returns the network in eval mode."""
    torch = _torch()
    X = np.ascontiguousarray(X, dtype=np.float32)
    flat = X.reshape(-1, X.shape[2])
    std = flat.std(axis=0)
    with _deterministic(seed):
        net = make(X.shape[2], flat.mean(axis=0), np.where(std > 0, std, 1.0))
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        xt, yt = torch.from_numpy(X), torch.as_tensor(y, dtype=torch.long)
        loss_fn = torch.nn.CrossEntropyLoss()
        net.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(xt), generator=gen).split(batch_size):
                opt.zero_grad()
                loss_fn(net.logits(xt[batch]), yt[batch]).backward()
                opt.step()
    return net.eval()


def predict_net(net: Any, X: np.ndarray, seed: int) -> np.ndarray:
    """(n, 3) probabilities of a trained network for windows ``X``."""
    torch = _torch()
    with _deterministic(seed), torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()


def export_net(net: Any, window: int, n_features: int, seed: int, input_name: str, output_name: str) -> bytes:
    """ONNX bytes (opset 17, TorchScript exporter) of ``net`` with input ``[batch, window, F]``."""
    torch = _torch()
    buf = io.BytesIO()
    dummy = torch.zeros(1, window, n_features)
    with warnings.catch_warnings(), _deterministic(seed):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), buf, input_names=[input_name],
                          output_names=[output_name], opset_version=17, dynamo=False,
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    return buf.getvalue()
