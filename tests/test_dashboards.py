"""Grafana dashboards and deploy files: structure, metric names, and every query against a real Prometheus."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamsig.telemetry import REGISTRY
from streamsig.live.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
DEPLOY = ROOT / "deploy"
PROMETHEUS = "/usr/bin/prometheus"

# Grafana's variables (the test scrapes every second). Grafana's "All" is ".*", which also matches a
# missing label; ".+" makes a query with a misspelt label name come back empty.
GRAFANA_VARS = {"$__rate_interval": "10s", "$__interval": "2s", "$symbol": ".+", "$model": ".+"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def exported_names() -> set[str]:
    """Every sample name the streamsig registry can export (counters gain ``_total``)."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    return {m.name + s for m in REGISTRY.collect() for s in suffixes[m.type]}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, keywords, label names or values).

    >>> sorted(metric_names('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x=~"y"}[5m]))) / b'))
    ['a_bucket', 'b']
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # range selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)  # label lists
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end():].lstrip().startswith("(") or m.group().lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        if m.start() and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # part of a number such as 1e3
        names.add(m.group())
    return names


def substitute(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])  # panels inside a collapsed row
    return out


def targets(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query in the dashboard."""
    return [(p["title"], t["expr"]) for p in panels(dash) for t in p.get("targets", [])]


def variables(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, label) of every ``label_values(metric, label)`` template variable."""
    out = []
    for v in dash.get("templating", {}).get("list", []):
        q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q)
        assert m, f"variable {v['name']}: unsupported query {q!r}"
        out.append((m.group(1), m.group(2)))
    return out


def provisioned_datasource_uid() -> str:
    (f,) = (DEPLOY / "grafana" / "provisioning" / "datasources").glob("*.yml")
    (ds,) = yaml.safe_load(f.read_text())["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    return ds["uid"]


def test_there_are_dashboards_and_the_generated_ones_are_current() -> None:
    assert [p.name for p in DASHBOARDS] == ["streamsig-model.json", "streamsig-ops.json", "streamsig.json"]
    gen = subprocess.run([sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    assert len({load(p)["uid"] for p in DASHBOARDS}) == len(DASHBOARDS)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash = load(path)
    uid = provisioned_datasource_uid()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in panels(dash)]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    for p in panels(dash):
        assert p["title"].strip() and p["type"]
        g = p["gridPos"]
        assert g["w"] >= 1 and g["x"] + g["w"] <= 24 and g["h"] >= 1
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid and t["refId"] and t["expr"].strip()
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
    for v in dash["templating"]["list"]:
        assert v["datasource"]["uid"] == uid


def used_metrics(dash: dict[str, Any]) -> set[str]:
    return {n for _, e in targets(dash) for n in metric_names(e)} | {m for m, _ in variables(dash)}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_use_only_exported_metrics(path: Path) -> None:
    used, exported = used_metrics(load(path)), exported_names()
    assert used <= exported, f"not exported by streamsig: {sorted(used - exported)}"


def test_every_exported_metric_has_a_panel() -> None:
    used = set().union(*(used_metrics(load(p)) for p in DASHBOARDS))
    families = {m.name for m in REGISTRY.collect()}
    shown = {f for f in families if any(n.startswith(f) for n in used)}
    assert shown == families, f"metrics without a panel: {sorted(families - shown)}"


def test_deploy_files_agree() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    svc = compose["services"]
    graf = svc["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in graf
    (dash_mount,) = [v for v in graf if v.startswith("../dashboards:")]
    (prov,) = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/streamsig.yml").read_text())["providers"]
    assert dash_mount.split(":")[1] == prov["options"]["path"]
    for v in graf + svc["prometheus"]["volumes"]:
        host = v.split(":")[0]
        if host.startswith("."):
            assert (DEPLOY / host).exists(), v
    assert (DEPLOY / svc["worker"]["build"]["dockerfile"].removeprefix("deploy/")).exists()
    # Prometheus scrapes each process on the port its command line gives
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    wanted = set()
    for name in ("worker", "trader", "serve"):
        cmd = svc[name]["command"]
        wanted.add(f"{name}:{cmd[cmd.index('--metrics-port') + 1]}")
        assert svc[name]["environment"]["STREAMSIG_METRICS_ADDR"] == "0.0.0.0"
    assert scraped == wanted
    if shutil.which("promtool"):
        subprocess.run(["promtool", "check", "config", str(DEPLOY / "prometheus.yml")], check=True,
                       capture_output=True, timeout=30)


# ---- against a real Prometheus ----------------------------------------------------------------
EXPORTER = r"""
import sys, time
from streamsig import telemetry as M

M.serve_metrics(int(sys.argv[1]))
models = ("m1",)
while True:  # every metric, every label, values that keep moving (so rates are not zero)
    for i, sym in enumerate(("AAA", "BBB")):
        M.EVENTS.labels(sym).inc(500 + i)
        M.FRAMES.labels(sym).inc(2)
        M.DUPLICATES.labels(sym).inc(1)
        M.GAPS.labels(sym).inc(1)
        M.RESYNC_DROPPED.labels(sym).inc(3)
        for lat in (0.0007, 0.003, 0.008, 0.04):
            M.LATENCY.labels(sym).observe(lat * (i + 1))
            for stage in M.STAGES:
                M.STAGE[stage].observe(lat * (i + 1))
        for m in models:
            M.SIGNALS.labels(sym, m).inc(20)
            M.FILLS.labels(sym, m).inc(1)
            M.FEES.labels(sym, m).inc(0.25)
            M.PNL.labels(sym, m).set(125.5 - 300 * i)
            M.POSITION.labels(sym, m).set(1 - 2 * i)
            M.DRAWDOWN.labels(sym, m).set(0.01 + 0.02 * i)
            M.SHARPE.labels(sym, m).set(1.5 - i)
        for m in models + (models[0] + "+online",):
            M.MATURED.labels(sym, m).inc(10)
            M.HITS.labels(sym, m).inc(4 + i)
            M.DRIFTS.labels(sym, m).inc(1)
        M.CONSUMER_LAG.labels("worker", "book-events", str(i)).set(7 + i)
    for reason in ("bad_frame", "sequence"):
        M.DEAD_LETTERS.labels(reason).inc(1)
    M.WS_CLIENTS.set(3)
    M.CHECKPOINT_WRITES.labels("worker").inc(5)
    M.CHECKPOINT_RESTORES.labels("broker").inc(2)
    M.CHECKPOINT_CORRUPT.labels("SYN0").inc(1)
    M.SNAPSHOT_REQUESTS.labels("SYN0").inc(1)
    M.SNAPSHOT_WAIT.labels("SYN0").inc(0.5)
    M.SEND_RETRIES.labels("signals").inc(1)
    M.SUPPRESSED.labels("SYN0", "signals").inc(3)
    M.BENIGN_DELETES.labels("SYN0").inc(4)
    M.WS_SENT.inc(40)
    M.WS_DROPPED.inc(1)
    M.BROKER_UP.labels("worker", "127.0.0.1:9092").set(1)
    M.BROKER_OUTAGES.labels("worker").inc(1)
    M.BROKER_DATA_LOSSES.labels("worker").inc(1)
    M.WS_REFUSED.labels("token").inc(1)
    for stage in M.STAGES:
        for lat in (0.0004, 0.002, 0.03):
            M.STAGE_LATENCY.labels(stage).observe(lat)
    for m in models + (models[0] + "+online",):
        for j, cls in enumerate(("down", "flat", "up")):
            for p in (0.05, 0.25 + 0.1 * j, 0.55, 0.95):
                M.SCORES.labels(m, cls).observe(p)
            M.CALIB_PRED.labels(m, cls, "0.3").inc(4)
            M.CALIB_HIT.labels(m, cls, "0.3").inc(1)
    sum(range(20000))  # a little CPU time, so the CPU panel moves
    time.sleep(0.25)
"""


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_for(what: str, check, timeout: float = 20.0) -> Any:  # noqa: ANN001
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            got = check()
            if got:
                return got
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} ({last})")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Prometheus:
    """The real Prometheus binary scraping one ``/metrics`` port every second."""

    def __init__(self, tmp_path: Path, target_port: int) -> None:
        self.port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "streamsig",
                                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
        }))
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.api = f"http://127.0.0.1:{self.port}/api/v1"
        # answers queries (and exits cleanly on SIGTERM) only once it is ready
        wait_for("Prometheus to be ready", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/-/ready", timeout=2).status == 200, timeout=60)

    def query(self, q: str) -> list[dict[str, Any]]:
        r = http_json(f"{self.api}/query?" + urllib.parse.urlencode({"query": q}))
        assert r["status"] == "success", (q, r)
        return r["data"]["result"]

    def scrapes(self) -> int:
        """Samples of one always-present series in the last minute (each scrape adds one)."""
        res = self.query("count_over_time(process_start_time_seconds[1m])")
        return int(float(res[0]["value"][1])) if res else 0

    def label_values(self, metric: str, label: str) -> list[str]:
        r = http_json(f"{self.api}/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric}))
        assert r["status"] == "success", (metric, label, r)
        return r["data"]

    def stop(self) -> None:
        stop(self.proc)
        assert self.proc.returncode == 0, self.proc.stderr.read().decode()[-2000:]


def dashboard_problems(prom: Prometheus, may_be_zero: frozenset[str] = frozenset(),
                       only: frozenset[str] | None = None) -> dict[str, str]:
    """Every query of every dashboard that returns nothing, or only zeros (unless all its metrics may be zero).

    Keyed by ``dashboard / panel / query``; ``only`` limits the check to those keys.
    """
    problems = {}
    for path in DASHBOARDS:
        dash = load(path)
        for title, expr in targets(dash):
            key = f"{path.name} / {title} / {expr}"
            if only is not None and key not in only:
                continue
            result = prom.query(substitute(expr))
            values = [float(r["value"][1]) for r in result]
            if not result:
                problems[key] = f"{path.name} / {title}: no data for {expr}"
            elif not any(math.isfinite(v) and v != 0 for v in values) and not metric_names(expr) <= may_be_zero:
                problems[key] = f"{path.name} / {title}: {expr} -> {values}"
        for metric, label in variables(dash):
            key = f"{path.name} / variable / {metric}:{label}"
            if (only is None or key in only) and not prom.label_values(metric, label):
                problems[key] = f"{path.name}: variable label_values({metric}, {label}) is empty"
    return problems


def n_queries() -> int:
    return sum(len(targets(load(p))) for p in DASHBOARDS)


@pytest.mark.slow
@pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK), reason=f"no Prometheus binary at {PROMETHEUS}")
def test_every_dashboard_query_returns_data_from_prometheus(tmp_path: Path) -> None:
    """Against a process that sets every metric to moving values: every query non-empty and non-zero."""
    exporter_port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    exporter = subprocess.Popen([sys.executable, "-c", EXPORTER, str(exporter_port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    prom = Prometheus(tmp_path, exporter_port)
    try:
        # the exporter serves every streamsig metric with labels
        text = wait_for("the exporter", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{exporter_port}/metrics", timeout=2).read().decode())
        served = {re.split(r"[{ ]", ln, maxsplit=1)[0] for ln in text.splitlines() if ln and ln[0] != "#"}
        missing = {n for n in exported_names() if n not in served}
        assert not missing, f"exporter does not set {sorted(missing)}"
        # at least 5 scrapes inside the 10 s rate window
        wait_for("five scrapes", lambda: prom.scrapes() >= 5, timeout=25)
        assert dashboard_problems(prom) == {}
        assert n_queries() >= 40
    finally:
        stop(exporter)
        prom.stop()


# counters of faults, and gauges that are 0 in a healthy run (a flat position, a caught-up consumer):
# their series must exist, their values may be 0
HEALTHY_ZERO = frozenset({
    "streamsig_duplicate_events_total", "streamsig_sequence_gaps_total", "streamsig_resync_dropped_events_total",
    "streamsig_websocket_clients_dropped_total", "streamsig_drift_alarms_total", "streamsig_consumer_lag_messages",
    "streamsig_position", "streamsig_broker_outages_total", "streamsig_broker_data_losses_total",
    "streamsig_websocket_refused_total", "streamsig_checkpoint_restores_total", "streamsig_checkpoint_corrupt_total",
    "streamsig_snapshot_requests_total", "streamsig_snapshot_wait_seconds_total", "streamsig_send_retries_total",
    "streamsig_output_suppressed_total", "streamsig_benign_deletes_total"})


@pytest.mark.slow
@pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK), reason=f"no Prometheus binary at {PROMETHEUS}")
async def test_every_dashboard_query_returns_data_from_prometheus_scraping_the_demo(tmp_path: Path) -> None:
    """The real pipeline (``streamsig demo``), a websocket client and one bad frame: every panel has data."""
    import asyncio

    import websockets
    from aiokafka import AIOKafkaProducer

    from tests._livedemo import LiveDemo

    with LiveDemo(tmp_path, duration_s=150, extra=("--challenger",)) as demo:  # the challenger's panels too
        await asyncio.to_thread(demo.wait_page)
        prom = Prometheus(tmp_path, demo.metrics_port)
        try:
            ws = await websockets.connect(f"ws://127.0.0.1:{demo.ws_port}/?token={demo.token}")
            await ws.send(json.dumps({"op": "subscribe", "symbols": "*"}))
            reader = asyncio.create_task(_drain(ws))
            # undecodable frames on the demo's broker (its address is on the broker gauge) -> dead letters
            text = urllib.request.urlopen(f"http://127.0.0.1:{demo.metrics_port}/metrics", timeout=5).read().decode()
            (broker,) = set(re.findall(r'streamsig_broker_up\{broker="([^"]+)",role="[^"]+"\} 1\.0', text))
            producer = AIOKafkaProducer(bootstrap_servers=broker)
            await producer.start()
            problems: dict[str, str] = {"": "not polled yet"}
            pending = None  # queries that have not shown data yet (a rate of rare events reads 0 between them)
            try:
                for _ in range(120):  # until every query has had data (a label matures 50 rows after its row)
                    await producer.send_and_wait("demo-book-events", b"not a book frame", key=b"SYNA")
                    if await asyncio.to_thread(prom.scrapes) >= 5:
                        problems = await asyncio.to_thread(dashboard_problems, prom, HEALTHY_ZERO, pending)
                        pending = frozenset(problems)
                        if not problems:
                            break
                    await asyncio.sleep(1.0)
            finally:
                await producer.stop()
            reader.cancel()
            await ws.close()
        finally:
            prom.stop()
    assert problems == {}, "\n".join(problems.values())
    assert "stopped cleanly" in demo.out, demo.err[-2000:]


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass


# ---- dashboards push, against a stand-in for Grafana's HTTP API ---------------------------------
class _FakeGrafana(BaseHTTPRequestHandler):
    calls: list[tuple[str, str, Any]] = []

    def _reply(self, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.calls.append(("GET", self.path, self.headers.get("Authorization")))
        self._reply([{"uid": "other", "title": "other"}])

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(("POST", self.path, body))
        if self.path.endswith("/folders"):
            self._reply({"uid": "fold-1", "title": body["title"]})
        else:
            self._reply({"status": "success", "url": f"/d/{body['dashboard']['uid']}/x"})

    def log_message(self, *args: Any) -> None:
        pass


def test_dashboards_push_request_shape() -> None:
    """What ``streamsig dashboards push`` sends (a stand-in server: no real Grafana here)."""
    import typer
    from typer.testing import CliRunner

    from streamsig.cli.serve import register

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    app = typer.Typer()
    register(app)
    try:
        res = CliRunner().invoke(app, ["dashboards", "push", "--grafana", f"http://127.0.0.1:{srv.server_port}",
                                       "--api-key", "glsa_test", "--datasource-uid", "prom-9",
                                       "--dir", str(ROOT / "dashboards")])
    finally:
        srv.shutdown()
    assert res.exit_code == 0, res.output
    calls = _FakeGrafana.calls
    assert calls[0][:2] == ("GET", "/api/folders") and calls[0][2] == "Bearer glsa_test"
    assert calls[1] == ("POST", "/api/folders", {"title": "streamsig"})
    pushes = [c[2] for c in calls if c[1] == "/api/dashboards/db"]
    assert [p["dashboard"]["uid"] for p in pushes] == [load(p)["uid"] for p in DASHBOARDS]
    for push in pushes:
        assert push["folderUid"] == "fold-1" and push["overwrite"] is True
        dash = push["dashboard"]
        assert "id" not in dash
        assert {p["datasource"]["uid"] for p in panels(dash) if p["type"] != "row"} == {"prom-9"}
