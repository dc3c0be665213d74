/**
 * The live status page at `/` of the admin listener: one HTML document, no framework, no external
 * resource. It polls /api/v1/stats every second and computes rates from the differences.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice status</title>
<style>
  :root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
  h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
  .meta { color: var(--muted); }
  .badge { display: inline-block; padding: .1rem .5rem; border-radius: 1rem; color: #fff; font-weight: 600; }
  .ok { background: var(--ok); } .warn { background: var(--warn); } .bad { background: var(--bad); }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 600; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .bar { position: relative; width: 12rem; height: 1rem; background: #eaeef2; border-radius: .25rem; overflow: hidden; }
  .bar > span { position: absolute; inset: 0 auto 0 0; background: var(--ok); }
  .bar.warn > span { background: var(--warn); } .bar.bad > span { background: var(--bad); }
  .bar > em { position: absolute; inset: 0; text-align: center; font-style: normal; font-size: .75rem;
    line-height: 1rem; }
  .pipe { margin: .2rem 0; }
  #error { color: var(--bad); }
</style>
</head>
<body>
<h1>sluice <span id="version" class="meta"></span></h1>
<div><span id="state" class="badge" data-testid="state">loading</span> <span id="summary" class="meta">
  </span> <span id="error"></span></div>
<h2>Pipelines</h2>
<div id="pipelines" data-testid="pipelines"></div>
<h2>Sources</h2>
<table><thead><tr><th>source</th><th>listening on</th><th>msg/s</th><th>received</th><th>parse errors</th>
  <th>oversize</th><th>dropped</th><th>connections</th></tr></thead>
<tbody id="sources" data-testid="sources"></tbody></table>
<h2>Destinations and queues</h2>
<table><thead><tr><th>destination</th><th>target</th><th>state</th><th>msg/s</th><th>queue</th><th>fill</th>
  <th>records</th><th>oldest</th><th>delivered</th><th>failures</th><th>dead letters</th><th>dropped</th></tr></thead>
<tbody id="destinations" data-testid="destinations"></tbody></table>
<div id="orphans-box" hidden><h2>Orphan queues</h2><table><thead><tr><th>queue</th><th>directory</th><th>records</th>
  <th>draining into</th></tr></thead><tbody id="orphans" data-testid="orphans"></tbody></table></div>
<script>
"use strict";
let prev = null;
const $ = (id) => document.getElementById(id);
const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ENTITIES[c]);
const num = (n) => Number(n).toLocaleString("en");
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
const age = (ms) => ms === null ? "-" : ms < 1000 ? "now" : ms < 60000 ? Math.round(ms / 1000) + " s" :
    ms < 3600000 ? Math.round(ms / 60000) + " min" : (ms / 3600000).toFixed(1) + " h";
const size = (b) => b < 1024 ? b + " B" : b < 1048576 ? (b / 1024).toFixed(1) + " KiB" : b < 1073741824 ?
    (b / 1048576).toFixed(1) + " MiB" : (b / 1073741824).toFixed(2) + " GiB";
function rate(now, then, secs) { return then === undefined || secs <= 0 ? "-" : num(Math.max(0,
    Math.round((now - then) / secs))); }
function fill(q) {
  const frac = q.mode === "memory" ? q.records / q.capacityRecords : q.diskBytes / q.capacityBytes;
  const pct = Math.min(100, Math.max(0, 100 * (frac || 0)));
  const cls = pct >= 90 ? "bad" : pct >= 60 ? "warn" : "";
  const label = q.mode === "memory" ? num(q.records) + " / " + num(q.capacityRecords) : size(q.diskBytes) + " / " +
      size(q.capacityBytes);
  return '<div class="bar ' + cls + '" title="' + esc(label) + '" data-fill="' + pct.toFixed(1) +
      '"><span style="width:' + pct.toFixed(1) + '%"></span><em>' + pct.toFixed(1) + '%</em></div>';
}
function render(s) {
  const secs = prev ? (s.time - prev.time) / 1000 : 0;
  $("version").textContent = s.version + " · pid " + s.pid + " · up " + age(s.uptimeSeconds * 1000);
  const st = $("state");
  if (s.gate.latched) { st.className = "badge bad"; st.textContent = "load shedding"; }
  else if (!s.ready) { st.className = "badge warn"; st.textContent = "not ready"; }
  else { st.className = "badge ok"; st.textContent = "ready"; }
  $("summary").textContent = s.gate.latched ? s.gate.reason : (s.notReady || []).join("; ");
  $("pipelines").innerHTML = Object.entries(s.pipelines).map(([name, p]) =>
    '<div class="pipe"><b>' + esc(name) + '</b>: ' + p.from.map(esc).join(", ") + ' → ' + p.to.map(esc).join(", ") +
        (p.where ? ' <span class="meta">(filtered)</span>' : '') + '</div>').join("");
  $("sources").innerHTML = Object.entries(s.sources).map(([name, x]) => '<tr data-source="' + esc(name) + '"><td>' +
      esc(name) + '</td><td>' + esc(x.address) + '</td><td class="n">' +
    rate(x.received, prev && prev.sources[name] && prev.sources[name].received, secs) + '</td><td class="n">' +
        num(x.received) + '</td><td class="n">' + num(x.parseErrors) + '</td><td class="n">' +
    num(x.truncated) + '</td><td class="n">' + num(sum(x.dropped)) + '</td><td class="n">' +
        num(x.connectionsAccepted) + '</td></tr>').join("");
  $("destinations").innerHTML = Object.entries(s.destinations).map(([name, d]) => {
    const q = d.queue;
    const state = d.connected ? '<span class="badge ok">connected</span>' : q.records > 0 && d.failures > 0 ?
        '<span class="badge bad">down</span>' : d.delivered > 0 ? '<span class="badge ok">ok</span>' :
        '<span class="badge warn">idle</span>';
    return '<tr data-destination="' + esc(name) + '"><td>' + esc(name) + '</td><td>' + esc(d.address) + '</td><td>' +
        state + '</td><td class="n">' +
      rate(d.delivered, prev && prev.destinations[name] && prev.destinations[name].delivered, secs) + '</td><td>' +
          esc(q.mode) + '</td><td>' + fill(q) + '</td><td class="n">' + num(q.records) +
      '</td><td>' + age(q.oldestReceivedAt === null ? null : s.time - q.oldestReceivedAt) + '</td><td class="n">' +
          num(d.delivered) + '</td><td class="n">' + num(d.failures) + '</td><td class="n">' +
          num(sum(d.deadLettered || {})) + '</td><td class="n">' + num(sum(q.dropped)) + '</td></tr>';
  }).join("");
  const orphans = Object.entries(s.orphans);
  $("orphans-box").hidden = orphans.length === 0;
  $("orphans").innerHTML = orphans.map(([name, o]) => '<tr><td>' + esc(name) + '</td><td>' + esc(o.dir) +
      '</td><td class="n">' + num(o.records) + '</td><td>' + esc(o.drainingInto || "-") + '</td></tr>').join("");
  prev = s;
}
async function tick() {
  try {
    const r = await fetch("/api/v1/stats", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = "cannot reach sluice: " + e.message;
  }
  setTimeout(tick, 1000);
}
tick();
</script>
</body>
</html>
`;
