"""Prometheus metrics every streamsig process exports (names follow Prometheus conventions).

Each process serves its own registry with :func:`serve_metrics`; Grafana
dashboards in ``dashboards/`` use only the names defined here.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter("streamsig_events_processed", "Book events applied by the worker", ["symbol"],
                 registry=REGISTRY)
FRAMES = Counter("streamsig_frames_processed", "Book frames consumed by the worker", ["symbol"],
                 registry=REGISTRY)
SIGNALS = Counter("streamsig_signals_published", "Signal records published", ["symbol", "model"],
                  registry=REGISTRY)
DEAD_LETTERS = Counter("streamsig_dead_letters", "Events or frames sent to the dead-letter topic",
                       ["reason"], registry=REGISTRY)
DUPLICATES = Counter("streamsig_duplicate_events", "Redelivered events skipped by sequence",
                     ["symbol"], registry=REGISTRY)
GAPS = Counter("streamsig_sequence_gaps", "Sequence gaps detected (healed at the next snapshot)",
               ["symbol"], registry=REGISTRY)
RESYNC_DROPPED = Counter("streamsig_resync_dropped_events", "Events dropped while waiting for a snapshot",
                         ["symbol"], registry=REGISTRY)
LATENCY = Histogram("streamsig_signal_latency_seconds",
                    "Producer timestamp of a book frame to its signals being computed",
                    ["symbol"], registry=REGISTRY,
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
PNL = Gauge("streamsig_pnl_quote", "Paper-trading P&L in quote currency (net of costs)", ["symbol", "model"],
            registry=REGISTRY)
POSITION = Gauge("streamsig_position", "Paper-trading position in units", ["symbol", "model"], registry=REGISTRY)
DRAWDOWN = Gauge("streamsig_drawdown_ratio", "Drawdown of equity from its peak (fraction)", ["symbol", "model"],
                 registry=REGISTRY)
SHARPE = Gauge("streamsig_sharpe_ratio", "Live Sharpe ratio of the paper portfolio", ["symbol", "model"],
               registry=REGISTRY)
FILLS = Counter("streamsig_fills", "Paper fills", ["symbol", "model"], registry=REGISTRY)
FEES = Counter("streamsig_fees_quote", "Fees paid in quote currency", ["symbol", "model"], registry=REGISTRY)
BROKER_UP = Gauge("streamsig_broker_up", "1 while the Kafka broker answers this process, 0 during an outage",
                  ["role"], registry=REGISTRY)
BROKER_OUTAGES = Counter("streamsig_broker_outages", "Kafka broker outages seen by this process", ["role"],
                         registry=REGISTRY)
BROKER_DATA_LOSSES = Counter("streamsig_broker_data_losses",
                             "Times the broker came back without its topics and offsets (topics recreated)",
                             ["role"], registry=REGISTRY)
WS_CLIENTS = Gauge("streamsig_websocket_clients", "Connected websocket clients", registry=REGISTRY)
WS_SENT = Counter("streamsig_websocket_messages_sent", "Messages sent to websocket clients", registry=REGISTRY)
WS_REFUSED = Counter("streamsig_websocket_refused", "Websocket connections or clients refused, by reason "
                     "(token, origin, rate_limited, message_rate)", ["reason"], registry=REGISTRY)
WS_DROPPED = Counter("streamsig_websocket_clients_dropped", "Slow websocket clients disconnected",
                     registry=REGISTRY)


def serve_metrics(port: int, addr: str | None = None) -> None:
    """Serve ``/metrics`` for this process's registry on ``addr:port`` (0 disables).

    The address defaults to ``STREAMSIG_METRICS_ADDR`` or loopback (containers set 0.0.0.0).
    """
    if port:
        start_http_server(port, addr=addr or os.environ.get("STREAMSIG_METRICS_ADDR", "127.0.0.1"),
                          registry=REGISTRY)
