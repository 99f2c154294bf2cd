// CARMA's live dashboard: reads this server's API every second and draws it as inline SVG.
// No framework and nothing from elsewhere: the page works offline, and its Content Security
// Policy forbids any other origin. Every number shown is the API's, as it gave it.
"use strict";

const EVERY_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const STATUSES = ["healthy", "approximate", "degraded", "lost"];
const KEY_STORE = "carma-key";
const $ = (id) => document.getElementById(id);

let key = null;
let timer = null;

// -- the key: from the address's #key=..., else this tab's storage, else none (open server) --

function takeKey() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("key")) {
    sessionStorage.setItem(KEY_STORE, hash.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  key = sessionStorage.getItem(KEY_STORE);
}

async function api(path) {
  const headers = key ? { Authorization: "Bearer " + key } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  const body = await response.json();
  if (!response.ok) {
    const error = new Error((body.error && body.error.message) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

// -- drawing helpers ----------------------------------------------------------------------

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

function sum(values) {
  return Object.values(values || {}).reduce((a, b) => a + b, 0);
}

// -- the panels ---------------------------------------------------------------------------

function drawHealth(health, series, cycles) {
  const score = $("score");
  score.textContent = health.score.toFixed(3);
  score.dataset.value = String(health.score);
  $("servable").textContent = health.servable.toFixed(3);
  $("servable").dataset.value = String(health.servable);
  $("live").textContent = String(health.live);
  $("live").dataset.value = String(health.live);

  const svg = clear($("health-chart"));
  const W = svg.viewBox.baseVal.width, H = svg.viewBox.baseVal.height, top = 14, bottom = 20;
  for (const level of [0, 0.5, 1]) {
    const y = top + (1 - level) * (H - top - bottom);
    svg.append(el("line", { x1: 0, x2: W, y1: y, y2: y, class: "grid" }));
    svg.append(el("text", { x: 4, y: y - 2 }, level.toFixed(1)));
  }
  const points = series.length ? series : [[Date.now() / 1000, health.score]];
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
  const x = (t) => ((t - t0) / (t1 - t0)) * (W - 40) + 30;
  const y = (s) => top + (1 - s) * (H - top - bottom);
  const line = points.map(([t, s]) => `${x(t).toFixed(1)},${y(s).toFixed(1)}`).join(" ");
  svg.append(el("polygon", {
    class: "score-area",
    points: `${x(t0).toFixed(1)},${y(0)} ${line} ${x(points[points.length - 1][0]).toFixed(1)},${y(0)}`,
  }));
  svg.append(el("polyline", { class: "score-line", points: line, "data-testid": "score-line" }));
  for (const cycle of cycles) {  // each dream cycle: the score its scrub found, then healed
    if (cycle.started_at < t0) continue;
    svg.append(el("circle", { class: "cycle-dot", cx: x(cycle.started_at), cy: y(cycle.health_before), r: 4 }));
  }
  svg.append(el("text", { x: 30, y: H - 4 }, clock(t0)));
  svg.append(el("text", { x: W - 60, y: H - 4 }, clock(t1)));
}

function drawStatus(health) {
  const bar = clear($("status-bar"));
  const total = Math.max(health.live, 1);
  let at = 0;
  for (const status of STATUSES) {
    const count = health.by_status[status] || 0;
    const row = document.querySelector(`#status-table tr[data-status="${status}"] td.count`);
    row.textContent = String(count);
    row.dataset.value = String(count);
    const width = (count / total) * 400;
    if (width > 0) bar.append(el("rect", { x: at, y: 0, width, height: 28, class: status }));
    at += width;
  }
}

function drawFidelity(health) {
  const spread = health.distribution.fidelity;
  const svg = clear($("fidelity-chart"));
  const W = 400, H = 160, bottom = 18, n = spread.bins.length, gap = 4;
  const most = Math.max(1, ...spread.bins.map((b) => b.count));
  const width = W / n - gap;
  spread.bins.forEach((bin, i) => {
    // Square-root heights: the exact bodies' bin dwarfs the rest otherwise.
    const h = Math.sqrt(bin.count / most) * (H - bottom - 14);
    const x = i * (W / n) + gap / 2;
    const cls = bin.le >= 1 ? "healthy" : bin.le <= 0.5 ? "lost" : "approximate";
    svg.append(el("rect", {
      x, y: H - bottom - h, width, height: h, class: cls,
      "data-le": bin.le, "data-count": bin.count,
    }));
    svg.append(el("text", { x: x + 2, y: H - bottom - h - 3 }, String(bin.count)));
    svg.append(el("text", { x: x + 2, y: H - 4 }, "≤" + bin.le));
  });
  const approx = health.by_status.approximate;
  $("fidelity-note").textContent = approx
    ? `${approx} approximate bod${approx === 1 ? "y" : "ies"}, mean fidelity ` +
      `${(health.fidelity.mean || 0).toFixed(3)}; expected recall ` +
      `${health.expected_recall.mean === null ? "not calibrated" : health.expected_recall.mean}`
    : "every live body is exact or lost (no reconstruction)";
}

function drawTimeline(events, now) {
  const svg = clear($("timeline"));
  const W = svg.viewBox.baseVal.width, H = svg.viewBox.baseVal.height, mid = H / 2, slots = 120;
  const marks = events.filter((e) => e.kind === "lost" || e.kind === "reconstructed");
  svg.append(el("line", { x1: 0, x2: W, y1: mid, y2: mid, class: "grid" }));
  svg.append(el("text", { x: 4, y: 12 }, "▲ faults found"));
  svg.append(el("text", { x: 4, y: H - 4 }, "▼ repairs"));
  if (!marks.length) {
    svg.append(el("text", { x: W / 2 - 60, y: mid - 6 }, "no fault recorded lately"));
    return;
  }
  const times = marks.map((e) => Date.parse(e.at) / 1000);
  const t0 = Math.min(...times), t1 = Math.max(now, t0 + 10);
  const faults = new Array(slots).fill(0), repairs = new Array(slots).fill(0);
  marks.forEach((e, i) => {
    const slot = Math.min(slots - 1, Math.floor(((times[i] - t0) / (t1 - t0)) * slots));
    (e.kind === "lost" ? faults : repairs)[slot] += 1;
  });
  const most = Math.max(1, ...faults, ...repairs);
  const w = W / slots;
  for (let i = 0; i < slots; i++) {
    if (faults[i]) {
      const h = Math.max(2, (faults[i] / most) * (mid - 16));
      svg.append(el("rect", { x: i * w, y: mid - h, width: w - 1, height: h, class: "fault-mark", "data-count": faults[i] }));
    }
    if (repairs[i]) {
      const h = Math.max(2, (repairs[i] / most) * (mid - 16));
      svg.append(el("rect", { x: i * w, y: mid, width: w - 1, height: h, class: "repair-mark", "data-count": repairs[i] }));
    }
  }
  svg.append(el("text", { x: W - 60, y: H - 4 }, clock(t1)));
  svg.append(el("text", { x: 120, y: H - 4 }, clock(t0)));
}

function drawCounts(table, counts, empty) {
  clear(table);
  const entries = Object.entries(counts || {});
  if (!entries.length) {
    cell(table.insertRow(), empty, "note");
    return;
  }
  for (const [name, count] of entries) {
    const row = table.insertRow();
    row.dataset.name = name;
    cell(row, name);
    cell(row, String(count), "num");
  }
}

function drawCycles(cycles, admin) {
  $("cycles-card").hidden = !admin;
  if (!admin) return;
  const body = clear(document.querySelector("#cycles tbody"));
  const latest = cycles.slice(-12).reverse();
  for (const cycle of latest) {
    const row = body.insertRow();
    row.className = "cycle";
    row.dataset.id = cycle.id;
    row.dataset.found = String(sum(cycle.found));
    row.dataset.repaired = String(sum(cycle.repaired));
    cell(row, clock(cycle.started_at));
    cell(row, cycle.trigger);
    cell(row, String(sum(cycle.found)), "num");
    cell(row, String(sum(cycle.repaired)), "num");
    cell(row, (cycle.seconds.total || 0).toFixed(3), "num");
    cell(row, `${cycle.health_before.toFixed(3)} → ${cycle.health_after.toFixed(3)}`);
  }
  $("cycles-note").textContent = cycles.length
    ? `${cycles.length} cycle(s) since this server started reading the log`
    : "no dream cycle yet";
  const svg = clear($("cycle-chart"));
  const shown = cycles.slice(-100);
  const most = Math.max(0.001, ...shown.map((c) => c.seconds.total || 0));
  const w = svg.viewBox.baseVal.width / 100;
  shown.forEach((c, i) => {
    const h = Math.max(2, ((c.seconds.total || 0) / most) * 66);
    const cls = sum(c.found) ? "degraded" : "healthy";
    svg.append(el("rect", { x: i * w, y: 80 - h, width: w - 2, height: h, class: cls }));
  });
  svg.append(el("text", { x: 4, y: 88 }, `longest ${most.toFixed(2)} s`));
}

function detailText(detail) {
  return Object.entries(detail || {})
    .filter(([k, v]) => v !== null && !["content_hash", "sources", "cycle_id"].includes(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

function drawEvents(events) {
  const body = clear(document.querySelector("#events tbody"));
  for (const e of events.slice(0, 20)) {
    const row = body.insertRow();
    row.className = "event";
    row.dataset.position = String(e.position);
    row.dataset.id = e.id;
    row.dataset.namespace = e.namespace;
    cell(row, String(e.position), "num");
    cell(row, new Date(e.at).toLocaleTimeString([], { hour12: false }));
    cell(row, e.kind, "kind-" + e.kind);
    const link = document.createElement("a");
    link.className = "fragment";
    link.textContent = e.id.length > 24 ? e.id.slice(0, 22) + "…" : e.id;
    link.title = e.id;
    link.addEventListener("click", () => showHistory(e.id));
    row.insertCell().append(link);
    cell(row, e.namespace);
    cell(row, detailText(e.detail));
  }
}

async function showHistory(id) {
  const panel = $("history");
  $("history-id").textContent = id;
  const body = clear(panel.querySelector("tbody"));
  panel.hidden = false;
  try {
    const found = await api("/v1/fragments/" + encodeURIComponent(id) + "/history");
    for (const e of found.history) {
      const row = body.insertRow();
      row.className = "history-entry";
      cell(row, String(e.position), "num");
      cell(row, "v" + e.version);
      cell(row, new Date(e.at).toLocaleString([], { hour12: false }));
      cell(row, e.kind, "kind-" + e.kind);
      cell(row, detailText(e.detail));
    }
  } catch (error) {
    cell(body.insertRow(), error.message, "error");
  }
  panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

// -- the loop -----------------------------------------------------------------------------

async function refresh(access) {
  const [health, activity] = await Promise.all([api("/v1/health"), api("/v1/activity?limit=500")]);
  drawHealth(health, activity.health, activity.cycles);
  drawStatus(health);
  drawFidelity(health);
  drawTimeline(activity.events, Date.now() / 1000);
  drawCounts($("faults"), health.by_fault, "none open");
  drawCounts($("repairs"), health.by_method, "none yet");
  drawCycles(activity.cycles, access.rights.includes("admin"));
  drawEvents(activity.events);
  $("position").textContent = String(activity.position);
  $("position").dataset.value = String(activity.position);
  const updated = $("updated");
  updated.textContent = "updated " + new Date().toLocaleTimeString([], { hour12: false });
  updated.dataset.at = String(Date.now());
}

function describe(access) {
  if (access.open) return "open: no key on this loopback server";
  const where = access.namespaces === null ? "every namespace" : "namespace " + access.namespaces.join(", ");
  return `key ${access.key_id}: ${access.rights.join(", ")} in ${where}`;
}

function askForKey(message) {
  clearInterval(timer);
  $("board").hidden = true;
  $("key-form").hidden = false;
  $("key-error").textContent = message || "";
  $("updated").textContent = "no key";
}

async function start() {
  let access;
  try {
    access = await api("/v1/access");
  } catch (error) {
    if (error.status === 401) return askForKey(key ? error.message : "");
    $("updated").textContent = "cannot reach the server: " + error.message;
    return;
  }
  $("key-form").hidden = true;
  $("board").hidden = false;
  const scope = $("scope");
  scope.textContent = describe(access);
  scope.dataset.namespaces = access.namespaces === null ? "*" : access.namespaces.join(",");
  let busy = false;  // a slow answer is not asked for again before it comes
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      await refresh(access);
    } catch (error) {
      if (error.status === 401) return askForKey(error.message);
      $("updated").textContent = "update failed: " + error.message;
    } finally {
      busy = false;
    }
  };
  await tick();
  clearInterval(timer);
  timer = setInterval(tick, EVERY_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    key = $("key-input").value.trim();
    sessionStorage.setItem(KEY_STORE, key);
    start();
  });
  $("history-close").addEventListener("click", () => { $("history").hidden = true; });
  takeKey();
  start();
});
