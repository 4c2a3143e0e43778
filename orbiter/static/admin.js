// admin.js — the dashboard at /admin. The API key is asked once, kept in this tab's
// sessionStorage and sent only in the X-API-Key header (and the feed's first message):
// never in a URL. Live numbers come from /admin/feed (the node's $admin channel, once a
// second); the lists from /api/admin/* every two seconds (every node's connections, each
// with the node that holds it; its disconnect button reaches that node through the engine).
"use strict";

const KEY_ITEM = "orbiter-admin-key";
const POINTS = 60;
const $ = (id) => document.getElementById(id);

let feed = null;
let listTimer = null;
let previous = null; // the last sample, for rates
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
  return Object.values(values || {}).reduce((a, b) => a + b, 0);
}

function showSample(sample) {
  const connections = sum(sample.connections);
  $("t-connections").textContent = connections;
  $("t-transports").textContent = Object.entries(sample.connections)
    .map(([transport, count]) => `${transport} ${count}`)
    .join(" · ");
  $("t-published").textContent = sample.published;
  $("t-delivered").textContent = sample.delivered;
  const counters = sample.counters || {};
  $("t-slow").textContent = counters.limit_outgoing_buffer || 0;
  $("t-limits").textContent = Object.entries(counters)
    .filter(([name]) => name.startsWith("limit_"))
    .reduce((total, [, count]) => total + count, 0);
  const engine = sample.engine || {};
  $("t-history").textContent = bytes(engine.history_bytes || 0);
  $("t-streams").textContent = engine.channels === undefined ? "–" : engine.channels;
  let pubRate = 0;
  let delivRate = 0;
  let latency = null;
  if (previous) {
    const seconds = Math.max(0.001, sample.time - previous.time);
    pubRate = (sample.published - previous.published) / seconds;
    delivRate = (sample.delivered - previous.delivered) / seconds;
    if (sample.latency && previous.latency) {
      const count = sum(sample.latency.counts) - sum(previous.latency.counts);
      if (count > 0) latency = ((sample.latency.sum - previous.latency.sum) / count) * 1000;
    }
  }
  previous = sample;
  $("t-pub-rate").textContent = pubRate.toFixed(1);
  $("t-deliv-rate").textContent = delivRate.toFixed(1);
  if (latency !== null) $("t-latency").textContent = `${latency.toFixed(2)} ms`;
  push("connections", connections);
  push("pub-rate", pubRate);
  push("deliv-rate", delivRate);
  push("latency", latency === null ? 0 : latency);
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
  previous = null;
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
