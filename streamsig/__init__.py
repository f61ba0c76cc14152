"""streamsig: real-time limit-order-book signals.

One book event is followed from a file or a Kafka topic to a signal and a P&L
number by the same objects in both drivers. Layers, top to bottom (imports
point down only):

- :mod:`streamsig.cli` — the ``streamsig`` command line, the composition root
  (nothing in the library imports it).
- :mod:`streamsig.live` — the Kafka driver: Faust worker, live paper trader,
  producer, embedded broker, stream settings, the in-process demo.
  :mod:`streamsig.backtest` — the offline driver: replay runner, results,
  run folder, report, walk-forward, the hftbacktest cross-check. The two are
  siblings and never import each other.
- :mod:`streamsig.serve` — the websocket signal server and the live page.
- :mod:`streamsig.engine` — one symbol's live signal step (book, features,
  model, policy).
- :mod:`streamsig.trading` — the shared trading domain: strategies and rule
  baselines, signal policy, per-symbol paper account, book cursor, executor,
  portfolio, performance metrics.
- :mod:`streamsig.models` — training with walk-forward evaluation, ONNX export,
  scorers, model cards, the online challenger.
- :mod:`streamsig.features` — the feature registry, the compiled kernel and its
  per-frame and batch drivers. :mod:`streamsig.labels` — mid-price labels.
- :mod:`streamsig.wire` — Kafka codecs (book frames, dead letters, signal
  frames) and topic names. :mod:`streamsig.telemetry` — the Prometheus metric
  objects (a leaf anything may import). :mod:`streamsig.heap` — the garbage
  collector's settings in the long-running commands (a leaf).
- :mod:`streamsig.book` — the event layout and record dtypes, the order book,
  readers (LOBSTER, crypto, synthetic) and ``open_feeds``.
  :mod:`streamsig.errors` — one-line errors. :mod:`streamsig.config` — the one base of every
  config dataclass (``to_dict``/``from_dict``, TOML).
"""
__version__ = "0.1.0"
