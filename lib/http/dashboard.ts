/**
 * The live dashboard served at `/`: one self-contained HTML page (inline CSS, JavaScript and SVG,
 * no external assets, no build step) that polls `/status` and `/history` every second and draws
 * the clients, each client's lag and the relay's throughput over the last minutes.
 *
 * @module
 */

/**
 * The dashboard page. Charts are SVG; each `<svg class="chart">` carries `data-points` (points
 * drawn) and `data-updated` (time of the newest point) so tests and scripts can see it move.
 *
 * @example
 * ```ts
 * import { DASHBOARD_HTML } from "./dashboard.ts";
 * import assert from "node:assert/strict";
 * assert.match(DASHBOARD_HTML, /<title>walrelay<\/title>/);
 * ```
 */
export const DASHBOARD_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>walrelay</title>
<link rel="icon" href="data:,">
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #d9dde5; --bg: #f7f8fa; --card: #fff; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; gap: 1.5em; align-items: baseline; padding: 12px 20px;
    background: #25304a; color: #fff; }
  header h1 { font-size: 18px; margin: 0; }
  header span { color: #c8d0e0; }
  main { padding: 16px 20px; display: grid; gap: 16px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
    padding: 12px 14px; overflow-x: auto; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
    white-space: nowrap; }
  th { color: var(--muted); font-weight: 600; }
  td.num { text-align: right; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
  svg.chart { width: 100%; height: 220px; display: block; }
  svg .axis { stroke: var(--line); }
  svg text { font-size: 11px; fill: var(--muted); }
  .legend span { display: inline-block; margin-right: 12px; font-size: 12px; }
  .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
    border-radius: 2px; }
  .state-streaming { color: #167a3e; } .state-catchup { color: #a35c00; }
  .muted { color: var(--muted); }
  #error { color: #b00020; }
  select { font: inherit; }
</style>
</head>
<body>
<header>
  <h1>walrelay</h1>
  <span id="summary">connecting…</span>
  <span id="error" role="alert"></span>
</header>
<main>
  <section>
    <h2>Clients <span class="muted" id="client-count"></span></h2>
    <table id="clients">
      <thead><tr>
        <th>pid</th><th>application_name</th><th>client_addr</th><th>state</th>
        <th>sent_lsn</th><th>write_lsn</th><th>flush_lsn</th><th>replay_lsn</th>
        <th>write_lag</th><th>flush_lag</th><th>replay_lag</th><th>behind</th><th>rate</th>
        <th>ETA</th><th>sent</th><th>source</th>
      </tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <div class="charts">
    <section>
      <h2>Lag per client
        <select id="lag-kind" aria-label="lag to chart">
          <option value="auto">replay, else flush</option>
          <option value="write">write_lag</option>
          <option value="flush">flush_lag</option>
          <option value="replay">replay_lag</option>
        </select>
      </h2>
      <svg id="lag-chart" class="chart" data-points="0" data-updated="0"
        viewBox="0 0 600 220" preserveAspectRatio="none"></svg>
      <div class="legend" id="lag-legend"></div>
    </section>
    <section>
      <h2>Relay throughput</h2>
      <svg id="throughput-chart" class="chart" data-points="0" data-updated="0"
        viewBox="0 0 600 220" preserveAspectRatio="none"></svg>
      <div class="legend" id="throughput-legend"></div>
    </section>
  </div>
  <section>
    <h2>Store</h2>
    <table id="store"><tbody></tbody></table>
  </section>
  <section>
    <h2>Upstream</h2>
    <table id="upstream"><tbody></tbody></table>
  </section>
  <section>
    <h2>Replication slots</h2>
    <table id="slots">
      <thead><tr><th>slot_name</th><th>active_pid</th><th>restart_lsn</th><th>retained</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Base backups <span class="muted" id="backup-summary"></span></h2>
    <table id="base-backups">
      <thead><tr><th>backup</th><th>start</th><th>end</th><th>timeline</th><th>size</th><th>state</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d",
  "#4d7c0f", "#7c2d12", "#1e3a8a"];
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + " " + units[i];
}
function secs(s) {
  if (s === null || s === undefined) return "";
  if (s < 1) return (s * 1000).toFixed(1) + " ms";
  if (s < 120) return s.toFixed(2) + " s";
  const m = Math.floor(s / 60);
  return m + " min " + Math.round(s - m * 60) + " s";
}
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function rows(tbody, pairs) {
  tbody.replaceChildren();
  for (const [k, v] of pairs) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = k;
    tr.appendChild(th);
    cell(tr, v);
    tbody.appendChild(tr);
  }
}

function renderStatus(s) {
  $("summary").textContent = "v" + s.version + " · timeline " + s.store.timeline + " · end " +
    s.store.valid_end_lsn + " · " + s.senders.length + "/" + s.max_senders + " senders · " +
    bytes(s.throughput.sent_bytes_per_second) + "/s out · " + bytes(s.memory.rss_bytes) +
    " resident";
  $("client-count").textContent = "(" + s.senders.length + ")";
  const tbody = $("clients").tBodies[0];
  tbody.replaceChildren();
  for (const c of s.senders) {
    const tr = document.createElement("tr");
    tr.dataset.pid = String(c.pid);
    cell(tr, c.pid, "num");
    cell(tr, c.application_name);
    cell(tr, c.client_addr);
    cell(tr, c.state, "state-" + c.state);
    cell(tr, c.sent_lsn);
    cell(tr, c.write_lsn);
    cell(tr, c.flush_lsn);
    cell(tr, c.replay_lsn);
    cell(tr, secs(c.write_lag), "num");
    cell(tr, secs(c.flush_lag), "num");
    cell(tr, secs(c.replay_lag), "num");
    cell(tr, bytes(c.catchup.bytes_behind), "num");
    cell(tr, bytes(c.catchup.rate_bytes_per_second) + "/s", "num");
    const eta = c.catchup.bytes_behind === 0
      ? "caught up"
      : c.catchup.eta_seconds === null ? "stalled" : secs(c.catchup.eta_seconds);
    cell(tr, eta, "num");
    cell(tr, bytes(c.bytes_sent), "num");
    cell(tr, c.source);
    tbody.appendChild(tr);
  }
  const st = s.store;
  rows($("store").tBodies[0], [
    ["directory", st.dir],
    ["system identifier", st.system_identifier],
    ["PostgreSQL", st.server_version],
    ["timelines", st.timelines.map((t) => t.timeline + " (" + t.segments + " segments)").join(", ")],
    ["oldest segment", st.oldest_segment],
    ["newest segment", st.newest_segment],
    ["valid end", st.valid_end_lsn],
    ["on disk", bytes(st.bytes_on_disk)],
  ]);
  const u = s.upstream;
  rows($("upstream").tBodies[0], u ? [
    ["conninfo", u.conninfo],
    ["server", u.server],
    ["state", u.state + (u.connected ? "" : " (not connected)")],
    ["received", u.received_lsn],
    ["flushed", u.flushed_lsn],
    ["lag", secs(u.lag_seconds)],
  ] : [["mode", "serving a directory (no upstream)"]]);
  const slots = $("slots").tBodies[0];
  slots.replaceChildren();
  for (const sl of s.slots) {
    const tr = document.createElement("tr");
    cell(tr, sl.slot_name);
    cell(tr, sl.active_pid);
    cell(tr, sl.restart_lsn);
    cell(tr, bytes(sl.retained_bytes));
    slots.appendChild(tr);
  }
  // Stored backups, the one being taken from the upstream, and those being sent.
  const bb = s.base_backups;
  const backups = $("base-backups").tBodies[0];
  backups.replaceChildren();
  if (bb) {
    $("backup-summary").textContent = "(" + bb.stored.length + " stored, " + bb.totals.served +
      " served)";
    for (const b of bb.stored) {
      const tr = document.createElement("tr");
      cell(tr, b.id);
      cell(tr, b.start_lsn);
      cell(tr, b.end_lsn);
      cell(tr, b.timeline);
      cell(tr, bytes(b.bytes));
      cell(tr, b.source + ", " + b.stored_at);
      backups.appendChild(tr);
    }
    if (bb.taking) {
      const tr = document.createElement("tr");
      cell(tr, bb.taking.id);
      cell(tr, "");
      cell(tr, "");
      cell(tr, "");
      cell(tr, bytes(bb.taking.bytes_received));
      cell(tr, "being taken from upstream");
      backups.appendChild(tr);
    }
    for (const p of bb.serving) {
      const tr = document.createElement("tr");
      cell(tr, p.backup);
      cell(tr, "");
      cell(tr, "");
      cell(tr, "");
      cell(tr, bytes(p.bytes_done) + (p.bytes_total ? " of " + bytes(p.bytes_total) : ""));
      cell(tr, "sending to pid " + p.pid + ": " + p.phase + ", " + bytes(p.bytes_per_second) +
        "/s");
      backups.appendChild(tr);
    }
  }
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Draws series of [t, v] points on a shared time axis. */
function drawChart(svg, legend, series, fmt, t0, t1) {
  const W = 600, H = 220, L = 58, R = 8, T = 8, B = 22;
  let max = 0, points = 0;
  for (const s of series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
  if (max <= 0) max = 1;
  const x = (t) => L + (W - L - R) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
  const y = (v) => T + (H - T - B) * (1 - v / (max * 1.1));
  const kids = [];
  for (let i = 0; i <= 4; i++) {
    const v = max * 1.1 * i / 4;
    kids.push(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "axis" }));
    kids.push(el("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  const span = Math.round((t1 - t0) / 1000);
  kids.push(el("text", { x: L, y: H - 6 }, "-" + span + " s"));
  kids.push(el("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "now"));
  legend.replaceChildren();
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    let d = "", pen = false;
    for (const [t, v] of s.points) {
      if (v === null) { pen = false; continue; }
      d += (pen ? "L" : "M") + x(t).toFixed(1) + "," + y(v).toFixed(1);
      pen = true;
      points++;
    }
    kids.push(el("path", { d: d || "M0,0", fill: "none", stroke: color, "stroke-width": 2,
      "vector-effect": "non-scaling-stroke", "data-series": s.name }));
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = color;
    item.append(sw, s.name);
    legend.appendChild(item);
  });
  svg.replaceChildren(...kids);
  svg.dataset.points = String(points);
  svg.dataset.updated = String(t1);
}

function renderHistory(h) {
  if (h.length === 0) return;
  const t0 = h[0].t, t1 = h[h.length - 1].t;
  const kind = $("lag-kind").value;
  const pick = (c) => kind === "write" ? c[2] : kind === "flush" ? c[3] : kind === "replay"
    ? c[4] : (c[4] !== null ? c[4] : c[3]);
  const byClient = new Map();
  for (const p of h) {
    for (const c of p.clients) {
      const key = c[0];
      if (!byClient.has(key)) byClient.set(key, { name: (c[1] || "pid") + " (" + c[0] + ")", points: [] });
      byClient.get(key).points.push([p.t, pick(c)]);
    }
  }
  drawChart($("lag-chart"), $("lag-legend"), [...byClient.values()], secs, t0, t1);
  drawChart($("throughput-chart"), $("throughput-legend"), [
    { name: "sent to clients", points: h.map((p) => [p.t, p.sent]), color: "#2563eb" },
    { name: "durable end advance", points: h.map((p) => [p.t, p.received]), color: "#16a34a" },
  ], (v) => bytes(v) + "/s", t0, t1);
}

async function refresh() {
  try {
    const [status, history] = await Promise.all([
      fetch("status", { cache: "no-store" }).then((r) => r.json()),
      fetch("history", { cache: "no-store" }).then((r) => r.json()),
    ]);
    renderStatus(status);
    renderHistory(history);
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = "relay unreachable: " + e.message;
  }
}
$("lag-kind").addEventListener("change", refresh);
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
`;
