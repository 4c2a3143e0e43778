// The node `ws` peer: a broadcast server as its README shows it.
// /ws?channel=C subscribes; POST /pub?channel=C (raw body) or a WebSocket on /pub
// sending "C\tpayload" frames (each answered "ok") publishes.
// Run: (cd orbiter/bench/peers && npm install --no-save ws@8) && node ws_broadcast.js PORT
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");

const channels = new Map();
function broadcast(channel, payload) {
  const subs = channels.get(channel);
  if (!subs) return;
  for (const ws of subs) if (ws.readyState === 1) ws.send(payload);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (req.method !== "POST" || url.pathname !== "/pub") { res.writeHead(404); res.end(); return; }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    broadcast(url.searchParams.get("channel") || "", Buffer.concat(chunks).toString());
    res.writeHead(200, { "Content-Length": "2" });
    res.end("ok");
  });
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws, req) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/pub") {
    ws.on("message", (data) => {
      const text = data.toString();
      const tab = text.indexOf("\t");
      broadcast(text.slice(0, tab), text.slice(tab + 1));
      ws.send("ok");
    });
    return;
  }
  const channel = url.searchParams.get("channel") || "";
  if (!channels.has(channel)) channels.set(channel, new Set());
  const subs = channels.get(channel);
  subs.add(ws);
  ws.on("close", () => subs.delete(ws));
});
server.listen(Number(process.argv[2]), "127.0.0.1");
