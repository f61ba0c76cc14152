"""The websocket edge under attack: bounded replies and limits, token before the upgrade, Origin, failed logins."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamsig.serve.ws import CLOSE_POLICY, SignalServer
from streamsig.telemetry import REGISTRY

TOKEN = "hostile-s3cret"


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("streamsig_websocket_refused_total", {"reason": reason}) or 0.0


def url(server: SignalServer, token: str = TOKEN) -> str:
    return f"ws://127.0.0.1:{server.port}/?token={token}"


async def test_subscribe_replies_are_a_count_and_subscriptions_are_capped() -> None:
    async with SignalServer(None, port=0, tokens=[TOKEN], max_symbols=300) as server:
        async with connect(url(server)) as ws:
            await ws.recv()  # hello
            sizes = []
            for i in range(3):
                await ws.send(json.dumps({"op": "subscribe", "symbols": [f"S{i}-{k}" for k in range(100)]}))
                reply = await ws.recv()
                sizes.append(len(reply))
                assert json.loads(reply) == {"type": "subscribed", "count": 100 * (i + 1), "all": False}
            assert len(set(sizes)) == 1 and sizes[0] < 64  # the reply does not grow with the list
            await ws.send(json.dumps({"op": "subscribe", "symbols": ["one-too-many"]}))
            err = json.loads(await ws.recv())
            assert err["type"] == "error" and "at most 300" in err["error"]
            await ws.send(json.dumps({"op": "subscribe", "symbols": ["x" * 65]}))
            assert json.loads(await ws.recv())["type"] == "error"


async def test_oversized_messages_and_floods_close_the_client() -> None:
    async with SignalServer(None, port=0, tokens=[TOKEN], max_message_bytes=4096, rate=5.0, burst=10) as server:
        async with connect(url(server), max_size=None) as ws:
            await ws.recv()
            await ws.send("x" * 100_000)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009  # message too big
        before = refused("message_rate")
        async with connect(url(server)) as ws:
            await ws.recv()
            with pytest.raises(ConnectionClosed) as info:
                for _ in range(200):
                    await ws.send('{"op": "subscribe", "symbols": ["A"]}')
                while True:
                    await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == CLOSE_POLICY
        assert refused("message_rate") == before + 1
        assert server.n_clients == 0


async def test_token_is_checked_before_the_upgrade_logged_without_it_and_counted(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="streamsig.serve.ws")
    async with SignalServer(None, port=0, tokens=[TOKEN]) as server:
        before = refused("token")
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server, "guess-ABC123"))
        assert info.value.response.status_code == 401
        assert refused("token") == before + 1
        assert "missing or wrong token" in caplog.text and "guess-ABC123" not in caplog.text
        assert server.n_clients == 0


async def test_failed_logins_are_rate_limited_per_address() -> None:
    async with SignalServer(None, port=0, tokens=[TOKEN], login_failures=3, login_window_s=60.0) as server:
        for _ in range(3):
            with pytest.raises(InvalidStatus) as info:
                await connect(url(server, "wrong"))
            assert info.value.response.status_code == 401
        before = refused("rate_limited")
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))  # even the right token, until the window passes
        assert info.value.response.status_code == 429
        assert refused("rate_limited") == before + 1


async def test_origin_must_be_the_page_itself_or_allowed() -> None:
    async with SignalServer(None, port=0, tokens=[TOKEN], origins=["https://dash.example.com"]) as server:
        own = f"http://127.0.0.1:{server.port}"
        for ok in (own, "https://dash.example.com", None):  # None: not a browser
            async with connect(url(server), origin=ok) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
        before = refused("origin")
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server), origin="http://evil.example")
        assert info.value.response.status_code == 403
        assert refused("origin") == before + 1


def test_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    from streamsig.cli.serve import tokens_or_new

    f = tmp_path / "token"
    f.write_text("from-file\nsecond\n")
    assert tokens_or_new(None, {"STREAMSIG_TOKEN": "env"}, f) == (["from-file", "second"], False)
    assert tokens_or_new(["cli"], {}, f) == (["cli"], False)
    assert tokens_or_new(None, {"STREAMSIG_TOKEN": "env"}) == (["env"], False)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="no token"):
        tokens_or_new(None, {}, tmp_path / "empty")
