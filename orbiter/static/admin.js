// admin.js — the dashboard at /admin. The API key is asked once, kept in this tab's
// sessionStorage and sent only in the X-API-Key header (and the feed's first message):
// never in a URL. Live numbers come from /admin/feed (the node's $admin channel, once a
// second; on a cluster each sample carries every answering node's, summed in the tiles and
// listed per node); the lists from /api/admin/* every two seconds (every node's connections, each
// with the node that holds it; its disconnect button reaches that node through the engine).
"use strict";

const KEY_ITEM = "orbiter-admin-key";
const POINTS = 60;
const $ = (id) => document.getElementById(id);

let feed = null;
let listTimer = null;
let previous = new Map(); // node -> its last sample's counts, for rates
let node = null;
const series = { connections: [], "pub-rate": [], "deliv-rate": [], latency: [] };
const offsets = new Map(); // channel -> [offset, epoch, time]

function key() {
  return sessionStorage.getItem(KEY_ITEM);
}

function showLogin(message) {
  stop();
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("key").focus();
}

async function api(method, path, body) {
  const headers = { "X-API-Key": key() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const payload = await answer.json().catch(() => ({}));
  if (answer.status === 401 || answer.status === 403) {
    sessionStorage.removeItem(KEY_ITEM);
    showLogin((payload.error && payload.error.message) || "refused");
    throw new Error("refused");
  }
  if (!answer.ok) throw new Error((payload.error && payload.error.message) || answer.statusText);
  return payload;
}

// ------------------------------------------------------------------ the live feed

function connectFeed() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = (feed = new WebSocket(`${scheme}//${location.host}/admin/feed`));
  ws.onopen = () => ws.send(JSON.stringify({ key: key() }));
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.hello) {
      node = message.hello.node;
      $("node").textContent = `node ${node}`;
      $("feed-state").textContent = "live";
      $("feed-state").classList.add("live");
      return;
    }
    if (message.node === node) showSample(message);
  };
  ws.onclose = (event) => {
    $("feed-state").textContent = "reconnecting";
    $("feed-state").classList.remove("live");
    if (feed !== ws) return;
    if (event.code === 4401 || event.code === 4403) {
      sessionStorage.removeItem(KEY_ITEM);
      showLogin(event.reason || "refused");
      return;
    }
    setTimeout(() => feed === ws && connectFeed(), 2000);
  };
}

function sum(values) {
  return Object.values(values || {}).reduce((a, b) => a + number(b), 0);
}

function number(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

// One node's figures from its sample, its rates against that node's previous sample.
function figures(sample) {
  const counters = sample.counters && typeof sample.counters === "object" ? sample.counters : {};
  const engine = sample.engine && typeof sample.engine === "object" ? sample.engine : {};
  const transports =
    sample.connections && typeof sample.connections === "object" ? sample.connections : {};
  const latency = sample.latency && Array.isArray(sample.latency.counts) ? sample.latency : null;
  const row = {
    node: String(sample.node),
    transports,
    connections: sum(transports),
    published: number(sample.published),
    delivered: number(sample.delivered),
    slow: number(counters.limit_outgoing_buffer),
    limits: Object.entries(counters)
      .filter(([name]) => name.startsWith("limit_"))
      .reduce((total, [, count]) => total + number(count), 0),
    history: number(engine.history_bytes),
    streams: engine.channels === undefined ? null : number(engine.channels),
    pubRate: 0,
    delivRate: 0,
    latencyCount: 0,
    latencySum: 0,
  };
  const before = previous.get(row.node);
  if (before) {
    const seconds = Math.max(0.001, number(sample.time) - before.time);
    row.pubRate = Math.max(0, (row.published - before.published) / seconds);
    row.delivRate = Math.max(0, (row.delivered - before.delivered) / seconds);
    if (latency && before.latency) {
      row.latencyCount = sum(latency.counts) - sum(before.latency.counts);
      row.latencySum = number(latency.sum) - number(before.latency.sum);
    }
  }
  return row;
}

// A sample: this node's alone, or (cluster) every answering node's, summed in the tiles.
function showSample(message) {
  const cluster = message.cluster && Array.isArray(message.cluster.by_node) ? message.cluster : null;
  const samples = (cluster ? cluster.by_node : [message]).filter(
    (sample) => sample && typeof sample === "object",
  );
  const rows = samples.map(figures);
  const seen = new Map();
  for (const sample of samples) {
    seen.set(String(sample.node), {
      time: number(sample.time),
      published: number(sample.published),
      delivered: number(sample.delivered),
      latency: sample.latency && Array.isArray(sample.latency.counts) ? sample.latency : null,
    });
  }
  previous = seen;
  const total = (field) => rows.reduce((a, row) => a + row[field], 0);
  const transports = {};
  for (const row of rows) {
    for (const [transport, count] of Object.entries(row.transports)) {
      transports[transport] = (transports[transport] || 0) + number(count);
    }
  }
  const connections = total("connections");
  $("t-connections").textContent = connections;
  $("t-transports").textContent = Object.entries(transports)
    .map(([transport, count]) => `${transport} ${count}`)
    .join(" · ");
  $("t-published").textContent = total("published");
  $("t-delivered").textContent = total("delivered");
  $("t-slow").textContent = total("slow");
  $("t-limits").textContent = total("limits");
  $("t-history").textContent = bytes(total("history"));
  const streams = rows.filter((row) => row.streams !== null);
  $("t-streams").textContent = streams.length ? streams.reduce((a, r) => a + r.streams, 0) : "–";
  const pubRate = total("pubRate");
  const delivRate = total("delivRate");
  const count = total("latencyCount");
  const latency = count > 0 ? (total("latencySum") / count) * 1000 : null;
  $("t-pub-rate").textContent = pubRate.toFixed(1);
  $("t-deliv-rate").textContent = delivRate.toFixed(1);
  if (latency !== null) $("t-latency").textContent = `${latency.toFixed(2)} ms`;
  showNodes(cluster, rows);
  push("connections", connections);
  push("pub-rate", pubRate);
  push("deliv-rate", delivRate);
  push("latency", latency === null ? 0 : latency);
}

// The cluster's line ("N of M nodes answered") and each node's row; hidden on one node.
function showNodes(cluster, rows) {
  $("cluster").hidden = cluster === null;
  if (cluster === null) {
    $("cluster-state").textContent = "";
    return;
  }
  const answered = `${rows.length} of ${number(cluster.nodes)} nodes answered`;
  $("cluster-state").textContent = answered;
  $("cluster-state").classList.toggle("error", rows.length < number(cluster.nodes));
  $("nodes-total").textContent = `${answered}; the tiles are their sums`;
  const body = $("nodes").tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.node = row.node;
    cell(tr, row.node === node ? `${row.node} (this page's)` : row.node);
    cell(tr, row.connections);
    cell(tr, row.pubRate.toFixed(1));
    cell(tr, row.delivRate.toFixed(1));
    cell(tr, row.slow);
    cell(tr, row.limits);
    cell(tr, bytes(row.history));
    body.append(tr);
  }
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function push(name, value) {
  const points = series[name];
  points.push(value);
  if (points.length > POINTS) points.shift();
  draw($(`c-${name}`), points);
}

function draw(canvas, points) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth * ratio;
  const height = canvas.clientHeight * ratio;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, width, height);
  const top = Math.max(1, ...points);
  const style = getComputedStyle(document.body);
  context.fillStyle = style.color;
  context.font = `${11 * ratio}px system-ui`;
  context.fillText(String(Math.round(top * 100) / 100), 2, 11 * ratio);
  context.strokeStyle = "#3b6fe0";
  context.lineWidth = 2 * ratio;
  context.beginPath();
  points.forEach((value, i) => {
    const x = (i / Math.max(1, points.length - 1)) * width;
    const y = height - (value / top) * (height - 14 * ratio) - ratio;
    if (i === 0) context.moveTo(x, y);
    else context.lineTo(x, y);
  });
  context.stroke();
}

// ------------------------------------------------------------------ lists

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  row.append(td);
  return td;
}

function button(row, label, action) {
  const td = document.createElement("td");
  const b = document.createElement("button");
  b.type = "button";
  b.className = "quiet";
  b.textContent = label;
  b.addEventListener("click", action);
  td.append(b);
  row.append(td);
}

async function refreshLists() {
  try {
    const [channels, connections] = await Promise.all([
      api("GET", "/api/admin/channels"),
      api("GET", "/api/admin/connections"),
    ]);
    showChannels(channels);
    showConnections(connections);
  } catch (error) {
    if (error.message !== "refused") result(`lists: ${error.message}`, true);
  }
}

function showChannels(answer) {
  $("channels-total").textContent = `${answer.total} with subscribers`;
  const body = $("channels").tBodies[0];
  body.replaceChildren();
  for (const channel of answer.channels) {
    const before = offsets.get(channel.channel);
    let rate = null;
    if (before && before[1] === channel.epoch && answer.time > before[2]) {
      rate = ((channel.offset - before[0]) / (answer.time - before[2])).toFixed(1);
    }
    offsets.set(channel.channel, [channel.offset, channel.epoch, answer.time]);
    const row = document.createElement("tr");
    row.dataset.channel = channel.channel;
    cell(row, channel.channel);
    cell(row, channel.subscribers);
    cell(row, rate);
    cell(row, channel.offset);
    cell(row, `last ${channel.history_size}`);
    button(row, "presence", () => showPresence(channel.channel));
    body.append(row);
  }
}

function showConnections(answer) {
  const nodes = answer.nodes > 1 ? ` on ${answer.nodes} nodes` : "";
  const missing = answer.nodes - answer.answered;
  const unanswered = missing > 0 ? ` (${missing} not answering)` : "";
  const listed = answer.connections.length;
  const shown = answer.total > listed ? `, the ${listed} longest-open shown` : "";
  $("connections-total").textContent = `${answer.total} open${nodes}${unanswered}${shown}`;
  const body = $("connections").tBodies[0];
  body.replaceChildren();
  for (const c of answer.connections) {
    const row = document.createElement("tr");
    row.dataset.client = c.client;
    cell(row, c.client);
    cell(row, c.user);
    cell(row, c.transport);
    cell(row, c.ip);
    cell(row, c.age === null ? null : `${c.age} s`);
    cell(row, bytes(c.buffer));
    cell(row, c.channels);
    cell(row, c.node);
    button(row, "disconnect", () => act("/api/admin/disconnect", { client: c.client }));
    body.append(row);
  }
}

async function showPresence(channel) {
  try {
    const answer = await api("GET", `/api/presence?channel=${encodeURIComponent(channel)}`);
    $("presence").hidden = false;
    $("presence-channel").textContent = channel;
    $("presence-summary").textContent = `${answer.clients} clients, ${answer.users.length} users`;
    $("presence-users").replaceChildren(
      ...answer.users.map((u) => {
        const li = document.createElement("li");
        li.textContent = `${u.user} (${u.clients})`;
        return li;
      }),
    );
  } catch (error) {
    if (error.message !== "refused") result(`presence: ${error.message}`, true);
  }
}

// ------------------------------------------------------------------ actions

function result(text, failed) {
  $("action-result").textContent = text;
  $("action-result").className = failed ? "error" : "muted";
}

async function act(path, body) {
  try {
    const answer = await api("POST", path, body);
    result(`${path.split("/").pop()}: ${JSON.stringify(answer)}`, false);
    refreshLists();
  } catch (error) {
    if (error.message !== "refused") result(`${path.split("/").pop()}: ${error.message}`, true);
  }
}

function onSubmit(id, handler) {
  $(id).addEventListener("submit", (event) => {
    event.preventDefault();
    handler();
  });
}

onSubmit("publish-form", () => {
  let data;
  try {
    data = JSON.parse($("pub-data").value);
  } catch (error) {
    result(`publish: the data is not JSON (${error.message})`, true);
    return;
  }
  act("/api/publish", { channel: $("pub-channel").value, data });
});
onSubmit("wall-form", () => act("/api/wall", { text: $("wall-text").value }));
onSubmit("unsubscribe-form", () =>
  act("/api/admin/unsubscribe", { user: $("unsub-user").value, channel: $("unsub-channel").value }),
);

// ------------------------------------------------------------------ sign in and out

function start() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  connectFeed();
  refreshLists();
  listTimer = setInterval(refreshLists, 2000);
}

function stop() {
  const ws = feed;
  feed = null;
  if (ws) ws.close();
  clearInterval(listTimer);
  previous = new Map();
}

onSubmit("login-form", async () => {
  sessionStorage.setItem(KEY_ITEM, $("key").value);
  $("key").value = "";
  try {
    await api("GET", "/api/admin/connections");
  } catch (error) {
    if (error.message !== "refused") showLogin(error.message);
    return;
  }
  start();
});
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM);
  showLogin("");
});

if (key()) start();
else showLogin("");
