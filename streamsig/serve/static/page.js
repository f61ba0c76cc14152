// streamsig live page: one websocket, per-symbol series kept in capped arrays, drawn on canvases.
// Protocol: docs/observability.md (protocol 2: hello, subscribe -> subscribed with a count, signal / pnl / fill records; a bad token is refused with HTTP 401).
"use strict";
(function () {
  const MAX_POINTS = 3000;          // per series and symbol; the oldest points are dropped
  const BACKOFF_MIN_S = 0.5, BACKOFF_MAX_S = 30;
  const COLORS = { mid: "#6cb6ff", microprice: "#f2cc60", score: "#c297ff", target: "#56d4a0",
                   pnl: "#ff9f6b", buy: "#3fb950", sell: "#f85149" };
  const CHARTS = {
    price: { series: ["mid", "microprice"], markers: "fills" },
    score: { series: ["score"], zero: true },
    target: { series: ["target"], step: true, zero: true },
    pnl: { series: ["pnl"], zero: true },
  };

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const data = new Map();           // symbol -> {mid, microprice, score, target, pnl: [[t, v]...], fills: [[t, price, side]...]}
  const page = { state: "idle", symbol: params.get("symbol") || null, received: 0, model: null,
                 reconnects: 0, closeCode: null };
  window.streamsigPage = page;      // read by the browser test and handy in the console

  function series(symbol) {
    let s = data.get(symbol);
    if (!s) {
      s = { mid: [], microprice: [], score: [], target: [], pnl: [], fills: [] };
      data.set(symbol, s);
      const opt = document.createElement("option");
      opt.value = opt.textContent = symbol;
      $("symbol").appendChild(opt);
      if (!page.symbol) page.symbol = symbol;
      $("symbol").value = page.symbol;
    }
    return s;
  }

  function push(arr, point) {
    arr.push(point);
    if (arr.length > MAX_POINTS) arr.splice(0, arr.length - MAX_POINTS);
  }

  const secs = (ns) => Number(ns) / 1e9;
  const finite = (v) => typeof v === "number" && Number.isFinite(v);

  function onRecord(msg) {
    if (!msg.symbol) return;
    const s = series(msg.symbol);
    if (msg.type === "signal") {
      const t = secs(msg.exch_ts_ns);
      if (finite(msg.p_up) && finite(msg.p_down)) push(s.score, [t, msg.p_up - msg.p_down]);
      if (finite(msg.target)) push(s.target, [t, msg.target]);
      if (msg.model) page.model = msg.model;
    } else if (msg.type === "pnl") {
      const t = secs(msg.exch_ts_ns);
      if (!finite(t)) return;
      if (finite(msg.mid)) push(s.mid, [t, msg.mid]);
      if (finite(msg.microprice)) push(s.microprice, [t, msg.microprice]);
      if (finite(msg.pnl)) push(s.pnl, [t, msg.pnl]);
    } else if (msg.type === "fill") {
      if (finite(msg.price)) push(s.fills, [secs(msg.ts_ns), msg.price, msg.side]);
    } else {
      return;
    }
    page.received += 1;
    dirty = true;
  }

  // ---- connection ----------------------------------------------------------------------
  function setState(state, text) {
    page.state = state;
    const el = $("state");
    el.dataset.state = state;
    el.textContent = text;
  }

  function showMessage(text) {
    const el = $("message");
    el.textContent = text;
    el.hidden = !text;
  }

  function getToken() {
    let token = params.get("token");
    if (!token) {
      token = window.prompt("streamsig token (printed by `streamsig serve` or `streamsig demo`):") || "";
      if (token) {  // keep it in the address so a reload does not ask again
        params.set("token", token);
        history.replaceState(null, "", "?" + params.toString());
      }
    }
    return token;
  }

  let backoff = BACKOFF_MIN_S, timer = null;

  function connect(wsPort, token) {
    clearTimeout(timer);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.hostname}:${wsPort}/?token=${encodeURIComponent(token)}`;
    setState("connecting", "connecting");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      setState("error", "error");
      showMessage(`cannot open the websocket ${url.split("?")[0]}: ${err}`);
      return;
    }
    let greeted = false;
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (err) { return; }
      if (msg.type === "hello") {
        greeted = true;
        page.everGreeted = true;
        backoff = BACKOFF_MIN_S;
        setState("live", "live");
        showMessage("");
        ws.send(JSON.stringify({ op: "subscribe", symbols: "*" }));
      } else if (msg.type === "error") {
        showMessage(`server: ${msg.error}`);
      } else if (msg.type === "subscribed" || msg.type === "unsubscribed") {
        page.subscriptions = msg.count;  // protocol 2 answers with the number of subscriptions held
      } else {
        onRecord(msg);
      }
    };
    ws.onclose = (ev) => {
      page.closeCode = ev.code;
      if (ev.code === 4401 || (!greeted && !page.everGreeted && ev.code === 1006)) {
        // protocol 2 refuses a bad token with HTTP 401 before the upgrade (the browser reports 1006);
        // protocol 1 closed with 4401 after it
        setState("unauthorized", "wrong token");
        showMessage("Wrong or missing token: the server refused this connection (HTTP 401; close code "
          + `${ev.code === 4401 ? 4401 : "1006"}, 4401 in protocol 1). `
          + "Open the page with ?token=<token> as printed by `streamsig serve` or `streamsig demo`.");
        return;  // a wrong token does not become right by retrying
      }
      const wait = backoff * (0.8 + 0.4 * Math.random());
      backoff = Math.min(BACKOFF_MAX_S, backoff * 2);
      page.reconnects += 1;
      const why = ev.code === 4408 ? "dropped as a slow consumer" : (greeted ? "connection lost" : "server unreachable");
      setState("reconnecting", `${why}; retry in ${wait.toFixed(1)} s`);
      timer = setTimeout(() => connect(wsPort, token), wait * 1000);
    };
  }

  // ---- drawing -------------------------------------------------------------------------
  let dirty = false;

  function fmtTime(t, span) {  // exchange time, UTC; tenths of a second on short spans
    const d = new Date(t * 1000);
    return d.toISOString().slice(11, span < 20 ? 21 : 19);
  }

  function fmtNum(v) {
    const a = Math.abs(v);
    if (a >= 1e4) return v.toFixed(0);
    if (a >= 100) return v.toFixed(2);
    if (a >= 1) return v.toFixed(3);
    return v.toPrecision(3);
  }

  function extent(lists, idx) {
    let lo = Infinity, hi = -Infinity;
    for (const list of lists) for (const p of list) { if (p[idx] < lo) lo = p[idx]; if (p[idx] > hi) hi = p[idx]; }
    return [lo, hi];
  }

  function draw(name, spec, s, xr) {
    const canvas = $("chart-" + name);
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const L = 64, R = 8, T = 6, B = 20, pw = w - L - R, ph = h - T - B;
    const lists = spec.series.map((k) => s[k]);
    const marks = spec.markers ? s[spec.markers] : [];
    let [ylo, yhi] = extent(lists.concat(marks.length ? [marks.map((m) => [m[0], m[1]])] : []), 1);
    if (spec.zero) { ylo = Math.min(ylo, 0); yhi = Math.max(yhi, 0); }
    const legend = [];
    spec.series.forEach((k) => {
      const last = s[k][s[k].length - 1];
      if (last) legend.push(`<b style="color:${COLORS[k]}">${k}</b> ${fmtNum(last[1])}`);
    });
    if (spec.markers) legend.push(`${marks.length} fills`);
    $("legend-" + name).innerHTML = legend.join(" &nbsp; ");
    ctx.strokeStyle = "#26303c"; ctx.lineWidth = 1; ctx.strokeRect(L + 0.5, T + 0.5, pw, ph);
    if (!isFinite(ylo) || !isFinite(xr[0])) {
      ctx.fillStyle = "#7d8896"; ctx.font = "12px system-ui"; ctx.fillText("waiting for data", L + 10, T + 20);
      return;
    }
    if (yhi - ylo < 1e-12) { yhi += 0.5; ylo -= 0.5; }
    const pad = (yhi - ylo) * 0.06; ylo -= pad; yhi += pad;
    const xspan = Math.max(xr[1] - xr[0], 1e-9);
    const X = (t) => L + ((t - xr[0]) / xspan) * pw, Y = (v) => T + (1 - (v - ylo) / (yhi - ylo)) * ph;
    ctx.fillStyle = "#7d8896"; ctx.font = "11px system-ui"; ctx.textAlign = "right";
    for (let i = 0; i <= 4; i++) {
      const v = ylo + ((yhi - ylo) * i) / 4, y = Y(v);
      ctx.fillText(fmtNum(v), L - 6, y + 4);
      ctx.beginPath(); ctx.moveTo(L, y + 0.5); ctx.lineTo(L + pw, y + 0.5); ctx.stroke();
    }
    for (let i = 0; i <= 3; i++) {
      ctx.textAlign = i === 0 ? "left" : i === 3 ? "right" : "center";
      ctx.fillText(fmtTime(xr[0] + (xspan * i) / 3, xspan), L + (pw * i) / 3, h - 5);
    }
    if (spec.zero && ylo < 0 && yhi > 0) {
      ctx.strokeStyle = "#4b5563"; ctx.beginPath(); ctx.moveTo(L, Y(0)); ctx.lineTo(L + pw, Y(0)); ctx.stroke();
    }
    ctx.save(); ctx.beginPath(); ctx.rect(L, T, pw, ph); ctx.clip();
    spec.series.forEach((k) => {
      const pts = s[k];
      if (!pts.length) return;
      ctx.strokeStyle = COLORS[k]; ctx.lineWidth = 1.5; ctx.beginPath();
      pts.forEach((p, i) => {
        const x = X(p[0]), y = Y(p[1]);
        if (i === 0) ctx.moveTo(x, y);
        else if (spec.step) { ctx.lineTo(x, Y(pts[i - 1][1])); ctx.lineTo(x, y); } else ctx.lineTo(x, y);
      });
      if (pts.length === 1) ctx.lineTo(X(pts[0][0]) + 2, Y(pts[0][1]));
      ctx.stroke();
    });
    for (const [t, price, side] of marks) {
      const x = X(t), y = Y(price), d = side > 0 ? 1 : -1;
      ctx.fillStyle = side > 0 ? COLORS.buy : COLORS.sell;
      ctx.beginPath(); ctx.moveTo(x, y - 6 * d); ctx.lineTo(x - 5, y + 4 * d); ctx.lineTo(x + 5, y + 4 * d);
      ctx.closePath(); ctx.fill();
    }
    ctx.restore();
  }

  function render() {
    requestAnimationFrame(render);
    if (!dirty) return;
    dirty = false;
    const s = page.symbol && data.get(page.symbol);
    if (!s) return;
    const all = [s.mid, s.microprice, s.score, s.target, s.pnl, s.fills];
    const xr = extent(all, 0);
    for (const [name, spec] of Object.entries(CHARTS)) draw(name, spec, s, xr);
    $("model").textContent = page.model ? `model ${page.model}` : "";
    $("footer").textContent = `${page.received} records received; keeping up to ${MAX_POINTS} points per series`
      + (page.reconnects ? `; ${page.reconnects} reconnects` : "");
  }

  /** Points currently held per chart for the shown symbol (fills count on the price chart). */
  page.points = function () {
    const s = page.symbol && data.get(page.symbol);
    const out = {};
    for (const [name, spec] of Object.entries(CHARTS)) {
      out[name] = s ? spec.series.reduce((n, k) => n + s[k].length, 0) : 0;
    }
    out.fills = s ? s.fills.length : 0;
    out.microprice = s ? s.microprice.length : 0;
    return out;
  };

  $("symbol").addEventListener("change", (ev) => {
    page.symbol = ev.target.value;
    params.set("symbol", page.symbol);
    history.replaceState(null, "", "?" + params.toString());
    dirty = true;
  });
  window.addEventListener("resize", () => { dirty = true; });

  async function main() {
    requestAnimationFrame(render);
    const token = getToken();
    if (!token) {
      setState("unauthorized", "no token");
      showMessage("A token is needed: open this page with ?token=<token> as printed by `streamsig serve` or `streamsig demo`.");
      return;
    }
    let cfg;
    try {
      cfg = await (await fetch("config.json", { cache: "no-store" })).json();
    } catch (err) {
      setState("error", "error");
      showMessage(`cannot read config.json from the page server: ${err}`);
      return;
    }
    connect(cfg.ws_port, token);
  }
  main();
})();
