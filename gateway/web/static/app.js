// fieldlink status page: renders the snapshots the daemon streams on /events (server-sent
// events). Everything is drawn here from the data itself: no map tiles, no other origin.
"use strict";

const LABELS = {
  connecting: ["连接中", "connecting"],
  live: ["实时", "live"],
  offline_feed: ["已断开", "disconnected"],
  mqtt_up: ["MQTT 已连接", "MQTT connected"],
  mqtt_down: ["MQTT 未连接", "MQTT down"],
  outbox: ["待发", "outbox"],
  alarms: ["告警", "Alarms"],
  no_alarms: ["无告警", "No alarms"],
  tasks: ["进行中的任务", "Tasks in flight"],
  no_tasks: ["无进行中的任务", "No task in flight"],
  map: ["位置", "Positions"],
  units: ["单位", "Units"],
  unit: ["单位", "Unit"],
  availability: ["在线状态", "Availability"],
  last_heard: ["最后联系", "Last heard"],
  via: ["链路", "Via"],
  position: ["位置", "Position"],
  links: ["链路", "Links"],
  link: ["链路", "Link"],
  state: ["状态", "State"],
  frames: ["帧", "Frames"],
  positions: ["定位", "Positions"],
  rejected: ["拒收", "Rejected"],
  reconnects: ["重连", "Reconnects"],
  bytes: ["收/发字节", "Bytes rx/tx"],
  online: ["在线", "online"],
  offline: ["离线", "offline"],
  unknown: ["未知", "unknown"],
  up: ["正常", "up"],
  down: ["中断", "down"],
  ago: ["前", "ago"],
  never: ["从未", "never"],
  of: ["共", "of"],
  escalated: ["已升级", "escalated"],
  // task stages
  received: ["已接收", "received"],
  queued: ["排队", "queued"],
  transmitted: ["已发送", "transmitted"],
  delivered: ["已送达", "delivered"],
  acknowledged: ["已确认", "acknowledged"],
  contacted: ["已联系", "contacted"],
  on_scene: ["已到场", "on scene"],
  feedback: ["已反馈", "feedback"],
  closed: ["已办结", "closed"],
  // alarm kinds
  emergency: ["紧急", "emergency"],
  man_down: ["人员倒地", "man down"],
  lone_worker: ["单人作业", "lone worker"],
  overspeed: ["超速", "overspeed"],
  power_cut: ["断电", "power cut"],
  low_battery: ["电量低", "low battery"],
  tamper: ["防拆", "tamper"],
  geofence: ["电子围栏", "geofence"],
  other: ["其他", "other"],
};
const PROGRESS = ["received", "queued", "transmitted", "delivered", "acknowledged",
  "contacted", "on_scene", "feedback", "closed"];
const TRAIL_POINTS = 30; // per unit, kept in this page only
const MAX_TRAILS = 2000;

let language = "zh-en";
let clockOffsetMs = 0; // server time minus this browser's time
let current = null;
const trails = new Map(); // unit -> [[lat, lon], ...]
const units = new Map(); // unit id -> its entry, in the server's order (frames carry changes)

function label(key) {
  const pair = LABELS[key];
  if (!pair) return key;
  if (language === "zh") return pair[0];
  if (language === "en") return pair[1];
  return pair[0] + " " + pair[1];
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

function applyLabels() {
  document.documentElement.lang = language === "en" ? "en" : "zh";
  for (const node of document.querySelectorAll("[data-label]")) {
    node.textContent = label(node.dataset.label);
  }
}

// -- sections --------------------------------------------------------------------------

function renderAlarms(data) {
  const list = document.getElementById("alarms");
  const section = document.getElementById("alarms-section");
  list.replaceChildren(...data.alarms.map((a) => el("li",
    { class: "alarm", "data-unit": a.unit, "data-kind": a.kind },
    `${label(a.kind)} · ${unitName(data, a.unit)} `,
    el("small", {}, `${a.device || ""} · ${a.at || ""}${a.detail ? " · " + a.detail : ""}`))));
  section.classList.toggle("active", data.alarms.length > 0);
  document.getElementById("no-alarms").hidden = data.alarms.length > 0;
}

function unitName(data, id) {
  const unit = data.units.find((u) => u.id === id);
  return unit && unit.name !== id ? `${unit.name} (${id})` : id;
}

function renderLinks(data) {
  document.getElementById("links").replaceChildren(...data.links.map((l) => el("tr",
    { "data-link": l.name, "data-state": l.state },
    el("td", {}, `${l.name} `, el("small", {}, l.protocol)),
    el("td", { class: `state state-${l.state}`, title: l.error || "" }, label(l.state)),
    el("td", { class: "num frames" }, l.frames),
    el("td", { class: "num" }, l.positions),
    el("td", { class: "num" }, l.rejected),
    el("td", { class: "num" }, l.reconnects),
    el("td", { class: "num" }, `${l.rx_bytes} / ${l.tx_bytes}`))));
}

function renderUnits(data) {
  document.getElementById("units-total").textContent =
    data.units_total > data.units.length ? `${data.units.length} ${label("of")} ${data.units_total}` : `${data.units_total}`;
  document.getElementById("units").replaceChildren(...data.units.map((u) => {
    const p = u.position;
    return el("tr", { "data-unit": u.id, "data-availability": u.availability },
      el("td", {}, u.name !== u.id ? `${u.name} ` : "", el("small", {}, u.id)),
      el("td", { class: `availability ${u.availability}` }, label(u.availability)),
      el("td", { class: "num heard", "data-heard-ms": u.heard_ms }, heardText(u.heard_ms)),
      el("td", {}, u.via || ""),
      el("td", { class: "num" }, p ? `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}` : ""));
  }));
}

function heardText(heardMs) {
  if (heardMs === null || heardMs === undefined) return label("never");
  return `${fmtDuration((Date.now() + clockOffsetMs - heardMs) / 1000)} ${label("ago")}`;
}

function taskKey(t) { return `${t.task_id}/${t.unit}`; }

function renderTasks(data) {
  document.getElementById("tasks-total").textContent = data.tasks_total ? `${data.tasks_total}` : "";
  document.getElementById("no-tasks").hidden = data.tasks.length > 0;
  document.getElementById("tasks").replaceChildren(...data.tasks.map((t) => {
    const stages = el("div", { class: "stages" }, ...PROGRESS.map((s) => el("span",
      { class: "stage" + (t.stages[s] ? " reached" : ""), "data-stage": s, title: t.stages[s] || "" },
      label(s))));
    const clocks = el("div", { class: "clocks" }, ...Object.keys(data.sla).map((s) =>
      el("span", { class: "clock", "data-clock": s }, "")));
    return el("div", {
      class: "task" + (t.priority === "urgent" ? " urgent" : ""),
      "data-task": taskKey(t), "data-stages": Object.keys(t.stages).join(" "),
    },
    el("div", { class: "head" },
      el("strong", {}, `#${t.ref} ${t.task_id}`),
      el("span", {}, unitName(data, t.unit)),
      el("span", { class: "prio" }, t.priority),
      t.escalated.length ? el("span", { class: "clock late" }, `${label("escalated")}: ${t.escalated.map(label).join(", ")}`) : null),
    el("div", { class: "text" }, t.text), stages, clocks);
  }));
  tickClocks();
}

// The stage clocks run here, every quarter second, against the SLA targets.
function tickClocks() {
  if (!current) return;
  const now = Date.now() + clockOffsetMs;
  for (const cell of document.querySelectorAll("#units td.heard[data-heard-ms]")) {
    cell.textContent = heardText(Number(cell.dataset.heardMs));
  }
  const byKey = new Map(current.tasks.map((t) => [taskKey(t), t]));
  for (const node of document.querySelectorAll("#tasks .task")) {
    const t = byKey.get(node.dataset.task);
    if (!t) continue;
    let late = false;
    for (const clock of node.querySelectorAll(".clock[data-clock]")) {
      const stage = clock.dataset.clock;
      const target = current.sla[stage];
      const reachedAt = t.stages[stage];
      let seconds, cls;
      if (reachedAt) {
        seconds = (Date.parse(reachedAt) - t.created_ms) / 1000;
        cls = seconds <= target ? "met" : "missed";
      } else {
        seconds = (now - t.created_ms) / 1000;
        cls = seconds > target ? "late" : seconds > 0.8 * target ? "soon" : "ok";
        late = late || cls === "late";
      }
      clock.className = `clock ${cls}`;
      clock.textContent = `${label(stage)} ${fmtDuration(seconds)} / ${fmtDuration(target)}`;
    }
    node.classList.toggle("late", late);
  }
}

// -- the map: an equirectangular sketch of the positions themselves ---------------------

function renderMap(data) {
  const map = document.getElementById("map");
  const W = 600, H = 400, PAD = 30;
  for (const u of data.units) {
    if (!u.position) continue;
    let trail = trails.get(u.id);
    if (!trail) {
      if (trails.size >= MAX_TRAILS) continue;
      trail = [];
      trails.set(u.id, trail);
    }
    const last = trail[trail.length - 1];
    if (!last || last[0] !== u.position.lat || last[1] !== u.position.lon) {
      trail.push([u.position.lat, u.position.lon]);
      if (trail.length > TRAIL_POINTS) trail.shift();
    }
  }
  const points = [];
  for (const trail of trails.values()) points.push(...trail);
  for (const t of data.tasks) if (t.incident) points.push([t.incident.lat, t.incident.lon]);
  for (const a of data.alarms) if (a.position && a.position.lat !== null) points.push([a.position.lat, a.position.lon]);
  const nodes = [];
  if (!points.length) {
    map.replaceChildren(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "—"));
    return;
  }
  let minLat = Infinity, maxLat = -Infinity, minLon = Infinity, maxLon = -Infinity;
  for (const [lat, lon] of points) {
    minLat = Math.min(minLat, lat); maxLat = Math.max(maxLat, lat);
    minLon = Math.min(minLon, lon); maxLon = Math.max(maxLon, lon);
  }
  const midLat = (minLat + maxLat) / 2;
  const kx = Math.cos(midLat * Math.PI / 180);
  const spanX = Math.max((maxLon - minLon) * kx, 0.002), spanY = Math.max(maxLat - minLat, 0.002);
  const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY); // px per degree of latitude
  const cx = (minLon + maxLon) / 2, cy = midLat;
  const project = (lat, lon) => [W / 2 + (lon - cx) * kx * scale, H / 2 - (lat - cy) * scale];
  for (let i = 1; i < 4; i++) {
    nodes.push(svg("line", { class: "grid", x1: (W * i) / 4, y1: 0, x2: (W * i) / 4, y2: H }));
    nodes.push(svg("line", { class: "grid", x1: 0, y1: (H * i) / 4, x2: W, y2: (H * i) / 4 }));
  }
  // A scale bar: 1 degree of latitude is 111.2 km.
  const metresPerPx = 111200 / scale;
  const nice = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000];
  const barM = nice.find((m) => m / metresPerPx >= 60) || nice[nice.length - 1];
  const barPx = barM / metresPerPx;
  nodes.push(svg("line", { class: "scale", x1: 10, y1: H - 12, x2: 10 + barPx, y2: H - 12 }));
  nodes.push(svg("text", { x: 10, y: H - 18 }, barM >= 1000 ? `${barM / 1000} km` : `${barM} m`));
  for (const t of data.tasks) {
    if (!t.incident) continue;
    const [x, y] = project(t.incident.lat, t.incident.lon);
    const r = Math.max(4, t.incident.radius_m / metresPerPx);
    nodes.push(svg("circle", { class: "incident", cx: x, cy: y, r, "data-task": taskKey(t) }));
  }
  const alarmed = new Set(data.alarms.map((a) => a.unit));
  for (const u of data.units) {
    const trail = trails.get(u.id);
    if (!u.position || !trail) continue;
    if (trail.length > 1) {
      nodes.push(svg("polyline", { class: "trail", points: trail.map(([a, b]) => project(a, b).join(",")).join(" ") }));
    }
    const [x, y] = project(u.position.lat, u.position.lon);
    if (alarmed.has(u.id)) nodes.push(svg("circle", { class: "alarm", cx: x, cy: y, r: 11 }));
    const dot = svg("circle", { class: `unit ${u.availability}`, cx: x, cy: y, r: 6, "data-unit": u.id });
    dot.append(svg("title", {}, `${u.name} ${u.position.lat.toFixed(5)}, ${u.position.lon.toFixed(5)}`));
    nodes.push(dot);
    nodes.push(svg("text", { x: x + 9, y: y + 4 }, u.name));
  }
  map.replaceChildren(...nodes);
}

// -- the feed --------------------------------------------------------------------------

function render(data, serverNowMs) {
  if (data.language !== language) {
    language = data.language;
    applyLabels();
  }
  clockOffsetMs = serverNowMs - Date.now();
  current = data;
  document.getElementById("gateway").textContent = data.gateway;
  document.getElementById("version").textContent = `fieldlink ${data.version}`;
  document.title = `${data.alarms.length ? "(" + data.alarms.length + ") " : ""}fieldlink ${data.gateway}`;
  const mqtt = document.getElementById("mqtt");
  mqtt.textContent = `${label(data.mqtt.connected ? "mqtt_up" : "mqtt_down")}${data.mqtt.outbox ? " · " + label("outbox") + " " + data.mqtt.outbox : ""}`;
  mqtt.classList.toggle("down", !data.mqtt.connected);
  renderAlarms(data);
  renderTasks(data);
  renderMap(data);
  renderUnits(data);
  renderLinks(data);
  document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/events");
  source.addEventListener("status", (event) => {
    conn.textContent = label("live");
    conn.classList.remove("down");
    const data = JSON.parse(event.data);
    // A full frame lists every unit; the others only the units that changed, and those gone.
    if (data.full) units.clear();
    for (const id of data.gone) units.delete(id);
    for (const unit of data.units) units.set(unit.id, unit);
    data.units = [...units.values()];
    render(data, Number(event.lastEventId) || Date.now()); // the event's id: the server's time
  });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself (the server asks for 2 s).
    conn.textContent = label("offline_feed");
    conn.classList.add("down");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  applyLabels();
  connect();
  setInterval(tickClocks, 250);
});
