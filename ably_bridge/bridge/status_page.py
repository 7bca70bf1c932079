# ruff: noqa: E501  (the page's own CSS, JavaScript and HTML, embedded as strings)
"""The status page: one self-contained HTML page that shows ``/status`` live.

This module owns :data:`PAGE` (the bytes ``GET /`` answers) and
:data:`PAGE_HEADERS`. The page has no external asset (no CDN, no font, no
build step): its style and script are inline, and its Content-Security-Policy
allows exactly those two (by their SHA-256), requests to its own origin, and
nothing else - no other script, no frame, no form target.

The script polls ``/status`` every two seconds and draws: the process line,
the connections, the routes with their targets, the channels that need
attention first, small plots of the rates and the delivery latency over the
last minutes, dead letters by reason, recent errors, and a page of channels
that can be filtered by route and state and paged with the cursor. Every
value from the bridge - channel names above all, which whoever can publish
chooses - is put in the page as text (``textContent``), never as markup. With
``health.token`` set, ``/status`` answers 401 and the page asks for the token,
keeps it for the browser tab (``sessionStorage``) and sends it as a bearer
token; the page itself holds no data, so it is served without one.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["PAGE", "PAGE_HEADERS", "SCRIPT", "STYLE"]

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 16px;display:flex;gap:16px;flex-wrap:wrap}
header b{font-size:16px}
#process{display:flex;gap:14px;flex-wrap:wrap}
main{padding:12px 16px;display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}
section{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:8px 12px;overflow:auto}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:4px 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#4b5565}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.name{font-family:ui-monospace,monospace;word-break:break-word}
td:first-child{white-space:nowrap}
.ok{color:#1a7f37}.warn{color:#9a6700}.bad{color:#cf222e}.muted{color:#6e7781}
.pill{display:inline-block;padding:0 6px;border-radius:8px;background:#eceef2}
.pill.live,.pill.connected{background:#dafbe1}.pill.paused,.pill.backfilling,.pill.attaching,
.pill.disconnected,.pill.connecting{background:#fff8c5}.pill.failed,.pill.suspended{background:#ffebe9}
svg{background:#fbfbfc;border:1px solid #eceef2}
svg polyline{fill:none;stroke-width:1.5}
.s0{stroke:#0969da}.s1{stroke:#1a7f37}.l0{color:#0969da}.l1{color:#1a7f37}
.legend span{margin-right:10px}
form{display:flex;gap:8px;flex-wrap:wrap;margin-bottom:6px}
#auth{display:none}
"""

SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const state = {route: "", state: "", cursor: "", cursors: [], token: sessionStorage.getItem("ably-bridge-token") || ""};

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    if (c instanceof Node) { const td = document.createElement("td"); td.appendChild(c); tr.appendChild(td); }
    else if (typeof c === "number") { tr.appendChild(el("td", c, "num")); }
    else { tr.appendChild(el("td", c === null || c === undefined ? "-" : c)); }
  }
  return tr;
}
function fill(id, rows, empty) {
  const body = $(id);
  body.replaceChildren(...rows);
  if (!rows.length) { const tr = document.createElement("tr"); const td = el("td", empty || "none", "muted"); td.colSpan = 12; tr.appendChild(td); body.appendChild(tr); }
}
function pill(text) { return el("span", text, "pill " + String(text).replace(/[^a-z]/g, "")); }
function ago(ms, now) { if (!ms) return "-"; const s = Math.max(0, (now - ms) / 1000); return s < 90 ? s.toFixed(1) + " s ago" : (s / 60).toFixed(1) + " min ago"; }
function err(e) { return e ? (e.code !== null && e.code !== undefined ? e.code + ": " : "") + e.message : null; }

function plot(id, series, unit) {
  const svg = $(id);
  const NS = "http://www.w3.org/2000/svg";
  const w = 400, h = 90;
  svg.replaceChildren();
  let max = 0, n = 0;
  for (const s of series) { n = Math.max(n, s.values.length); for (const v of s.values) if (v !== null && v > max) max = v; }
  const top = document.createElementNS(NS, "text");
  top.setAttribute("x", "4"); top.setAttribute("y", "12"); top.setAttribute("font-size", "10");
  top.textContent = "max " + (max ? max.toPrecision(3) : "0") + " " + unit;
  svg.appendChild(top);
  series.forEach((s, i) => {
    const pts = [];
    s.values.forEach((v, j) => { if (v !== null) pts.push(((n < 2 ? 0 : j / (n - 1)) * (w - 8) + 4).toFixed(1) + "," + (h - 4 - (max ? v / max : 0) * (h - 20)).toFixed(1)); });
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("class", "s" + i);
    svg.appendChild(line);
  });
}

function query() {
  const p = new URLSearchParams();
  if (state.route) p.set("route", state.route);
  if (state.state) p.set("state", state.state);
  if (state.cursor) p.set("cursor", state.cursor);
  p.set("limit", "50");
  return "status?" + p.toString();
}

function render(s) {
  const now = s.generated_at, p = s.process, t = s.totals;
  $("process").replaceChildren(
    el("b", "ably-bridge " + p.version), el("span", "site " + p.site), el("span", "app " + p.app_id),
    el("span", "up " + Math.round(p.uptime_seconds) + " s"),
    el("span", p.replica ? "replica " + p.replica : "single replica"),
    el("span", p.sharding.owned ? "shards " + p.sharding.owned.join(",") : "all channels"),
    el("span", p.ready ? "ready" : "not ready: " + p.problems.join("; "), p.ready ? "ok" : "bad"));
  $("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
  fill("totals", Object.entries({"channels": t.channels, "live": t.phases.live, "paused": t.phases.paused,
    "backfilling": t.phases.backfilling, "attaching": t.phases.attaching, "failed": t.phases.failed,
    "held events": t.held_events, "buffered events": t.buffered_events,
    "checkpoint lag (s)": t.checkpoint_lag_seconds, "delivered": t.delivered, "retries": t.retries,
    "dead lettered": t.dead_lettered}).map(([k, v]) => row([k, v])));
  fill("connections", s.connections.map((c) => row([c.number, pill(c.state), c.channels, c.inbound_rate, err(c.last_error)])));
  const targets = [];
  for (const r of s.routes) {
    for (const tg of r.targets) {
      const o = tg.outcomes;
      targets.push(row([el("span", r.id, "name"), r.channels, r.buffered_events, r.checkpoint_lag_seconds,
        tg.kind + " " + Object.values(tg.destination).filter((x) => x).join(" "), o.delivered || 0, o.duplicate || 0,
        o.retry || 0, o.rejected || 0, err(tg.last_error)]));
    }
  }
  fill("routes", targets);
  const picker = $("route");
  const known = Array.from(picker.options).map((o) => o.value).slice(1);
  const ids = s.routes.map((r) => r.id);
  if (known.join("\n") !== ids.join("\n")) {
    picker.replaceChildren(el("option", "every route"));
    picker.options[0].value = "";
    for (const id of ids) { const o = el("option", id); o.value = id; picker.appendChild(o); }
    picker.value = state.route;
  }
  fill("attention", s.attention.map((c) => channelRow(c, now)), "every channel is live and caught up");
  fill("channels", s.channels.items.map((c) => channelRow(c, now)));
  $("page").textContent = s.channels.items.length + " of " + s.channels.total + " channel(s)";
  $("next").disabled = !s.channels.next_cursor;
  $("next").dataset.cursor = s.channels.next_cursor || "";
  $("prev").disabled = !state.cursors.length;
  fill("deadletters", Object.entries(t.dead_letters_by_reason).map(([k, v]) => row([k, v])), "no dead letters since start");
  fill("errors", s.recent_errors.slice(0, 8).map((e) => row([new Date(e.at).toLocaleTimeString(), e.level, el("span", e.message, "name")])), "no warnings or errors");
  const h = s.history;
  plot("rates", [{values: h.map((x) => x.received_per_s)}, {values: h.map((x) => x.delivered_per_s)}], "events/s");
  plot("latency", [{values: h.map((x) => x.latency_p50)}, {values: h.map((x) => x.latency_p95)}], "s");
}

function channelRow(c, now) {
  const last = c.routes.map((r) => r.last_delivered ? r.id + ": " + (r.last_delivered.id || "?") + " (" + ago(r.last_delivered.settled_at, now) + ")" : r.id + ": -").join("\n");
  const lag = Math.max(0, ...c.routes.map((r) => r.checkpoint_lag_seconds));
  const buffered = c.routes.reduce((a, r) => a + r.buffered_events, 0);
  const bf = c.backfill ? (c.backfill.running ? "running" : "") + (c.backfill.queued ? " " + c.backfill.queued + " queued" : "") + (c.backfill.failures ? " " + c.backfill.failures + " failed" : "") : null;
  const tr = row([el("span", c.name, "name"), pill(c.phase), c.connection, c.held_events, buffered, lag, bf, el("span", last, "name")]);
  tr.dataset.channel = c.name;
  tr.dataset.phase = c.phase;
  return tr;
}

async function poll() {
  try {
    const headers = state.token ? {"Authorization": "Bearer " + state.token} : {};
    const answer = await fetch(query(), {headers: headers, cache: "no-store"});
    if (answer.status === 401) { $("auth").style.display = "flex"; $("status").textContent = "a token is required"; return; }
    const body = await answer.json();
    if (!answer.ok) { $("status").textContent = "status: " + answer.status + " " + (body.error ? body.error.message : ""); return; }
    $("auth").style.display = "none";
    $("status").textContent = "";
    render(body);
    document.body.dataset.generatedAt = String(body.generated_at);
  } catch (e) {
    $("status").textContent = "cannot reach the bridge: " + e;
  }
}

$("filters").addEventListener("submit", (e) => { e.preventDefault(); });
$("route").addEventListener("change", () => { state.route = $("route").value; state.cursor = ""; state.cursors = []; poll(); });
$("phase").addEventListener("change", () => { state.state = $("phase").value; state.cursor = ""; state.cursors = []; poll(); });
$("next").addEventListener("click", () => { state.cursors.push(state.cursor); state.cursor = $("next").dataset.cursor; poll(); });
$("prev").addEventListener("click", () => { state.cursor = state.cursors.pop() || ""; poll(); });
$("auth").addEventListener("submit", (e) => { e.preventDefault(); state.token = $("token").value; sessionStorage.setItem("ably-bridge-token", state.token); poll(); });
poll();
setInterval(poll, 2000);
"""

_BODY = """<header><span id="process">loading...</span><span id="updated" class="muted"></span>
<span id="status" class="bad"></span></header>
<form id="auth"><label>Token <input id="token" type="password" autocomplete="off"></label>
<button>Use</button></form>
<main>
<section><h2>Overview</h2><table><tbody id="totals"></tbody></table></section>
<section><h2>Connections</h2><table><thead><tr><th>#</th><th>state</th><th>channels</th>
<th>msg/s in</th><th>last error</th></tr></thead><tbody id="connections"></tbody></table></section>
<section><h2>Rates (last minutes)</h2><svg id="rates" width="400" height="90" role="img"></svg>
<div class="legend"><span class="l0">&#9472; received/s</span><span class="l1">&#9472; delivered/s</span></div>
<h2>Delivery latency</h2><svg id="latency" width="400" height="90" role="img"></svg>
<div class="legend"><span class="l0">&#9472; p50</span><span class="l1">&#9472; p95</span></div></section>
<section><h2>Dead letters by reason</h2><table><tbody id="deadletters"></tbody></table></section>
<section class="wide"><h2>Recent warnings and errors</h2><table><tbody id="errors"></tbody></table></section>
<section class="wide"><h2>Routes and targets</h2><table><thead><tr><th>route</th><th>channels</th>
<th>buffered</th><th>lag (s)</th><th>target</th><th>delivered</th><th>duplicate</th><th>retry</th>
<th>rejected</th><th>last error</th></tr></thead><tbody id="routes"></tbody></table></section>
<section class="wide"><h2>Needs attention</h2><table><thead><tr><th>channel</th><th>phase</th>
<th>conn</th><th>held</th><th>buffered</th><th>lag (s)</th><th>backfill</th><th>last delivered</th>
</tr></thead><tbody id="attention"></tbody></table></section>
<section class="wide"><h2>Channels</h2>
<form id="filters"><select id="route"><option value="">every route</option></select>
<select id="phase"><option value="">every state</option><option>attention</option>
<option>live</option><option>paused</option><option>backfilling</option><option>attaching</option>
<option>failed</option><option>stopped</option></select>
<button type="button" id="prev" disabled>previous</button>
<button type="button" id="next" disabled>next</button><span id="page" class="muted"></span></form>
<table><thead><tr><th>channel</th><th>phase</th><th>conn</th><th>held</th><th>buffered</th>
<th>lag (s)</th><th>backfill</th><th>last delivered</th></tr></thead>
<tbody id="channels"></tbody></table></section>
</main>"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>ably-bridge status</title>"
    f"<style>{STYLE}</style></head>\n<body>\n{_BODY}\n<script>{SCRIPT}</script>\n</body></html>\n"
).encode()

PAGE_HEADERS = (
    (
        "Content-Security-Policy",
        f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
