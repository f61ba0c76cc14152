"""The live page: its HTTP server, and the page itself in headless Chromium on a running demo."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from streamsig.serve.page import PageServer, static_files
from tests._cdp import Browser, chromium_path, png_pixels
from tests._livedemo import LiveDemo

ROOT = Path(__file__).resolve().parents[1]
DATA_BOUND_S = 90  # the demo starts a broker, a worker and a trader first; then points come every frame


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_page_server_serves_the_packaged_files_and_the_websocket_port() -> None:
    page = PageServer("127.0.0.1", 0, ws_port=4321).start()
    try:
        base = f"http://127.0.0.1:{page.port}"
        code, headers, body = get(base + "/?token=x")
        assert code == 200 and headers["Content-Type"].startswith("text/html") and b'src="page.js"' in body
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        code, headers, body = get(base + "/page.js")
        assert code == 200 and headers["Content-Type"].startswith("text/javascript") and b"4401" in body
        assert get(base + "/config.json")[2] == json.dumps({"ws_port": 4321, "protocol": 2}).encode()
        assert get(base + "/../pyproject.toml")[0] == 404 and get(base + "/nope.js")[0] == 404
        assert page.url("a/b") == f"{base}/?token=a%2Fb"
    finally:
        page.stop()


def test_the_page_loads_nothing_from_elsewhere() -> None:
    files = static_files()
    assert {"/index.html", "/page.js", "/page.css"} <= set(files)
    for name, body in files.items():
        text = body.decode()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def _chromium() -> str:
    path = chromium_path()
    if path is None:
        msg = "no chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + ": CI must run the browser test")
        pytest.skip(msg)
    return path


POINTS = "(window.streamsigPage && window.streamsigPage.points()) || null"
ALL_CHARTS = ("(() => { const p = window.streamsigPage && window.streamsigPage.points();"
              " return p && p.price > 0 && p.microprice > 0 && p.score > 0 && p.target > 0 && p.pnl > 0 ? p : null; })()")


async def look_at_the_live_page(demo: LiveDemo, profile: Path, screenshot: Path | None = None) -> dict:
    """Open the page on a running demo; return what it showed (points per chart, pixels, the bad-token view)."""
    seen: dict = {}
    async with Browser(_chromium(), profile) as b:
        await b.open(demo.page_url())
        seen["points"] = await b.poll(ALL_CHARTS, DATA_BOUND_S)
        assert seen["points"], f"not every chart got points within {DATA_BOUND_S} s: {await b.js(POINTS)}"
        seen["state"] = await b.js("window.streamsigPage.state")
        seen["fills"] = await b.poll("window.streamsigPage.points().fills", 30)
        if screenshot is not None:  # a little more line for the picture
            await b.poll("window.streamsigPage.points().pnl > 150", 20)
        png = await b.screenshot()
        seen["pixels"] = png_pixels(png)
        if screenshot is not None:
            screenshot.write_bytes(png)
        await b.open(demo.page_url("wrong-token"))
        seen["bad_state"] = await b.poll(
            "window.streamsigPage && window.streamsigPage.state === 'unauthorized' && window.streamsigPage.state", 20)
        seen["bad_message"] = await b.poll("(() => { const m = document.getElementById('message');"
                                           " return m && !m.hidden ? m.textContent : ''; })()", 10)
        seen["bad_points"] = await b.js(POINTS)
    return seen


@pytest.mark.slow
async def test_live_page_draws_every_chart_from_the_demo_and_rejects_a_wrong_token(tmp_path: Path) -> None:
    out = os.environ.get("STREAMSIG_PAGE_SCREENSHOT")  # e.g. docs/live-page.png to refresh the README picture
    with LiveDemo(tmp_path) as demo:
        demo.wait_page()
        seen = await look_at_the_live_page(demo, tmp_path / "profile", Path(out) if out else None)
    assert seen["state"] == "live"
    pts = seen["points"]
    assert min(pts["price"], pts["score"], pts["target"], pts["pnl"]) >= 1
    assert seen["fills"], "no fill markers reached the price chart"
    px = seen["pixels"]
    assert px.shape[0] >= 500 and px.shape[1] >= 1000
    gray = px[..., :3].mean(axis=2)
    assert gray.std() > 0.05, "the screenshot is blank"
    colours = np.unique((px[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"only {len(colours)} colours: no lines drawn"
    assert seen["bad_state"] == "unauthorized"
    assert "Wrong or missing token" in seen["bad_message"] and "4401" in seen["bad_message"]
    assert seen["bad_points"] == {"price": 0, "score": 0, "target": 0, "pnl": 0, "fills": 0, "microprice": 0}
    assert "stopped cleanly" in demo.out, demo.err[-2000:]


@pytest.mark.slow
async def test_page_caps_its_points_and_reconnects_after_the_server_returns(tmp_path: Path) -> None:
    """A server fed in-process (no Kafka): more records than the cap, then a restart on the same port."""
    import asyncio

    from streamsig.serve.ws import SignalServer

    binary = _chromium()
    server = await SignalServer(None, port=0, tokens=["tk"], queue_size=20_000).start()
    port = server.port
    page = PageServer("127.0.0.1", 0, port).start()
    server.allow_origins(page.origins())  # the page is served from its own port, another origin
    t0 = 1_700_000_000_000_000_000
    try:
        async with Browser(binary, tmp_path / "profile") as b:
            await b.open(page.url("tk"))
            assert await b.poll("window.streamsigPage && window.streamsigPage.state === 'live'", 30)
            probe = {"type": "pnl", "symbol": "AAA", "exch_ts_ns": t0, "mid": 100.0, "microprice": 100.0, "pnl": 0.0}
            for _ in range(100):  # until the page's subscription has reached the server
                if server.broadcast(probe):
                    break
                await asyncio.sleep(0.1)
            n = 3500
            for i in range(1, n + 1):
                ts = t0 + i * 1_000_000
                server.broadcast({"type": "pnl", "symbol": "AAA", "exch_ts_ns": ts, "mid": 100 + 0.01 * (i % 50),
                                  "microprice": 100.004 + 0.01 * (i % 50), "pnl": 0.001 * i})
                server.broadcast({"type": "signal", "symbol": "AAA", "model": "m", "exch_ts_ns": ts,
                                  "p_down": 0.2, "p_flat": 0.5, "p_up": 0.3, "target": float(i % 3 - 1)})
            server.broadcast({"type": "fill", "symbol": "AAA", "ts_ns": t0 + 5 * 10**9, "side": 1, "qty": 1.0,
                              "price": 100.2})
            capped = "(() => { const p = window.streamsigPage.points(); return p.fills === 1 ? p : null; })()"
            pts = await b.poll(capped, 30)
            assert pts == {"price": 6000, "score": 3000, "target": 3000, "pnl": 3000, "fills": 1, "microprice": 3000}
            await server.stop()
            assert await b.poll("window.streamsigPage.state === 'reconnecting'", 20)
            server = await SignalServer(None, port=port, tokens=["tk"], origins=page.origins()).start()
            assert await b.poll("window.streamsigPage.state === 'live'", 40), await b.js("window.streamsigPage.state")
            assert await b.js("window.streamsigPage.reconnects") >= 1
            assert await b.js("window.streamsigPage.points().pnl") == 3000  # what it held is kept
    finally:
        page.stop()
        await server.stop()
