"""Prometheus metrics every streamsig process exports (names follow Prometheus conventions).

Each process serves its own registry with :func:`serve_metrics`; Grafana
dashboards in ``dashboards/`` use only the names defined here.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

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
BENIGN_DELETES = Counter("streamsig_benign_deletes", "Deletes of levels the book did not hold (no-ops, not rejects)",
                         ["symbol"], registry=REGISTRY)
RESYNC_DROPPED = Counter("streamsig_resync_dropped_events", "Events dropped while waiting for a snapshot",
                         ["symbol"], registry=REGISTRY)
LATENCY = Histogram("streamsig_signal_latency_seconds",
                    "Producer timestamp of a book frame to its signals being computed",
                    ["symbol"], registry=REGISTRY,
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
STAGE_LATENCY = Histogram(
    "streamsig_stage_latency_seconds",
    "Time between two stamps on a book frame's way to a websocket client, by stage (docs/latency.md)",
    ["stage"], registry=REGISTRY,
    buckets=(0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
             0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
#: stage label -> (from stamp, to stamp); the histogram children are bound once here
STAGES = {
    "produce_to_fetch": "producer stamp -> the worker's fetch of the book frame came back",
    "produce_to_worker": "producer stamp -> worker took the book frame from its stream",
    "worker": "worker took the frame -> its signals handed to the producer",
    "publish": "signals handed to the producer -> the broker acknowledged them (once per batch)",
    "worker_to_server": "signals handed to the producer -> websocket server fetched them",
    "server": "websocket server fetched the signals -> sent to one client",
    "end_to_end": "producer stamp -> sent to one websocket client",
    "worker_to_trader": "signals handed to the producer -> trader took them from its stream",
    "trader": "trader took the signals -> fills and P&L handed to the producer",
}
STAGE = {name: STAGE_LATENCY.labels(name) for name in STAGES}


def observe_stage(stage: str, start_ns: int, end_ns: int) -> None:
    """Record ``end_ns - start_ns`` (clamped at 0) under ``stage``; a missing start (0) is skipped."""
    if start_ns > 0:
        STAGE[stage].observe(max(0, end_ns - start_ns) / 1e9)


PNL = Gauge("streamsig_pnl_quote", "Paper-trading P&L in quote currency (net of costs)", ["symbol", "model"],
            registry=REGISTRY)
POSITION = Gauge("streamsig_position", "Paper-trading position in units", ["symbol", "model"], registry=REGISTRY)
DRAWDOWN = Gauge("streamsig_drawdown_ratio", "Drawdown of equity from its peak (fraction)", ["symbol", "model"],
                 registry=REGISTRY)
SHARPE = Gauge("streamsig_sharpe_ratio", "Sharpe ratio of the paper portfolio's returns between trader "
               "updates (one per processed frame batch; not annualised)", ["symbol", "model"], registry=REGISTRY)
FILLS = Counter("streamsig_fills", "Paper fills", ["symbol", "model"], registry=REGISTRY)
FEES = Counter("streamsig_fees_quote", "Fees paid in quote currency", ["symbol", "model"], registry=REGISTRY)
BROKER_UP = Gauge("streamsig_broker_up", "1 while the Kafka broker (bootstrap servers ``broker``) answers this "
                  "process's ``role``, 0 during an outage", ["role", "broker"], registry=REGISTRY)
BROKER_OUTAGES = Counter("streamsig_broker_outages", "Kafka broker outages seen by this process", ["role"],
                         registry=REGISTRY)
BROKER_DATA_LOSSES = Counter("streamsig_broker_data_losses",
                             "Times the broker came back without its topics and offsets (topics recreated)",
                             ["role"], registry=REGISTRY)
CHECKPOINT_WRITES = Counter("streamsig_checkpoint_writes", "Per-symbol checkpoints written (changed state only)",
                            ["kind"], registry=REGISTRY)
CHECKPOINT_CORRUPT = Counter("streamsig_checkpoint_corrupt", "Checkpoints found damaged (the symbol resyncs)",
                             ["symbol"], registry=REGISTRY)
CHECKPOINT_RESTORES = Counter("streamsig_checkpoint_restores", "Symbols restored from a checkpoint, by source",
                              ["source"], registry=REGISTRY)
SNAPSHOT_REQUESTS = Counter("streamsig_snapshot_requests", "Snapshot requests sent to the producer",
                            ["symbol"], registry=REGISTRY)
SNAPSHOT_WAIT = Counter("streamsig_snapshot_wait_seconds", "Time symbols spent waiting for a snapshot",
                        ["symbol"], registry=REGISTRY)
SEND_RETRIES = Counter("streamsig_send_retries", "Output sends retried after a failure", ["topic"],
                       registry=REGISTRY)
SUPPRESSED = Counter("streamsig_output_suppressed", "Output records not republished (already on the topic)",
                     ["symbol", "topic"], registry=REGISTRY)
WS_CLIENTS = Gauge("streamsig_websocket_clients", "Connected websocket clients", registry=REGISTRY)
WS_SENT = Counter("streamsig_websocket_messages_sent", "Messages sent to websocket clients", registry=REGISTRY)
WS_REFUSED = Counter("streamsig_websocket_refused", "Websocket connections or clients refused, by reason "
                     "(token, origin, rate_limited, message_rate)", ["reason"], registry=REGISTRY)
WS_DROPPED = Counter("streamsig_websocket_clients_dropped", "Slow websocket clients disconnected",
                     registry=REGISTRY)

CONSUMER_LAG = Gauge("streamsig_consumer_lag_messages",
                     "Messages in a partition not yet processed by this consumer (high watermark - next offset)",
                     ["consumer", "topic", "partition"], registry=REGISTRY)
SCORES = Histogram("streamsig_signal_probability", "Class probabilities the models publish (one per class per row)",
                   ["model", "class"], registry=REGISTRY, buckets=tuple(round(0.1 * i, 1) for i in range(1, 11)))
MATURED = Counter("streamsig_labels_matured", "Predictions whose label has matured (scored against the outcome)",
                  ["symbol", "model"], registry=REGISTRY)
HITS = Counter("streamsig_label_hits", "Matured predictions whose most likely class was the realised label",
               ["symbol", "model"], registry=REGISTRY)
CALIB_PRED = Counter("streamsig_calibration_predictions",
                     "Matured predictions by class and probability bin (bin = upper edge)",
                     ["model", "class", "bin"], registry=REGISTRY)
CALIB_HIT = Counter("streamsig_calibration_outcomes",
                    "Matured predictions by class and probability bin whose label was that class",
                    ["model", "class", "bin"], registry=REGISTRY)
DRIFTS = Counter("streamsig_drift_alarms", "ADWIN drift alarms on a model's 0/1 error over matured labels",
                 ["symbol", "model"], registry=REGISTRY)


def serve_metrics(port: int, addr: str | None = None) -> None:
    """Serve ``/metrics`` for this process's registry on ``addr:port`` (0 disables).

    The address defaults to ``STREAMSIG_METRICS_ADDR`` or loopback (containers set 0.0.0.0).
    """
    if port:
        start_http_server(port, addr=addr or os.environ.get("STREAMSIG_METRICS_ADDR", "127.0.0.1"),
                          registry=REGISTRY)
