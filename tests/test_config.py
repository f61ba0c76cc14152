"""One way to configure: every config class loads and saves alike; CLI value > STREAMSIG_* > default."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamsig.book.crypto import TARDIS_BOOK_SNAPSHOT
from streamsig.book.synthetic import SyntheticConfig
from streamsig.config import Config
from streamsig.errors import DataError
from streamsig.features import FeatureSpec
from streamsig.labels import LabelConfig
from streamsig.live.config import StreamConfig
from streamsig.models.walkforward import FoldSpec
from streamsig.trading import ExecConfig, PolicyConfig

REPO = Path(__file__).resolve().parents[1]

CONFIGS = [
    StreamConfig(bootstrap="h:1", topic_prefix="p", partitions=3, web_port=7000),
    FeatureSpec(levels=3, time_windows=(0.5, 2.0), microprice_table=tuple(float(i) for i in range(20))),
    LabelConfig(kind="horizon", horizon=1.5, unit="seconds", threshold=2.0, threshold_unit="ticks", tick_size=0.5),
    ExecConfig(fee_bps=1.5, signal_latency_events=2, max_drawdown=0.1, passive=True),
    PolicyConfig(enter=0.3, exit=0.1, max_position=2.0, unit=0.5, min_hold=3),
    SyntheticConfig(symbols=("A", "B"), n_updates=500, mid_mode="trend", drift=0.1),
    TARDIS_BOOK_SNAPSHOT,
    FoldSpec(n_folds=3, scheme="rolling", gap=2),
]


def _toml(d: dict) -> str:
    def val(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(v)

    return "".join(f"{k} = {val(v)}\n" for k, v in d.items() if v is not None)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_every_config_round_trips_through_dict_json_and_toml(cfg: Config, tmp_path: Path) -> None:
    cls = type(cfg)
    assert isinstance(cfg, Config)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d  # JSON-safe
    assert cls.from_dict(d) == cfg
    (tmp_path / "c.json").write_text(json.dumps(d))
    assert cls.load(tmp_path / "c.json") == cfg
    (tmp_path / "c.toml").write_text(_toml(d))  # TOML has no null: None fields are left out
    assert cls.load(tmp_path / "c.toml") == cfg


def test_infinite_limits_are_none_in_the_dict() -> None:
    d = ExecConfig().to_dict()
    assert d["max_position"] is None and ExecConfig.from_dict(d).max_position == math.inf


@pytest.mark.parametrize("cls", [type(c) for c in CONFIGS], ids=lambda c: c.__name__)
def test_a_bad_file_is_one_line_naming_the_key(cls: type, tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("# a comment\nnot_a_field = 1\n")
    with pytest.raises(DataError, match=r"bad.toml:2: unknown key 'not_a_field'"):
        cls.load(p)


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text('enter = 0.3\nmin_hold = "three"\n')
    with pytest.raises(DataError, match=r"p.toml:2: key 'min_hold': expected an integer, got str"):
        PolicyConfig.load(p)


def test_from_env_reads_streamsig_variables() -> None:
    env = {"STREAMSIG_FEE_BPS": "2.5", "STREAMSIG_PASSIVE": "true", "STREAMSIG_MAX_DRAWDOWN": ""}
    ex = ExecConfig.from_env(env, max_position=3.0)
    assert (ex.fee_bps, ex.passive, ex.max_drawdown, ex.max_position) == (2.5, True, None, 3.0)
    with pytest.raises(ValueError, match="STREAMSIG_MIN_HOLD='x'"):
        PolicyConfig.from_env({"STREAMSIG_MIN_HOLD": "x"})


# ---- the commands: CLI value > STREAMSIG_* variable > default --------------------------------------

def resolved(*args: str, **env: str) -> dict:
    """The config a real ``python -m streamsig.cli ... --print-config`` process resolves under ``env``."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSIG_")}
    e.update(env, PYTHONPATH=str(REPO) + os.pathsep + e.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "streamsig.cli", *args, "--print-config"], capture_output=True,
                       text=True, env=e, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def resolved_here(*args: str, **env: str) -> dict:
    """The same, in this process (typer's runner; every STREAMSIG_* variable not in ``env`` unset)."""
    from typer.testing import CliRunner

    from streamsig.cli.main import app

    e: dict[str, str | None] = {k: None for k in os.environ if k.startswith("STREAMSIG_")}
    e.update(env)
    r = CliRunner().invoke(app, [*args, "--print-config"], env=e)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


ENV = {"STREAMSIG_TOPIC_PREFIX": "envp", "STREAMSIG_PARTITIONS": "7", "STREAMSIG_FEE_BPS": "3.5",
       "STREAMSIG_MAX_POSITION": "2", "STREAMSIG_LATENCY_EVENTS": "3"}
COMMANDS = ["worker", "trade", "demo", "serve", "backtest"]


def check_env(cmd: str, got: dict) -> None:
    if cmd != "backtest":
        assert (got["stream"]["topic_prefix"], got["stream"]["partitions"]) == ("envp", 7)
    if "exec" in got:
        assert (got["exec"]["fee_bps"], got["exec"]["signal_latency_events"]) == (3.5, 3)
    if "policy" in got:
        assert got["policy"]["max_position"] == 2.0


@pytest.mark.parametrize("cmd", COMMANDS)
def test_a_command_process_honours_the_environment(cmd: str) -> None:
    check_env(cmd, resolved(cmd, **ENV))


@pytest.mark.parametrize("cmd", COMMANDS)
def test_the_command_line_beats_the_environment(cmd: str) -> None:
    check_env(cmd, resolved_here(cmd, **ENV))
    cli = resolved_here(cmd, *(["--topic-prefix", "clip", "--partitions", "2"] if cmd != "backtest" else []),
                        *(["--fee-bps", "0.5", "--latency-events", "2"] if cmd in ("trade", "demo", "backtest") else []),
                        *(["--max-position", "4"] if cmd != "serve" else []), **ENV)
    if cmd != "backtest":
        assert (cli["stream"]["topic_prefix"], cli["stream"]["partitions"]) == ("clip", 2)
    if "exec" in cli:
        assert (cli["exec"]["fee_bps"], cli["exec"]["signal_latency_events"]) == (0.5, 2)
    if "policy" in cli:
        assert cli["policy"]["max_position"] == 4.0


def test_backtest_trade_and_demo_share_every_default() -> None:
    got = {cmd: resolved_here(cmd) for cmd in ("backtest", "trade", "demo")}
    execs = [g["exec"] for g in got.values()]
    assert execs[0] == execs[1] == execs[2]
    assert execs[0]["fee_bps"] == 1.0 and execs[0]["signal_latency_events"] == 1
    assert execs[0]["max_drawdown"] == 0.2
    assert got["backtest"]["policy"] == got["demo"]["policy"] == resolved_here("worker")["policy"]
    assert got["backtest"]["policy"]["kind"] == "threshold" and got["backtest"]["policy"]["fee_bps"] == 1.0
    assert got["backtest"]["policy"]["unit"] is None  # all-in: the unit is --max-position
    assert got["trade"]["stream"]["topic_prefix"] == ""
