"""A small Transformer encoder over the last ``window`` feature rows (PyTorch, CPU).

The network standardises its inputs inside the graph (training means and
deviations are buffers, as in :mod:`streamsig.models.lstm`), projects each row
to ``d_model``, adds a learned position embedding, and runs ``layers``
pre-norm encoder blocks (multi-head self-attention under a causal mask, so a
step sees only itself and earlier steps of the window, then a two-layer
feed-forward; no dropout). A linear head on the last step gives the logits and
the graph returns softmax probabilities ``[batch, 3]``. The exported ONNX
graph takes raw float32 features ``[batch, window, F]``.

Attention is written out with plain matrix products, so the TorchScript
exporter gives a graph of standard opset-17 nodes. Training and export are
deterministic for a seed (the LSTM's training loop and exporter).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from streamsig.models.lstm import _torch, export_net, fit_net, predict_net


@functools.cache
def net_class() -> type:
    """The network: standardise -> embed + positions -> causal encoder blocks -> head -> softmax."""
    torch = _torch()
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, d: int, heads: int, window: int) -> None:
            super().__init__()
            self.heads, self.scale = heads, 1.0 / math.sqrt(d // heads)
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
            mask = torch.full((window, window), float("-inf")).triu(1)
            self.register_buffer("mask", mask)

        def forward(self, h: Any) -> Any:
            q, k, v = self.qkv(self.norm1(h)).unflatten(-1, (3, self.heads, -1)).unbind(2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, d/heads)
            att = torch.softmax(q @ k.transpose(-1, -2) * self.scale + self.mask, dim=-1)
            h = h + self.proj((att @ v).transpose(1, 2).flatten(2))
            return h + self.ff(self.norm2(h))

    class TransformerNet(nn.Module):
        def __init__(self, n_features: int, window: int, d_model: int, heads: int, layers: int,
                     mean: np.ndarray, std: np.ndarray) -> None:
            super().__init__()
            if d_model % heads:
                raise ValueError(f"d_model {d_model} must be a multiple of heads {heads}")
            self.input_size = n_features
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
            self.embed = nn.Linear(n_features, d_model)
            self.pos = nn.Parameter(torch.randn(window, d_model) * 0.02)
            self.blocks = nn.ModuleList([Block(d_model, heads, window) for _ in range(layers)])
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, 3)

        def logits(self, x: Any) -> Any:
            h = self.embed((x - self.mean) / self.std) + self.pos
            for b in self.blocks:
                h = b(h)
            return self.head(self.norm(h[:, -1, :]))

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.logits(x), dim=-1)

    return TransformerNet


class TransformerClassifier:
    """Fit/predict wrapper with the same face as :class:`~streamsig.models.lstm.LstmClassifier`."""

    def __init__(self, *, seed: int = 0, d_model: int = 16, heads: int = 2, layers: int = 1,
                 epochs: int = 3, lr: float = 3e-3, batch_size: int = 64) -> None:
        self.seed, self.d_model, self.heads, self.layers = seed, d_model, heads, layers
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.net: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> TransformerClassifier:
        """Train on windows ``X`` (n, window, F) float32 and labels 0/1/2."""
        window = X.shape[1]

        def make(F: int, mean: np.ndarray, std: np.ndarray) -> Any:
            return net_class()(F, window, self.d_model, self.heads, self.layers, mean, std)

        self.net = fit_net(make, X, y, seed=self.seed, epochs=self.epochs, lr=self.lr,
                           batch_size=self.batch_size)
        self.window = window
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, 3) probabilities for windows ``X``."""
        assert self.net is not None, "fit first"
        return predict_net(self.net, X, self.seed)

    def onnx_bytes(self, input_name: str, output_name: str) -> bytes:
        """The network as an ONNX model (opset 17) with input ``[batch, window, F]``."""
        assert self.net is not None, "fit first"
        return export_net(self.net, self.window, self.net.input_size, self.seed, input_name, output_name)
