"""The ``streamsig serve`` and ``streamsig dashboards push`` commands (added with :func:`register`)."""
from __future__ import annotations

import asyncio
import faulthandler
import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from streamsig.cli.options import (
    Kafka, MetricsPort, PagePort, Partitions, Prefix, PrintConfig, console, print_config,
)

ENV_TOKEN = "STREAMSIG_TOKEN"  #: accepted websocket token(s), comma-separated
DASHBOARDS_DIR = Path("dashboards")  #: relative to the working directory (the repository root)
DATASOURCE_UID = "streamsig-prometheus"  #: the uid deploy/grafana provisions and the dashboards use
STOP_GRACE_S = 10.0  #: seconds ``serve`` gives its connections and consumer to close after a signal

_Host = Annotated[str, typer.Option("--host", envvar="STREAMSIG_WS_HOST", show_envvar=True,
                                    help="Interface the websocket server binds to (0.0.0.0 for all).")]
_Port = Annotated[int, typer.Option("--port", min=0, max=65535, help="Websocket port (0 picks a free one).")]
_Token = Annotated[Optional[list[str]], typer.Option(
    "--token", help=f"A token clients must pass as ws://HOST:PORT/?token=...; repeat to accept several. "
    f"Default: ${ENV_TOKEN} (comma-separated), else a random token is generated and printed.")]
_TokenFile = Annotated[Optional[Path], typer.Option(
    "--token-file", help="A file holding the accepted token(s), one per line (keeps them out of `ps`); "
    f"used when no --token is given, before ${ENV_TOKEN}.")]
_Origin = Annotated[Optional[list[str]], typer.Option(
    "--origin", help="A browser origin (e.g. https://dash.example.com) allowed besides the server's own; "
    "repeat for several.")]
_Queue = Annotated[int, typer.Option(
    "--queue-size", min=1, help="Messages queued per client; a client whose queue fills is disconnected "
    "with close code 4408 (slow consumer).")]
_MetricsAddr = Annotated[str, typer.Option("--metrics-addr", envvar="STREAMSIG_METRICS_ADDR", show_envvar=True,
                                           help="Interface the /metrics endpoint binds to.")]
_FromBeginning = Annotated[bool, typer.Option(
    "--from-beginning", help="Replay the topics from their first offset instead of starting at their end.")]


def tokens_or_new(given: list[str] | None, env: dict[str, str] | None = None,
                  token_file: Path | None = None) -> tuple[list[str], bool]:
    """The accepted tokens and whether one had to be generated.

    Precedence: ``--token``, then ``--token-file`` (one token a line), then
    ``$STREAMSIG_TOKEN`` (comma-separated), else a new random token.

    >>> tokens_or_new(None, {"STREAMSIG_TOKEN": "a, b"})
    (['a', 'b'], False)
    >>> len(tokens_or_new([], {})[0][0]) > 20
    True
    """
    env = dict(os.environ) if env is None else env
    toks = [t.strip() for t in (given or []) if t.strip()]
    if not toks and token_file is not None:
        toks = [t.strip() for t in Path(token_file).read_text().splitlines() if t.strip()]
        if not toks:
            raise ValueError(f"{token_file}: no token in the file")
    if not toks:
        toks = [t.strip() for t in env.get(ENV_TOKEN, "").split(",") if t.strip()]
    if toks:
        return toks, False
    return [secrets.token_urlsafe(24)], True


def serve(kafka: Kafka = None, host: _Host = "127.0.0.1", port: _Port = 8765, token: _Token = None,
          queue_size: _Queue = 1000, metrics_port: MetricsPort = 9108, metrics_addr: _MetricsAddr = "127.0.0.1",
          topic_prefix: Prefix = "", partitions: Partitions = 4, from_beginning: _FromBeginning = False,
          page_port: PagePort = 8766, show: PrintConfig = False, token_file: _TokenFile = None,
          origin: _Origin = None) -> None:
    """Serve live signals, fills and P&L to websocket clients as JSON, and the live page over HTTP.

    Reads the signals, pnl and fills topics (no consumer group); protocol in
    docs/observability.md. Ctrl-C or SIGTERM stops it: what has not closed within
    10 s is abandoned, with a warning that shows where it was waiting.
    """
    from streamsig.heap import settled
    from streamsig.serve.page import PageServer
    from streamsig.serve.ws import SignalServer, run_server
    from streamsig.telemetry import serve_metrics
    from streamsig.live.broker import BrokerError, resolve_kafka
    from streamsig.live.config import StreamConfig
    from streamsig.wire.topics import Topics, TopicError

    if show:
        print_config("serve", kafka=kafka, stream=StreamConfig.from_env(
            bootstrap=kafka or "embedded", topic_prefix=topic_prefix, partitions=partitions),
            host=host, port=port, page_port=page_port, metrics_port=metrics_port, metrics_addr=metrics_addr)
    try:
        tokens, generated = tokens_or_new(token, token_file=token_file)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    if generated:
        print(f"token: {tokens[0]}", flush=True)
    try:
        bootstrap, broker = resolve_kafka(kafka)
    except BrokerError as exc:
        _fail(str(exc))
    page = PageServer(host, page_port, port)
    try:
        stream_cfg = StreamConfig.from_env(bootstrap=bootstrap, topic_prefix=topic_prefix, partitions=partitions)
        serve_metrics(metrics_port, metrics_addr)
        topics = Topics(topic_prefix)

        def ready(srv: SignalServer) -> None:
            page.ws_port = srv.port
            page.start()
            srv.allow_origins(page.origins())
            console.print(f"serving {topics.signals}, {topics.pnl} and {topics.fills} from {bootstrap} on "
                          f"ws://{host}:{srv.port}/?token=..."
                          + (f" (metrics on {metrics_addr}:{metrics_port})" if metrics_port else ""))
            console.print(f"live page {page.url(None if not generated else tokens[0])}"
                          + ("" if generated else "?token=..."), soft_wrap=True)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def on_signal() -> None:
                if not stop.is_set():
                    stop.set()
                    _watchdog(STOP_GRACE_S, broker, loop)

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal)
            await settled(run_server(bootstrap, topics, host, port, tokens, queue_size,
                                     from_beginning=from_beginning, partitions=partitions, stop=stop,
                                     on_ready=ready, fetch_max_wait_ms=stream_cfg.fetch_max_wait_ms,
                                     origins=origin or ()))

        asyncio.run(main())
    except (TopicError, OSError, ValueError) as exc:
        _fail(str(exc))
    finally:
        page.stop()
        if broker is not None:
            broker.stop()


def _watchdog(grace_s: float, broker: Any, loop: asyncio.AbstractEventLoop) -> threading.Timer:
    """After ``grace_s``, if the process is still here, print where it waits, stop ``broker`` and exit 0.

    Where it waits: every thread's stack and every pending task of ``loop``.
    """
    def give_up() -> None:
        print(f"warning: serve did not stop within {grace_s:g} s of the signal; exiting anyway. "
              "Where it was waiting:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        try:  # read from another thread: good enough to say where it hangs
            for task in list(asyncio.all_tasks(loop)):
                task.print_stack(file=sys.stderr)
        except Exception:  # noqa: BLE001 - the exit must not depend on the report
            pass
        sys.stderr.flush()
        if broker is not None:
            broker.stop()
        os._exit(0)

    timer = threading.Timer(grace_s, give_up)
    timer.daemon = True
    timer.start()
    return timer


def _fail(msg: str) -> NoReturn:
    """Print a one-line error and exit with status 2."""
    console.print(f"[red]error:[/] {msg}")
    sys.exit(2)


# ---- dashboards ---------------------------------------------------------------------------
dashboards_app = typer.Typer(help="Grafana dashboards shipped in dashboards/.", no_args_is_help=True)


def dashboard_files(folder: Path = DASHBOARDS_DIR) -> list[Path]:
    """The dashboard JSON files in ``folder``, sorted by name."""
    return sorted(folder.glob("*.json"))


def _datasources(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "prometheus":
            yield ds
        for v in node.values():
            yield from _datasources(v)
    elif isinstance(node, list):
        for v in node:
            yield from _datasources(v)


def with_datasource(dashboard: dict[str, Any], uid: str) -> dict[str, Any]:
    """A copy of ``dashboard`` whose Prometheus datasource references use ``uid``.

    >>> d = {"panels": [{"datasource": {"type": "prometheus", "uid": "a"}}]}
    >>> with_datasource(d, "b")["panels"][0]["datasource"]["uid"], d["panels"][0]["datasource"]["uid"]
    ('b', 'a')
    """
    copy = json.loads(json.dumps(dashboard))
    for ds in _datasources(copy):
        ds["uid"] = uid
    return copy


@dashboards_app.command("push")
def push(
    grafana: Annotated[str, typer.Option("--grafana", envvar="GRAFANA_URL", show_envvar=True,
                                         help="Grafana base URL, e.g. http://localhost:3000.")],
    api_key: Annotated[str, typer.Option("--api-key", envvar="GRAFANA_TOKEN", show_envvar=True,
                                         help="Grafana service-account token (Editor or Admin).")],
    folder: Annotated[str, typer.Option("--folder", help="Grafana folder title; created if missing.")] = "streamsig",
    datasource_uid: Annotated[str, typer.Option(
        "--datasource-uid", help="Uid of the Prometheus datasource in that Grafana.")] = DATASOURCE_UID,
    path: Annotated[Path, typer.Option(
        "--dir", help="Folder of dashboard JSON files (the default is relative to the repository root).")
    ] = DASHBOARDS_DIR,
) -> None:
    """Upload every dashboard in dashboards/ to a Grafana server (overwriting same-uid dashboards)."""
    from grafana_client import GrafanaApi

    files = dashboard_files(path)
    if not files:
        _fail(f"no dashboard JSON files in {path}")
    api = GrafanaApi.from_url(grafana, credential=api_key)
    try:
        folder_uid = _folder_uid(api, folder)
        for f in files:
            dash = with_datasource(json.loads(f.read_text()), datasource_uid)
            dash.pop("id", None)
            res = api.dashboard.update_dashboard({"dashboard": dash, "folderUid": folder_uid, "overwrite": True,
                                                  "message": f"streamsig dashboards push ({f.name})"})
            console.print(f"{f.name} -> {grafana.rstrip('/')}{res.get('url', '')}")
    except Exception as exc:  # noqa: BLE001 - report any HTTP/API failure in one line
        _fail(f"Grafana at {grafana}: {exc}")


def _folder_uid(api: Any, title: str) -> str:
    for f in api.folder.get_all_folders():
        if f.get("title") == title:
            return str(f["uid"])
    return str(api.folder.create_folder(title)["uid"])


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``dashboards`` group to ``app``."""
    app.command("serve")(serve)
    app.add_typer(dashboards_app, name="dashboards")
