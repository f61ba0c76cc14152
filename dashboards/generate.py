"""Write the generated Grafana dashboards (model, operations) into this folder.

    python dashboards/generate.py          # rewrite streamsig-model.json and streamsig-ops.json
    python dashboards/generate.py --check  # exit 1 if a committed file differs from what this writes

Every panel is built by the few functions below, so each one has a datasource,
a unique id, a grid position inside 24 columns and at least one query; the
queries use only metrics of ``streamsig/telemetry.py`` (tests/test_dashboards.py
runs each against a real Prometheus). ``streamsig.json`` (the overview) is kept by hand.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "streamsig-prometheus"}  # provisioned by deploy/grafana
RATE = "$__rate_interval"


class Board:
    """Panels laid out left to right in rows of 24 columns."""

    def __init__(self, uid: str, title: str, description: str, variables: list[tuple[str, str, str]]) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.variables = variables  # (name, metric, label)
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = self.row_h = 0

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({"type": "row", "id": len(self.panels) + 1, "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, kind: str, title: str, description: str, queries: list[tuple[str, str]], *, unit: str = "short",
              w: int = 8, h: int = 8, instant: bool = False, fmt: str = "time_series", **extra: Any) -> None:
        targets = [{"datasource": DS, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                    "range": not instant, "instant": instant, "format": fmt} for i, (expr, legend) in enumerate(queries)]
        p = {"type": kind, "id": len(self.panels) + 1, "title": title, "description": description, "datasource": DS,
             "gridPos": self._place(w, h), "fieldConfig": {"defaults": {"unit": unit, **extra.pop("defaults", {})},
                                                           "overrides": []},
             "options": extra.pop("options", {"legend": {"displayMode": "list", "placement": "bottom",
                                                         "showLegend": True},
                                              "tooltip": {"mode": "multi", "sort": "desc"}}),
             "targets": targets, **extra}
        self.panels.append(p)

    def to_dict(self) -> dict[str, Any]:
        templ = [{"name": n, "label": n.capitalize(), "type": "query", "datasource": DS,
                  "definition": f"label_values({m}, {lab})",
                  "query": {"query": f"label_values({m}, {lab})", "refId": f"{n}-values"},
                  "includeAll": True, "multi": True, "allValue": ".*",
                  "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                  "refresh": 2, "sort": 1, "hide": 0, "options": []} for n, m, lab in self.variables]
        return {"uid": self.uid, "title": self.title, "description": self.description, "tags": ["streamsig"],
                "timezone": "browser", "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1,
                "refresh": "5s", "time": {"from": "now-30m", "to": "now"}, "annotations": {"list": []},
                "links": [{"title": "streamsig", "type": "dashboards", "tags": ["streamsig"], "asDropdown": True,
                           "includeVars": False, "keepTime": True}],
                "templating": {"list": templ}, "panels": self.panels}


def model_board() -> Board:
    b = Board("streamsig-model", "streamsig / model",
              "Scores the models publish, and how the champion and the online challenger did once labels matured.",
              [("symbol", "streamsig_labels_matured_total", "symbol"),
               ("model", "streamsig_signal_probability_count", "model")])
    sel = 'model=~"$model"'
    b.row("Scores")
    for cls in ("down", "flat", "up"):
        b.panel("heatmap", f"Score distribution: p_{cls}",
                f"Distribution of the p_{cls} the selected models publish (sampled rows of each signal message; "
                "streamsig_signal_probability histogram, buckets of 0.1).",
                [(f'sum by (le) (increase(streamsig_signal_probability_bucket{{{sel}, class="{cls}"}}[{RATE}]))',
                  "{{le}}")],
                fmt="heatmap", options={"calculate": False, "yAxis": {"unit": "short", "decimals": 1},
                                        "cellGap": 1, "color": {"mode": "scheme", "scheme": "Blues"},
                                        "legend": {"show": True}, "tooltip": {"show": True, "yHistogram": True}})
    b.panel("timeseries", "Median score by class and model",
            "Median of each class probability (histogram_quantile over streamsig_signal_probability).",
            [((f"histogram_quantile(0.5, sum by (model, class, le) "
              f"(rate(streamsig_signal_probability_bucket{{{sel}}}[{RATE}])))"), "{{model}} p_{{class}}")],
            unit="percentunit", w=12)
    b.panel("timeseries", "Scored rows per second (sampled)",
            "Rows observed in streamsig_signal_probability per second, by model (a sample: at most 16 rows per 50 ms per symbol).",
            [(f'sum by (model) (rate(streamsig_signal_probability_count{{{sel}, class="up"}}[{RATE}]))', "{{model}}")],
            unit="ops", w=12)
    b.row("Realised: champion vs online challenger (labels matured)")
    b.panel("timeseries", "Hit rate",
            "Share of matured predictions whose most likely class was the realised label, champion and challenger "
            "(streamsig_label_hits_total / streamsig_labels_matured_total).",
            [((f'sum by (model) (rate(streamsig_label_hits_total{{symbol=~"$symbol", {sel}}}[{RATE}])) / '
              f'sum by (model) (rate(streamsig_labels_matured_total{{symbol=~"$symbol", {sel}}}[{RATE}]))'),
              "{{model}}")],
            unit="percentunit", w=12, defaults={"min": 0, "max": 1})
    b.panel("bargauge", "Hit rate by symbol (whole run)",
            "Cumulative hit rate per symbol and model since the worker started.",
            [((f'sum by (symbol, model) (streamsig_label_hits_total{{symbol=~"$symbol", {sel}}}) / '
              f'sum by (symbol, model) (streamsig_labels_matured_total{{symbol=~"$symbol", {sel}}})'),
              "{{symbol}} {{model}}")],
            unit="percentunit", w=12, instant=True, defaults={"min": 0, "max": 1},
            options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})
    b.panel("bargauge", "Calibration: observed frequency per predicted decile",
            "For matured predictions whose class probability fell in a decile (bin = its upper edge), the share "
            "whose label was that class; a calibrated model shows each bar near its bin. Whole run.",
            [((f"sum by (model, class, bin) (streamsig_calibration_outcomes_total{{{sel}}}) / "
              f"sum by (model, class, bin) (streamsig_calibration_predictions_total{{{sel}}})"),
              "{{model}} p_{{class}} <= {{bin}}")],
            unit="percentunit", w=12, h=12, instant=True, defaults={"min": 0, "max": 1},
            options={"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})
    b.panel("timeseries", "Matured predictions per second",
            "Predictions scored against their label per second (a label matures h rows or seconds later).",
            [(f'sum by (model) (rate(streamsig_labels_matured_total{{symbol=~"$symbol", {sel}}}[{RATE}]))',
              "{{model}}"),
             (f"sum by (model) (rate(streamsig_calibration_predictions_total{{{sel}, class=\"up\"}}[{RATE}]))",
              "{{model}} (calibration counts)")],
            unit="ops", w=12, h=12)
    b.row("Drift (ADWIN on each model's 0/1 error)")
    b.panel("timeseries", "Drift alarms",
            "ADWIN drift alarms per window, by symbol and model (streamsig_drift_alarms_total).",
            [(f'sum by (symbol, model) (increase(streamsig_drift_alarms_total{{symbol=~"$symbol", {sel}}}[{RATE}]))',
              "{{symbol}} {{model}}")],
            w=16, options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "desc"}}, defaults={"custom": {"drawStyle": "bars"}})
    b.panel("stat", "Drift alarms (total)", "ADWIN alarms since the worker started, by model.",
            [(f'sum by (model) (streamsig_drift_alarms_total{{symbol=~"$symbol", {sel}}})', "{{model}}")],
            w=8, instant=True,
            options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "value", "graphMode": "none", "textMode": "value_and_name"})
    return b


def ops_board() -> Board:
    b = Board("streamsig-ops", "streamsig / operations",
              "Consumer lag, per-stage latency, process CPU and memory, and broker reachability.", [])
    b.row("Kafka")
    b.panel("timeseries", "Consumer lag per partition",
            "Messages in each partition not yet processed, per consumer (streamsig_consumer_lag_messages).",
            [("max by (consumer, topic, partition) (streamsig_consumer_lag_messages)",
              "{{consumer}} {{topic}}[{{partition}}]")], w=12)
    b.panel("timeseries", "Lag by consumer", "Total lag over all partitions a consumer holds.",
            [("sum by (consumer) (streamsig_consumer_lag_messages)", "{{consumer}}")], w=6)
    b.panel("stat", "Broker reachable", "1 if every process reached a bootstrap broker at its last probe (min over "
            "processes and roles of streamsig_broker_up).",
            [("min(streamsig_broker_up)", "up")], w=6, instant=True,
            defaults={"mappings": [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"},
                                                                 "1": {"text": "UP", "color": "green"}}}]},
            options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "background", "graphMode": "none", "textMode": "value"})
    b.panel("timeseries", "Broker outages and data losses",
            "Outages each process role saw (streamsig_broker_outages_total) and returns of the broker without "
            "its topics and offsets, topics recreated (streamsig_broker_data_losses_total).",
            [("sum by (role) (streamsig_broker_outages_total)", "outages {{role}}"),
             ("sum by (role) (streamsig_broker_data_losses_total)", "losses {{role}}")], w=12)
    b.panel("timeseries", "Websocket refusals by reason",
            "Connections or clients the websocket server refused (streamsig_websocket_refused_total): bad token, "
            "foreign origin, rate-limited address, message rate.",
            [("sum by (reason) (streamsig_websocket_refused_total)", "{{reason}}")], w=12)
    b.row("Per-stage latency (producer timestamp of a book frame to the stage)")
    for q in (0.5, 0.99):
        b.panel("timeseries", f"Stage latency p{int(q * 100)}",
                f"{int(q * 100)}th percentile of streamsig_stage_latency_seconds by stage.",
                [(f"histogram_quantile({q}, sum by (stage, le) (rate(streamsig_stage_latency_seconds_bucket[{RATE}])))",
                  "{{stage}}")], unit="s", w=8)
    b.panel("timeseries", "Stage throughput", "Observations per second by stage.",
            [(f"sum by (stage) (rate(streamsig_stage_latency_seconds_count[{RATE}]))", "{{stage}}")], unit="ops", w=8)
    b.row("State and delivery")
    b.panel("timeseries", "Checkpoints written", "Per-symbol checkpoints written per second, by process kind "
            "(only symbols whose state changed are written).",
            [(f"sum by (kind) (rate(streamsig_checkpoint_writes_total[{RATE}]))", "{{kind}}")], unit="ops", w=6)
    b.panel("timeseries", "Checkpoint restores and damage", "Symbols restored from a checkpoint, by source, and "
            "checkpoints found damaged (that symbol resyncs from a snapshot); 0 when nothing restarted.",
            [("sum by (source) (streamsig_checkpoint_restores_total) or vector(0)", "restored {{source}}"),
             ("sum(streamsig_checkpoint_corrupt_total) or vector(0)", "damaged")], w=6)
    b.panel("timeseries", "Snapshot requests and waits", "Snapshots asked of the producer, and seconds symbols "
            "spent waiting for one; 0 in a run without gaps.",
            [("sum(streamsig_snapshot_requests_total) or vector(0)", "requests"),
             ("sum(streamsig_snapshot_wait_seconds_total) or vector(0)", "seconds waited")], w=6)
    b.panel("timeseries", "Output retries, suppressed and benign deletes", "Sends retried after a failure, "
            "output records not republished after a restart (already on the topic), and deletes of levels the "
            "book did not hold (counted no-ops).",
            [("sum by (topic) (streamsig_send_retries_total) or vector(0)", "retried {{topic}}"),
             ("sum by (topic) (streamsig_output_suppressed_total) or vector(0)", "suppressed {{topic}}"),
             ("sum(streamsig_benign_deletes_total) or vector(0)", "benign deletes")], w=6)
    b.row("Processes")
    b.panel("timeseries", "CPU", "CPU time per second of each process (1 = one core).",
            [(f"rate(process_cpu_seconds_total[{RATE}])", "{{job}} {{instance}}")], unit="percentunit", w=8)
    b.panel("timeseries", "Memory", "Resident and virtual memory of each process.",
            [("process_resident_memory_bytes", "{{job}} {{instance}} resident"),
             ("process_virtual_memory_bytes", "{{job}} {{instance}} virtual")], unit="bytes", w=8)
    b.panel("timeseries", "Open file descriptors", "Open and maximum file descriptors of each process.",
            [("process_open_fds", "{{job}} {{instance}} open"), ("process_max_fds", "{{job}} {{instance}} max")],
            w=4)
    b.panel("stat", "Uptime", "Time since each process started.",
            [("time() - process_start_time_seconds", "{{job}} {{instance}}")], unit="s", w=4, instant=True,
            options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "none", "graphMode": "none", "textMode": "value_and_name"})
    return b


BOARDS = {"streamsig-model.json": model_board, "streamsig-ops.json": ops_board}


def render(make: Any) -> str:
    return json.dumps(make().to_dict(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name, make in BOARDS.items():
        text, path = render(make), HERE / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run python dashboards/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
