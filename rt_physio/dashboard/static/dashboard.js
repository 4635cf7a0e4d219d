// rt_physio dashboard page: server-sent events in, DOM rows and Plotly charts out.
// Contract for tests and tools: each session's overview row carries data-session, data-seq (last seq shown)
// and data-state (its status state; "offline" also when it went silent).
"use strict";

const DETAIL_ALL_UP_TO = 4;   // up to this many sessions, every session gets its charts; beyond, the selected one
const ROW_MS = 200;           // rows are refreshed at most this often
const CHART_MS = 1000;        // charts at most this often
const PREVIEW_S = 10;         // seconds of signal preview drawn
const STAGES = ["acquire", "dsp", "window", "queue", "infer", "publish", "total"];

const sessions = new Map();   // id -> session state
const links = new Map();      // feed url -> {connected, detail}
let config = {control: false, connect: []};
let selected = null;
let dirtyLinks = true;

function session(id) {
  let s = sessions.get(id);
  if (!s) {
    s = {id, preds: [], last: null, status: null, silent: null, previews: [], dirtyRow: true, dirtyCharts: true,
         note: ""};
    sessions.set(id, s);
    if (selected === null) selected = id;
  }
  return s;
}

function onEvent(ev) {
  if (ev.type === "link") {
    links.set(ev.url, ev); dirtyLinks = true; return;
  }
  if (ev.type === "error") { addError(ev); return; }
  if (ev.type === "ready") return;
  const s = session(ev.session);
  if (ev.type === "pred") {
    s.preds.push(ev.msg);
    if (s.preds.length > 300) s.preds.shift();
    if (!s.last || ev.msg.seq !== s.last.seq || ev.msg.t_wall >= s.last.t_wall) s.last = ev.msg;
    s.silent = null;
  } else if (ev.type === "status") {
    s.status = ev.msg; s.silent = null;
  } else if (ev.type === "preview") {
    s.previews.push(ev.msg);
    const cutoff = ev.msg.t_wall - PREVIEW_S - 2;
    while (s.previews.length && s.previews[0].t_wall < cutoff) s.previews.shift();
    s.silent = null;
  } else if (ev.type === "silent") {
    s.silent = ev.seconds;
    s.silentWhy = ev.why || `silent ${Math.round(ev.seconds)} s`;
  }
  s.dirtyRow = true; s.dirtyCharts = true;
}

function addError(ev) {
  const box = document.getElementById("errors-box");
  box.hidden = false;
  const body = document.querySelector("#errors tbody");
  const row = body.insertRow(0);
  row.className = "error-row";
  row.dataset.session = ev.session;
  const when = new Date(1000 * ev.t_wall).toLocaleTimeString();
  for (const text of [when, ev.topic, ev.error]) row.insertCell().textContent = text;
  while (body.rows.length > 50) body.deleteRow(-1);
}

function state(s) {
  if (s.silent !== null) return "offline";
  return s.status ? s.status.state : "waiting";
}

function fmt(x, digits = 2) { return (typeof x === "number" && isFinite(x)) ? x.toFixed(digits) : "–"; }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// -- overview rows ---------------------------------------------------------------------------------------------
function rowFor(s) {
  let row = document.querySelector(`#sessions tr.session[data-session="${CSS.escape(s.id)}"]`);
  if (row) return row;
  row = el("tr", "session");
  row.dataset.session = s.id;
  row.dataset.seq = "";
  row.dataset.state = "waiting";
  for (const cls of ["id", "state", "now", "mods", "cal", "drops", "lat", "seq", "actions"]) row.append(el("td", cls));
  row.addEventListener("click", () => { selected = s.id; renderDetails(true); });
  const rows = [...document.querySelectorAll("#sessions tbody tr.session")];
  const after = rows.find(r => r.dataset.session > s.id);
  document.querySelector("#sessions tbody").insertBefore(row, after || null);
  document.getElementById("empty").hidden = true;
  if (config.control) {
    const button = el("button", "calibrate", "calibrate");
    button.title = "start a new calibration (the person's rest baseline) for this session";
    button.addEventListener("click", ev => { ev.stopPropagation(); calibrate(s.id, button); });
    row.querySelector(".actions").append(button);
  }
  return row;
}

function renderRow(s) {
  const row = rowFor(s);
  const st = state(s);
  const p = s.last;
  const status = s.status;
  row.dataset.state = st;
  row.dataset.seq = p ? String(p.seq) : "";
  row.querySelector(".id").textContent = s.id;
  const stateCell = row.querySelector(".state");
  stateCell.textContent = s.silent !== null ? "offline" : st;
  stateCell.title = s.silent !== null ? s.silentWhy : (s.status ? `${s.status.reason}, ${s.status.model || ""}` : "");
  stateCell.dataset.state = st;
  row.querySelector(".now").textContent = p ? outputsText(p) : "–";
  row.querySelector(".mods").replaceChildren(...modalityBadges(s));
  row.querySelector(".cal").textContent = calibrationText(p);
  const drops = status ? Object.entries(status.drops || {}).filter(([, n]) => n > 0) : [];
  const dropCell = row.querySelector(".drops");
  dropCell.textContent = status ? String(drops.reduce((a, [, n]) => a + n, 0)) : "–";
  dropCell.title = drops.map(([k, n]) => `${k}: ${n}`).join(", ") || "no drops";
  row.querySelector(".lat").textContent = p && p.latency_ms ? `${fmt(p.latency_ms.total, 1)} ms` : "–";
  row.querySelector(".seq").textContent = p ? `#${p.seq}` : "–";
  row.classList.toggle("selected", s.id === selected);
}

function outputsText(p) {
  if (p.nonfinite_output) return "no outputs (not finite)";
  if (p.calibrating) return "calibrating";
  return Object.entries(p.outputs).map(([k, v]) => `${k} ${fmt(v)}`).join("  ") || "–";
}

function calibrationText(p) {
  if (!p || (p.calibrating === undefined && p.calibrated === undefined)) return "–";
  const cal = p.calibration || {};
  if (p.calibrating) return `calibrating ${Math.round(100 * (cal.progress || 0))} % of ${cal.seconds || "?"} s`;
  return p.calibrated ? "calibrated" : "not calibrated";
}

function modalityBadges(s) {
  const names = new Set([...Object.keys((s.status && s.status.modalities) || {}), ...((s.last && s.last.modalities) || [])]);
  return [...names].sort().map(m => {
    const live = s.status && s.status.modalities ? s.status.modalities[m] : null;
    const present = s.last ? s.last.modalities.includes(m) : false;
    const q = s.last && s.last.quality ? s.last.quality[m] : undefined;
    const badge = el("span", "modality", `${m} ${present ? "q " + fmt(q) : "absent"} · ${live ? live.state : "?"}`);
    badge.dataset.modality = m;
    badge.dataset.liveness = live ? live.state : "unknown";
    if (live && live.error) badge.title = live.error;
    return badge;
  });
}

// -- detail cards with charts ------------------------------------------------------------------------------------
function shownInDetail() {
  const ids = [...sessions.keys()].sort();
  return ids.length <= DETAIL_ALL_UP_TO ? ids : (selected ? [selected] : []);
}

function cardFor(id) {
  let card = document.querySelector(`#details .card[data-detail="${CSS.escape(id)}"]`);
  if (card) return card;
  card = el("section", "card");
  card.dataset.detail = id;
  const charts = el("div", "charts");
  card.append(el("h2", "", `session ${id}`), el("div", "big"), charts);
  for (const name of ["outputs", "eeg", "ecg", "latency"]) {
    const chart = el("div", `chart chart-${name}`);
    chart.dataset.chart = name;
    charts.append(chart);
  }
  document.getElementById("details").append(card);
  return card;
}

const LAYOUT = {margin: {l: 45, r: 10, t: 30, b: 35}, height: 220, paper_bgcolor: "#fff", plot_bgcolor: "#fafafa",
                font: {size: 11}, legend: {orientation: "h"}};
const PLOT_CONFIG = {displayModeBar: false, responsive: true, staticPlot: false};

function renderDetails(force) {
  const wanted = new Set(shownInDetail());
  for (const card of document.querySelectorAll("#details .card")) {
    if (!wanted.has(card.dataset.detail)) { card.querySelectorAll(".chart").forEach(c => Plotly.purge(c)); card.remove(); }
  }
  for (const id of wanted) {
    const s = sessions.get(id);
    if (!s || (!s.dirtyCharts && !force && cardFor(id))) continue;
    s.dirtyCharts = false;
    renderCard(s, cardFor(id));
  }
  for (const s of sessions.values()) s.dirtyRow = true;  // the selection mark
}

function renderCard(s, card) {
  const p = s.last;
  const big = card.querySelector(".big");
  big.replaceChildren(...(p ? Object.entries(p.outputs).map(([k, v]) => {
    const box = el("div", "number");
    box.append(el("span", "value", fmt(v)), el("span", "label", k));
    return box;
  }) : []));
  if (p && !Object.keys(p.outputs).length) big.append(el("div", "number", calibrationText(p)));
  const preds = s.preds;
  const outputs = [...new Set(preds.flatMap(q => Object.keys(q.outputs)))];
  Plotly.react(card.querySelector(".chart-outputs"), outputs.map(name => ({
    type: "scatter", mode: "lines", name,
    x: preds.filter(q => name in q.outputs).map(q => new Date(1000 * q.t_wall)),
    y: preds.filter(q => name in q.outputs).map(q => q.outputs[name]),
  })), {...LAYOUT, title: {text: "outputs"}, yaxis: {range: [0, 1]}}, PLOT_CONFIG);
  // one small histogram per stage (their scales differ by orders of magnitude), side by side
  const stageLayout = {...LAYOUT, title: {text: "latency per stage (ms), last predictions"}, showlegend: false,
                       grid: {rows: 1, columns: STAGES.length, pattern: "independent", xgap: 0.25},
                       annotations: STAGES.map((stage, i) => ({text: stage, showarrow: false, xref: `x${i + 1} domain`,
                                                             yref: "paper", x: 0.5, y: 1.0, yanchor: "bottom"}))};
  STAGES.forEach((_, i) => { stageLayout[`xaxis${i + 1}`] = {nticks: 3}; });
  Plotly.react(card.querySelector(".chart-latency"), STAGES.map((stage, i) => ({
    type: "histogram", name: stage, xaxis: `x${i + 1}`, yaxis: `y${i + 1}`, nbinsx: 20,
    x: preds.map(q => (q.latency_ms || {})[stage]).filter(v => typeof v === "number"),
  })), stageLayout, PLOT_CONFIG);
  for (const modality of ["eeg", "ecg"]) renderPreview(s, card.querySelector(`.chart-${modality}`), modality);
}

function renderPreview(s, chart, modality) {
  const parts = s.previews.map(m => m.streams[modality]).filter(Boolean);
  chart.hidden = parts.length === 0;
  if (!parts.length) return;
  const last = parts[parts.length - 1];
  const channels = last.channels;
  const columns = channels.map(() => ({x: [], y: []}));
  for (const part of parts) {
    if (part.channels.length !== channels.length) continue;
    const n = part.data[0] ? part.data[0].length : 0;
    for (let c = 0; c < channels.length; c++) {
      for (let i = 0; i < n; i++) {
        const t = part.t_end - (n - 1 - i) / part.sfreq - last.t_end;
        if (t >= -PREVIEW_S) { columns[c].x.push(t); columns[c].y.push(part.data[c][i]); }
      }
    }
  }
  // channels stacked, each offset by six times the median channel's standard deviation (a start-up transient
  // in one channel must not flatten the others)
  const sds = columns.map(col => {
    const mean = col.y.reduce((a, v) => a + v, 0) / Math.max(1, col.y.length);
    return Math.sqrt(col.y.reduce((a, v) => a + (v - mean) ** 2, 0) / Math.max(1, col.y.length));
  }).sort((a, b) => a - b);
  const spread = Math.max(1, 6 * sds[Math.floor(sds.length / 2)]);
  Plotly.react(chart, columns.map((col, c) => ({
    type: "scattergl", mode: "lines", name: channels[c], line: {width: 1},
    x: col.x, y: col.y.map(v => v - c * spread),
  })), {...LAYOUT, title: {text: `${modality.toUpperCase()} (filtered, last ${PREVIEW_S} s, µV)`}, showlegend: false,
       xaxis: {range: [-PREVIEW_S, 0], title: {text: "s"}, zeroline: false},
       yaxis: {showticklabels: false, zeroline: false, showgrid: false},
       height: Math.max(160, 60 + 18 * channels.length)}, PLOT_CONFIG);
}

// -- links, control ----------------------------------------------------------------------------------------------
function renderLinks() {
  const box = document.getElementById("links");
  box.replaceChildren(...[...links.values()].map(l => {
    const e = el("span", "link", l.detail);
    e.dataset.url = l.url;
    e.dataset.connected = String(l.connected);
    return e;
  }));
}

async function calibrate(id, button) {
  button.disabled = true;
  button.textContent = "sending…";
  try {
    const response = await fetch("/api/calibrate", {method: "POST", headers: {"Content-Type": "application/json"},
                                                   body: JSON.stringify({session: id})});
    const reply = await response.json();
    button.textContent = reply.ok ? "calibration started" : "failed";
    button.title = reply.ok ? JSON.stringify(reply) : reply.error;
  } catch (err) {
    button.textContent = "failed";
    button.title = String(err);
  }
  setTimeout(() => { button.disabled = false; button.textContent = "calibrate"; }, 3000);
}

// -- wiring ------------------------------------------------------------------------------------------------------
function connect() {
  const pageLink = document.getElementById("page-link");
  const source = new EventSource("/events");
  source.onopen = () => { pageLink.dataset.connected = "true"; pageLink.textContent = ""; };
  source.onerror = () => {
    pageLink.dataset.connected = "false";
    pageLink.textContent = "lost the dashboard server; retrying…";
  };
  source.onmessage = msg => {
    const ev = JSON.parse(msg.data);
    if (ev.type === "ready") return;
    if (ev.type === "link" || ev.type === "error" || ev.type === "pred" || ev.type === "status" ||
        ev.type === "preview" || ev.type === "silent") onEvent(ev);
  };
  // a reconnect replays the server's state: start from scratch so nothing is counted twice
  source.addEventListener("open", () => { sessions.forEach(s => { s.preds = []; s.previews = []; }); });
}

async function main() {
  try { config = await (await fetch("/api/config")).json(); } catch (err) { /* keep the defaults */ }
  connect();
  setInterval(() => {
    if (dirtyLinks) { dirtyLinks = false; renderLinks(); }
    for (const s of sessions.values()) if (s.dirtyRow) { s.dirtyRow = false; renderRow(s); }
  }, ROW_MS);
  setInterval(() => renderDetails(false), CHART_MS);
}

main();
