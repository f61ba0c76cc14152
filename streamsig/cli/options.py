"""Options and helpers every ``streamsig`` subcommand shares, each option defined here once.

Every shared option has one default and one environment variable: an explicit
value on the command line wins, then ``STREAMSIG_<NAME>`` (e.g.
``STREAMSIG_TOPIC_PREFIX``, ``STREAMSIG_FEE_BPS``), then the default. The
policy and execution options are turned into one :class:`~streamsig.trading.policy.PolicyConfig` and one
:class:`~streamsig.trading.executor.ExecConfig` by :func:`trading_configs`, the same way for ``backtest``,
``worker``, ``trade`` and ``demo``:

* ``--max-position`` is the largest position in units; entries go all-in
  (``--unit`` defaults to it; a smaller ``--unit`` scales in one unit per
  confirming signal); rules and baselines trade that size.
* ``--latency-ns`` / ``--latency-events`` are the signal -> order latency: an
  order answering a row acts only after that much book time and that many
  further book updates (at least one).
* ``--fee-bps`` (taker), when neither given nor set in the environment, is
  each market's fee (:func:`market_fee_bps`: the feed's instrument, or the
  ``--instruments`` table), else 1 bp; ``--max-drawdown`` defaults to a kill
  switch at 20 % of a symbol's capital (0: off).
* ``--policy`` defaults to ``threshold`` (the ``--enter/--exit`` hysteresis);
  ``edge`` is the cost-aware policy (it reads the fee and slippage options too).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streamsig.book.instrument import Instrument, default_fee_bps
from streamsig.errors import DataError
from streamsig.trading.executor import DEFAULT_FEE_BPS, DEFAULT_LATENCY_EVENTS, DEFAULT_MAX_DRAWDOWN

console = Console(stderr=True, soft_wrap=True)


def _opt(name: str, help: str, **kw: Any) -> Any:  # noqa: A002
    """A typer option whose environment variable is ``STREAMSIG_<NAME>``."""
    env = "STREAMSIG_" + name.split("/")[0].lstrip("-").replace("-", "_").upper()
    return typer.Option(name, envvar=env, show_envvar=True, help=help, **kw)


# ---- the shared data options ------------------------------------------------------------
Source = Annotated[str, _opt("--source", "Where book events come from: synthetic | lobster | crypto "
                             "(default: detected from --data; synthetic without --data).")]
Data = Annotated[Optional[Path], _opt(
    "--data", "LOBSTER message file or folder of pairs; crypto book file (Tardis book_snapshot_N or "
    "incremental_book_L2, trades beside it are merged); synthetic scenario TOML (optional).")]
Levels = Annotated[Optional[int], _opt("--levels", "Book levels per side used for features.", min=1)]
Symbols = Annotated[Optional[str], _opt("--symbols", "Comma-separated symbols to keep (default: all).")]
Updates = Annotated[Optional[int], _opt("--updates", "Synthetic only: updates per symbol.", min=1)]
Seed = Annotated[Optional[int], _opt("--seed", "Synthetic only: generator seed.")]
TickSize = Annotated[Optional[float], _opt(
    "--tick-size", "Price tick of every symbol (default: --instruments, else inferred from the data's price grid).")]
Columns = Annotated[Optional[Path], _opt(
    "--columns", "TOML (or JSON) column map of a snapshot layout not detected from the header "
    "(keys: timestamp, bid_price, bid_size, ask_price, ask_size with {i}, first_level, time_unit...).")]
Instruments = Annotated[Optional[Path], _opt(
    "--instruments", "TOML table of instruments: [SYMBOL] tick_size, lot_size, contract = linear|inverse, "
    "multiplier, quote, settle, taker_fee_bps, maker_fee_bps.")]

# ---- the shared service options -----------------------------------------------------------
Kafka = Annotated[Optional[str], _opt(
    "--kafka", "Kafka bootstrap HOST:PORT[,HOST:PORT] (Apache Kafka, Redpanda...). Without it the embedded "
    "Tansu broker is started on loopback (memory only).")]
Prefix = Annotated[str, _opt("--topic-prefix", "Prefix for every topic name (one per deployment).")]
Partitions = Annotated[int, _opt("--partitions", "Partitions per topic when creating them.", min=1)]
MetricsPort = Annotated[int, _opt("--metrics-port", "Port for Prometheus /metrics (0: off). Processes on one "
                                  "host need different ports; each command has its own default.",
                                  min=0, max=65535)]
MaxSymbols = Annotated[int, _opt("--max-symbols", "Most symbols this process holds; frames of others are "
                                 "dead-lettered as UNKNOWN_SYMBOL.", min=1)]
AllowSymbols = Annotated[str, _opt("--allow-symbols", "Comma-separated symbols to accept (empty: any).")]
SeqWindow = Annotated[int, _opt("--seq-window", "Largest forward sequence jump a frame may make (beyond it: "
                                "SEQUENCE_JUMP dead letter).", min=1)]
PagePort = Annotated[int, _opt("--page-port", "HTTP port of the live page (0 picks a free one).",
                               min=0, max=65535)]
Model = Annotated[Optional[Path], _opt(
    "--model", "Model folder (models/<id>, holding model.onnx and card.json).")]
StateDir = Annotated[Optional[Path], _opt(
    "--state-dir", "Local cache of the per-symbol checkpoints (the broker's checkpoint topic is the reference); "
    "default: $XDG_DATA_HOME/streamsig/<command>.")]
CheckpointS = Annotated[float, _opt("--checkpoint-s", "Seconds between checkpoints (offsets are committed after each).",
                                    min=0.01)]
PrintConfig = Annotated[bool, typer.Option(
    "--print-config", help="Print the resolved configuration as JSON and exit (nothing is started).")]

# ---- policy options (one PolicyConfig) ------------------------------------------------------
Policy = Annotated[str, _opt(
    "--policy", "edge: trade only when the expected mid move (class probabilities x the model card's "
    "per-class moves) beats half the spread plus --fee-bps and --slippage-bps by --margin-bps "
    "(streamsig.trading.edge); threshold: trade on p_up - p_down crossing --enter/--exit.")]
MarginBps = Annotated[float, _opt("--margin-bps", "Edge policy: extra expected gain per unit traded, bps of "
                                  "the mid.", min=0.0)]
Enter = Annotated[float, _opt("--enter", "Threshold policy: enter when |p_up - p_down| >= this.")]
Exit = Annotated[float, _opt("--exit", "Threshold policy: leave a position when the edge falls below this "
                             "(hysteresis).")]
MaxPosition = Annotated[float, _opt(
    "--max-position", "Largest position per symbol, in units: the policy's cap (entries go all-in unless "
    "--unit is smaller), the size of rules and baselines, and the default capital's size.")]
Unit = Annotated[Optional[float], _opt(
    "--unit", "Policy: units per entry or confirming signal (default: --max-position, all-in).")]
MinHold = Annotated[int, _opt("--min-hold", "Policy: events a changed position is held before it may change.",
                              min=0)]

# ---- execution options (one ExecConfig) -----------------------------------------------------
FeeBps = Annotated[Optional[float], _opt(
    "--fee-bps", "Taker fee, basis points of notional (default: the market's taker fee where the data's "
    "instrument or --instruments gives one, else 1; the edge policy expects to pay it).")]
MakerFeeBps = Annotated[float, _opt("--maker-fee-bps", "Maker fee for --passive fills, bps (negative: rebate).")]
SlippageBps = Annotated[float, _opt("--slippage-bps", "Adverse price move on every market fill, bps (the edge "
                                    "policy expects to pay it).")]
LatencyNs = Annotated[int, _opt("--latency-ns", "Signal -> order latency, ns of book time.", min=0)]
LatencyEvents = Annotated[int, _opt(
    "--latency-events", "Signal -> order latency, book updates (at least 1; both latencies must pass).", min=0)]
MaxDrawdown = Annotated[float, _opt(
    "--max-drawdown", "Kill switch: flatten and stop a symbol at this drawdown, a fraction of its equity "
    "peak (0: off).", min=0.0, max=1.0)]
Passive = Annotated[bool, _opt("--passive/--aggressive", "Rest orders at our touch (queue model) instead of "
                               "crossing the spread.")]

# the defaults, once
POLICY, MARGIN_BPS = "threshold", 0.0  # edge loses less net of costs (docs/backtest.md) but never trades synthetic data
ENTER, EXIT, MAX_POSITION, MIN_HOLD = 0.2, 0.0, 1.0, 0
FEE_BPS, LATENCY_EVENTS, MAX_DRAWDOWN = DEFAULT_FEE_BPS, DEFAULT_LATENCY_EVENTS, DEFAULT_MAX_DRAWDOWN


def market_fee_bps(fee_bps: float | None, instrument: Instrument | None = None) -> float:
    """The taker fee a command charges on one market: ``fee_bps`` if it was given (``--fee-bps`` or
    ``STREAMSIG_FEE_BPS``), else the instrument's fee, else ``DEFAULT_FEE_BPS`` (1 bp).

    >>> market_fee_bps(0.5), market_fee_bps(None), market_fee_bps(None, Instrument("X", taker_fee_bps=4.0))
    (0.5, 1.0, 4.0)
    """
    if fee_bps is not None:
        return float(fee_bps)
    return float(default_fee_bps(instrument, fallback=DEFAULT_FEE_BPS))  # type: ignore[arg-type]



def trading_configs(enter: float = ENTER, exit: float = EXIT, max_position: float = MAX_POSITION,  # noqa: A002
                    unit: float | None = None, min_hold: int = MIN_HOLD, fee_bps: float | None = None,
                    maker_fee_bps: float = 0.0, slippage_bps: float = 0.0, latency_ns: int = 0,
                    latency_events: int = LATENCY_EVENTS, max_drawdown: float = MAX_DRAWDOWN,
                    passive: bool = False, kind: str = POLICY, margin_bps: float = MARGIN_BPS,
                    instrument: Instrument | None = None):  # noqa: ANN201 - (PolicyConfig, ExecConfig)
    """The one :class:`~streamsig.trading.policy.PolicyConfig` and :class:`~streamsig.trading.executor.ExecConfig` of the shared options (see module doc).

    ``kind`` is ``--policy``; the edge policy's costs are the executor's taker fee and slippage.
    ``fee_bps=None`` (not given) means :func:`market_fee_bps` of ``instrument``.
    """
    from streamsig.trading import ExecConfig, PolicyConfig

    fee = market_fee_bps(fee_bps, instrument)
    try:
        policy = PolicyConfig(kind=kind, enter=enter, exit=exit, max_position=max_position, unit=unit,
                              min_hold=min_hold, fee_bps=fee, slippage_bps=slippage_bps, margin_bps=margin_bps)
        ex = ExecConfig(fee_bps=fee, maker_fee_bps=maker_fee_bps, slippage_bps=slippage_bps,
                        signal_latency_ns=latency_ns, signal_latency_events=latency_events,
                        max_position=max_position, max_drawdown=max_drawdown or None, passive=passive)
    except ValueError as exc:
        raise DataError("options", None, str(exc)) from None
    return policy, ex


def print_config(command: str, **parts: Any) -> None:
    """Print ``{"command": ..., <part>: <config dict>...}`` as JSON on stdout and exit 0."""
    out: dict[str, Any] = {"command": command}
    for k, v in parts.items():
        out[k] = v.to_dict() if hasattr(v, "to_dict") else (str(v) if isinstance(v, Path) else v)
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    raise typer.Exit(0)


def _symbols(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def open_data(source: str, data: Path | None, levels: int | None, symbols: str | None,
              updates: int | None = None, seed: int | None = None, tick_size: float | None = None,
              columns: Path | None = None, instruments: Path | None = None, quiet: bool = False):  # noqa: ANN201
    """Feeds for the shared data options (see :func:`streamsig.book.sources.open_feeds`).

    The default ``--source synthetic`` with a ``--data`` that is no scenario
    file means "detect the source". Each file's tick (and how it was found) and
    what was detected are stated on stderr, one line per feed.
    """
    from streamsig.book.sources import open_feeds

    if source == "synthetic" and data is not None and data.suffix != ".toml":
        source = "auto"
    feeds = open_feeds(source, data, levels, _symbols(symbols), n_updates=updates, seed=seed,
                       tick_size=tick_size, columns=columns, instruments=instruments)
    if not quiet:
        for f in feeds:
            if f.label.startswith("synthetic:"):
                continue
            inst = f.instrument
            kind = f", {inst.contract} x{inst.multiplier:g} in {inst.currency}" if inst.inverse else ""
            _NOTES.append(f"{f.label}: {f.symbol} tick {f.tick_size:g} ({inst.tick_from}){kind}"
                          + "".join(f"; {n}" for n in f.notes))
    return feeds


_NOTES: list[str] = []


def flush_notes() -> None:
    """Print what :func:`open_data` detected (each file's tick and how it was found, layout, time unit,
    depth chosen), once. Commands call it when they have read their data; on an error the notes
    are dropped so the error stays the one line."""
    for line in _NOTES:
        console.print(line, highlight=False)
    _NOTES.clear()


def feature_spec(levels: int, spec_file: Path | None = None):  # noqa: ANN201
    """A FeatureSpec for ``levels``, optionally overridden by a TOML file of FeatureSpec fields."""
    import tomllib

    from streamsig.features import FeatureSpec

    kw: dict[str, object] = {"levels": levels}
    if spec_file:
        try:
            raw = tomllib.loads(spec_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DataError(spec_file, None, f"cannot read feature spec: {exc}") from None
        for k, v in raw.items():
            kw[k] = tuple(v) if isinstance(v, list) else v
    try:
        return FeatureSpec(**kw)  # type: ignore[arg-type]
    except TypeError as exc:
        raise DataError(spec_file or "feature spec", None, str(exc)) from None


def progress() -> Progress:
    """A rich progress bar on stderr."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
                    disable=not console.is_terminal)


def parse_speed(speed: str) -> float | None:
    """``max`` -> None (as fast as possible), else a positive multiple of real time (0 is an error)."""
    if speed.lower() in ("max", "inf"):
        return None
    try:
        v = float(speed.lower().rstrip("x"))
    except ValueError:
        raise DataError("--speed", None, f"expected a number or 'max', got {speed!r}") from None
    if not v > 0:
        raise DataError("--speed", None, f"must be > 0 (or 'max' for as fast as possible), got {speed!r}")
    return v
