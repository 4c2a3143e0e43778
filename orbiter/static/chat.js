/**
 * chat.js — the chat app at `/` (orbiter/static/chat.html), on orbiter.js's native client.
 *
 * Channels: a room is `chat:NAME`; `chat:rooms` lists the rooms (each created room is one
 * publication there, so its history is the list, and its presence is everyone on the
 * page); `orbiter:wall` carries the server-wide notices (`POST /api/wall`).
 *
 * Messages are `{nick, text, cid}`; `cid` is a client message id. A message is kept in
 * this browser's outbox (localStorage) until its own publication comes back on the
 * room's channel: one typed offline waits there, marked pending, and is sent once a
 * connection is up and the room resubscribed (after orbiter.js replayed what was
 * missed, so a message published just before a connection dropped is seen, not sent
 * twice); every page shows a `cid` once.
 *
 * Everything that came from the network or a keyboard goes into the page as text
 * (textContent, DOM nodes); links are made only for http(s) URLs, with rel=noopener.
 */
(() => {
  "use strict";

  const ROOMS_CHANNEL = "chat:rooms";
  const WALL_CHANNEL = "orbiter:wall";
  const LOBBY = "lobby";
  const PAGE = 50; // history publications per page
  const LEAVE_GRACE = 3000; // ms: a leave followed by a join as quick is a reconnect, not news
  const store = {
    get(key, fallback) {
      try {
        const value = localStorage.getItem(`orbiter-chat-${key}`);
        return value === null ? fallback : JSON.parse(value);
      } catch (_) {
        return fallback;
      }
    },
    set(key, value) {
      try {
        localStorage.setItem(`orbiter-chat-${key}`, JSON.stringify(value));
      } catch (_) {
        /* private mode: kept for this page only */
      }
    },
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const randomId = () =>
    (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`).replace(/-/g, "");

  // ------------------------------------------------------------------ names and text

  /** Why `nick` cannot be a nickname, or "". */
  function nickProblem(nick) {
    if (!nick) return "Type a nickname.";
    if (nick.length > 24) return "At most 24 characters.";
    if (/[,\u0000-\u001f\u007f]/.test(nick)) return "No commas or control characters.";
    return "";
  }

  /** Why `name` cannot be a room name, or "". */
  function roomProblem(name) {
    if (!name) return "Type a room name.";
    if (name.length > 40) return "At most 40 characters.";
    if (/[\u0000-\u001f\u007f]/.test(name)) return "No control characters.";
    if (name === "rooms") return "“rooms” is taken by the room list.";
    return "";
  }

  const URL_PATTERN = /\bhttps?:\/\/[^\s<>"]+/gi;

  /** `text` as nodes: plain text, and links for http(s) URLs only. */
  function linkify(text) {
    const nodes = [];
    let last = 0;
    for (const match of text.matchAll(URL_PATTERN)) {
      let raw = match[0].replace(/[.,;:!?)\]}'*]+$/, "");
      let url = null;
      try {
        url = new URL(raw);
      } catch (_) {
        url = null;
      }
      if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) continue;
      nodes.push(document.createTextNode(text.slice(last, match.index)));
      const a = el("a", "", raw);
      a.href = url.href;
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
      nodes.push(a);
      last = match.index + raw.length;
    }
    nodes.push(document.createTextNode(text.slice(last)));
    return nodes;
  }

  /** What a publication shows: {nick, text, code, cid}, for any JSON value an app sends. */
  function readPublication(data) {
    if (typeof data === "string") return { nick: "", text: data };
    if (data && typeof data === "object" && !Array.isArray(data) && typeof data.text === "string") {
      const nick = typeof data.nick === "string" ? data.nick : "";
      const cid = typeof data.cid === "string" ? data.cid : "";
      return { nick, text: data.text, cid };
    }
    let text;
    try {
      text = JSON.stringify(data);
    } catch (_) {
      text = String(data);
    }
    return { nick: "", text: text === undefined ? String(data) : text, code: typeof data === "object" && data !== null };
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  function timeNode(ms) {
    const t = el("time", "", timeFormat.format(ms));
    t.dateTime = new Date(ms).toISOString();
    t.title = dayFormat.format(ms);
    return t;
  }

  // ------------------------------------------------------------------ state

  const params = new URLSearchParams(location.search);
  const transports = params.get("transports");
  const authOn = document.documentElement.dataset.auth === "token";
  const browserId = store.get("browser", null) || randomId();
  store.set("browser", browserId);

  /** @type {Map<string, Room>} joined rooms, by name */
  const rooms = new Map();
  const knownRooms = new Set([LOBBY]); // listed on the page: joined or on chat:rooms
  const listedRooms = new Set(); // announced on chat:rooms (its history, or live)
  let current = null; // the Room shown
  let me = "";
  let client = null;
  let everConnected = false;
  let stopped = false; // the server said not to reconnect (a bad token, say)
  let outbox = store.get("outbox", []); // [{cid, room, nick, text}]
  const seen = new Set(); // cids shown (or known published) on this page

  class Room {
    constructor(name) {
      this.name = name;
      this.channel = `chat:${name}`;
      this.log = el("ol", "room-log");
      this.log.dataset.room = name;
      this.log.hidden = true;
      this.pendingList = el("ol", "room-log pending-log");
      this.pendingList.hidden = true;
      this.offsets = new Map(); // offset -> li
      this.oldest = null; // the oldest offset shown
      this.complete = false; // nothing older left in history
      this.loading = false;
      this.ready = false; // subscribed on the current connection, backlog loaded
      this.loaded = false;
      this.epoch = null;
      this.unread = 0;
      this.people = new Map(); // user -> info
      this.leaving = new Map(); // user -> timer
      this.sub = null;
      $("messages").append(this.log, this.pendingList);
    }
  }

  // ------------------------------------------------------------------ rendering

  function messageNode(pub, offset, ms) {
    const shown = readPublication(pub);
    const li = el("li", "message");
    if (offset !== undefined) li.dataset.offset = String(offset);
    if (shown.cid) li.dataset.cid = shown.cid;
    if (shown.nick && shown.nick === me) li.classList.add("mine");
    if (!shown.nick) li.classList.add("from-app");
    if (shown.nick) {
      li.append(el("span", "nick", shown.nick), el("span", "sep", ": "));
    }
    const body = el(shown.code ? "code" : "span", "text");
    body.append(...linkify(shown.text));
    li.append(body, timeNode(ms));
    return li;
  }

  function noticeNode(text, className = "notice") {
    const li = el("li", className);
    li.append(el("span", "text", text), timeNode(Date.now()));
    return li;
  }

  /** Keep the view pinned to the bottom if it was there, around a change. */
  function keepingBottom(room, change) {
    const scroller = $("scroller");
    const pinned =
      room !== current || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
    change();
    if (room === current && pinned) scroller.scrollTop = scroller.scrollHeight;
  }

  /** Show one publication of `room` in offset order; false if it was shown already. */
  function addPublication(room, offset, data, ms, live) {
    if (room.offsets.has(offset)) return false;
    const { cid } = readPublication(data);
    if (cid && seen.has(cid) && document.querySelector(`[data-cid="${CSS.escape(cid)}"]:not(.pending)`)) {
      return false; // the same message published twice: shown once
    }
    if (cid) settle(cid);
    const li = messageNode(data, offset, ms);
    room.offsets.set(offset, li);
    if (room.oldest === null || offset < room.oldest) room.oldest = offset;
    keepingBottom(room, () => {
      // Newer than all shown (a live one): at the end, after any notice. Else (an older
      // page) after the last shown publication with a smaller offset, or first.
      const hasOffset = (node) => node.dataset.offset !== undefined;
      let node = room.log.lastElementChild;
      while (node && !hasOffset(node)) node = node.previousElementSibling;
      if (!node || Number(node.dataset.offset) < offset) {
        room.log.append(li);
        return;
      }
      while (node && !(hasOffset(node) && Number(node.dataset.offset) < offset)) {
        node = node.previousElementSibling;
      }
      if (node) node.after(li);
      else room.log.prepend(li);
    });
    if (live && room !== current && !li.classList.contains("mine")) {
      room.unread += 1;
      renderRooms();
    }
    return true;
  }

  function addNotice(room, text) {
    keepingBottom(room, () => room.log.append(noticeNode(text)));
  }

  function renderRooms() {
    const list = $("rooms");
    list.replaceChildren();
    for (const room of rooms.values()) {
      const li = el("li");
      const button = el("button", "room-button");
      button.type = "button";
      button.dataset.room = room.name;
      button.append(el("span", "hash", "#"), el("span", "room-name", room.name));
      if (room === current) {
        button.setAttribute("aria-current", "true");
        button.classList.add("current");
      }
      if (room.unread) {
        const badge = el("span", "unread", String(room.unread));
        badge.setAttribute("aria-label", `${room.unread} unread`);
        button.append(badge);
      }
      button.addEventListener("click", () => switchTo(room.name));
      li.append(button);
      list.append(li);
    }
    const others = $("other-rooms");
    others.replaceChildren();
    for (const name of Array.from(knownRooms).sort()) {
      if (rooms.has(name)) continue;
      const li = el("li");
      const button = el("button", "room-button other");
      button.type = "button";
      button.dataset.room = name;
      button.append(el("span", "hash", "#"), el("span", "room-name", name));
      button.addEventListener("click", () => joinRoom(name, true));
      li.append(button);
      others.append(li);
    }
    $("other-rooms-title").hidden = !others.children.length;
    const total = Array.from(rooms.values()).reduce((n, r) => n + r.unread, 0);
    document.title = total ? `(${total}) orbiter chat` : "orbiter chat";
  }

  function renderPeople() {
    const list = $("people");
    list.replaceChildren();
    if (!current) return;
    const names = Array.from(current.people.keys()).sort((a, b) => a.localeCompare(b));
    for (const name of names) {
      const li = el("li", name === me ? "person me" : "person");
      li.append(el("span", "avatar", name.slice(0, 1).toUpperCase()), el("span", "person-name", name));
      if (name === me) li.append(el("span", "you", "you"));
      list.append(li);
    }
    $("people-count").textContent = String(names.length);
  }

  const pendingNodes = new Map(); // cid -> li of a message in the outbox

  /** Show the outbox: each waiting message at the end of its room, marked. */
  function renderPending() {
    const waiting = new Set();
    for (const item of outbox) {
      const room = rooms.get(item.room);
      if (!room) continue;
      waiting.add(item.cid);
      let li = pendingNodes.get(item.cid);
      if (!li) {
        li = messageNode({ nick: item.nick, text: item.text, cid: item.cid }, undefined, item.at || Date.now());
        li.classList.add("pending");
        li.append(el("span", "pending-mark"));
        pendingNodes.set(item.cid, li);
        keepingBottom(room, () => room.pendingList.append(li));
      }
      li.lastChild.textContent = item.sending ? "sending…" : "pending";
    }
    for (const [cid, li] of pendingNodes) {
      if (!waiting.has(cid)) {
        li.remove();
        pendingNodes.delete(cid);
      }
    }
  }

  function renderStatus() {
    const status = $("status");
    let state;
    if (!client) state = authOn ? "offline" : "connecting";
    else if (stopped || navigator.onLine === false) state = "offline"; // the browser says so
    else if (client.state === "connected") state = "connected";
    else state = everConnected ? "reconnecting" : "connecting";
    status.textContent = state;
    status.dataset.state = state;
    document.documentElement.dataset.connection = state;
    $("transport").textContent = client && client.transport && state !== "offline" ? client.transport : "";
  }

  // ------------------------------------------------------------------ rooms

  function switchTo(name) {
    const room = rooms.get(name);
    if (!room) return;
    current = room;
    for (const r of rooms.values()) {
      r.log.hidden = r !== room;
      r.pendingList.hidden = r !== room;
    }
    room.unread = 0;
    $("room-title").textContent = `#${room.name}`;
    $("leave-room").hidden = room.name === LOBBY;
    $("messages").dataset.room = room.name;
    if (room.ready) $("messages").dataset.subscribed = "true";
    else delete $("messages").dataset.subscribed;
    updateOlder();
    renderRooms();
    renderPeople();
    closeDrawer();
    const scroller = $("scroller");
    scroller.scrollTop = scroller.scrollHeight;
    store.set("current", name);
    if (!$("message").disabled) $("message").focus();
  }

  function joinRoom(name, show) {
    let room = rooms.get(name);
    if (!room) {
      room = new Room(name);
      rooms.set(name, room);
      knownRooms.add(name);
      store.set("rooms", Array.from(rooms.keys()));
      if (client) subscribeRoom(room);
      renderPending();
    }
    if (show || !current) switchTo(name);
    else renderRooms();
    return room;
  }

  function leaveRoom(name) {
    const room = rooms.get(name);
    if (!room || name === LOBBY) return;
    if (room.sub) room.sub.unsubscribe();
    room.log.remove();
    room.pendingList.remove();
    rooms.delete(name);
    outbox = outbox.filter((item) => item.room !== name);
    store.set("outbox", outbox);
    store.set("rooms", Array.from(rooms.keys()));
    switchTo(LOBBY);
  }

  function subscribeRoom(room) {
    room.sub = client.subscribe(room.channel, (data, meta) => {
      addPublication(room, meta.offset, data, Date.now(), true);
    });
  }

  /** The room's channel is (re)subscribed: read its backlog if needed, then send what waits. */
  async function roomSubscribed(room, detail) {
    if (detail.recovered === false && room.loaded) {
      // The server could not fill the gap: show the room afresh from its history.
      room.log.replaceChildren();
      room.offsets.clear();
      room.oldest = null;
      room.complete = false;
      room.loaded = false;
      addNotice(room, "Some messages may have been missed; reloaded the room.");
    }
    try {
      if (!room.loaded) {
        const page = await client.history(room.channel, { limit: PAGE });
        room.epoch = page.epoch;
        for (const pub of page.publications) addPublication(room, pub.offset, pub.data, pub.time * 1000, false);
        room.loaded = true;
        if (!page.publications.length || page.publications[0].offset <= 1) room.complete = true;
        if (room === current) updateOlder();
      }
      const presence = await client.presence(room.channel);
      room.people = new Map(presence.users.map((u) => [u.user, u.info]));
      if (room === current) renderPeople();
    } catch (err) {
      if (err.code !== "disconnected") addNotice(room, `Could not read the room: ${err.message}`);
      return;
    }
    room.ready = true;
    if (room === current) $("messages").dataset.subscribed = "true";
    flush();
  }

  async function loadOlder() {
    const room = current;
    if (!room || room.loading || room.complete || !room.loaded || room.oldest === null) return;
    if (!client || client.state !== "connected") return;
    room.loading = true;
    const scroller = $("scroller");
    try {
      const page = await client.history(room.channel, { limit: PAGE, before: room.oldest });
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      for (const pub of page.publications) addPublication(room, pub.offset, pub.data, pub.time * 1000, false);
      if (!page.publications.length || page.publications[0].offset <= 1) room.complete = true;
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
    } catch (err) {
      if (err.code !== "disconnected") addNotice(room, `Could not load older messages: ${err.message}`);
    } finally {
      room.loading = false;
      updateOlder();
    }
  }

  function updateOlder() {
    const room = current;
    $("older").hidden = !room || !room.loaded || room.complete;
    $("beginning").hidden = !room || !room.complete;
  }

  /** List `name` on chat:rooms unless it is there already (the lobby always is). */
  function announceRoom(name) {
    if (name === LOBBY || listedRooms.has(name)) return;
    listedRooms.add(name);
    client.publish(ROOMS_CHANNEL, { room: name }).catch(() => listedRooms.delete(name));
  }

  // ------------------------------------------------------------------ presence

  function joined(room, user, info) {
    const timer = room.leaving.get(user);
    if (timer !== undefined) {
      clearTimeout(timer); // back within the grace period: a reconnect
      room.leaving.delete(user);
      return;
    }
    const isNew = !room.people.has(user);
    room.people.set(user, info);
    if (isNew && user !== me && room.ready) addNotice(room, `${user} joined`);
    if (room === current) renderPeople();
  }

  function left(room, user) {
    if (room.leaving.has(user)) return;
    room.leaving.set(
      user,
      setTimeout(() => {
        room.leaving.delete(user);
        if (!room.people.delete(user)) return;
        if (user !== me) addNotice(room, `${user} left`);
        if (room === current) renderPeople();
      }, LEAVE_GRACE),
    );
  }

  // ------------------------------------------------------------------ sending

  function saveOutbox() {
    store.set("outbox", outbox.map(({ sending, ...item }) => item));
  }

  /** A message of ours came back (or was found in history): it is sent, and shown. */
  function settle(cid) {
    seen.add(cid);
    const before = outbox.length;
    outbox = outbox.filter((item) => item.cid !== cid);
    if (outbox.length !== before) {
      saveOutbox();
      renderPending();
    }
  }

  function send(text) {
    const room = current;
    if (!room || !me) return;
    outbox.push({ cid: randomId(), room: room.name, nick: me, text, at: Date.now() });
    saveOutbox();
    renderPending();
    flush();
  }

  let flushing = false;

  /** Send what waits in the outbox, one at a time (each room's order kept), exactly once. */
  async function flush() {
    if (flushing) return;
    flushing = true;
    try {
      for (;;) {
        if (!client || client.state !== "connected") return;
        const item = outbox.find((i) => !seen.has(i.cid) && rooms.get(i.room) && rooms.get(i.room).ready);
        if (!item) return;
        const room = rooms.get(item.room);
        item.sending = true;
        renderPending();
        try {
          await client.publish(room.channel, { nick: item.nick, text: item.text, cid: item.cid });
          seen.add(item.cid); // published: never again, its echo will show it
        } catch (err) {
          item.sending = false;
          if (err.code === 106) {
            await new Promise((resolve) => setTimeout(resolve, 300)); // publish_rate: wait
          } else if (err.code === "disconnected" || err.code === "timeout" || err.code === "closed") {
            // Maybe published, maybe not: the resubscribe's recovery tells (roomSubscribed).
            renderPending();
            return;
          } else {
            outbox = outbox.filter((i) => i !== item);
            saveOutbox();
            addNotice(room, `Not sent (${err.message}): ${item.text}`);
          }
          renderPending();
        }
      }
    } finally {
      flushing = false;
    }
  }

  // ------------------------------------------------------------------ connection

  function clientOptions(extra) {
    const options = Object.assign({}, extra);
    if (transports) options.transports = transports.split(",");
    return options;
  }

  /** Is `nick` free on the chat (no one else present under it)? Asks chat:rooms' presence. */
  function nickIsFree(nick, timeout) {
    return new Promise((resolve, reject) => {
      const probe = new Orbiter.Client(clientOptions({}));
      const done = (fn, value) => {
        clearTimeout(timer);
        probe.disconnect();
        fn(value);
      };
      const timer = setTimeout(() => done(reject, new Error("the server did not answer in time")), timeout);
      probe.on("subscribed", ({ channel }) => {
        if (channel !== ROOMS_CHANNEL) return;
        probe.presence(ROOMS_CHANNEL).then(
          (presence) => {
            const holder = presence.users.find((u) => u.user === nick);
            const mine = holder && holder.info && holder.info.browser === browserId;
            done(resolve, !holder || mine);
          },
          (err) => done(reject, err),
        );
      });
      probe.subscribe(ROOMS_CHANNEL, () => {});
    });
  }

  function start(options) {
    client = window.chatClient = new Orbiter.Client(clientOptions(options));
    client.on("state", () => {
      if (client.state === "connected") everConnected = true;
      renderStatus();
    });
    client.on("connect", renderStatus);
    client.on("disconnect", ({ reconnect, code, reason }) => {
      for (const room of rooms.values()) room.ready = false;
      delete $("messages").dataset.subscribed;
      if (!reconnect) {
        stopped = true;
        showProblem(code, reason);
      }
      renderStatus();
    });
    client.on("subscribed", (detail) => {
      const room = rooms.get(detail.channel.slice(5));
      if (room && room.channel === detail.channel) roomSubscribed(room, detail);
    });
    client.on("join", ({ channel, user, info }) => {
      const room = rooms.get(channel.slice(5));
      if (room && room.channel === channel) joined(room, user, info);
    });
    client.on("leave", ({ channel, user }) => {
      const room = rooms.get(channel.slice(5));
      if (room && room.channel === channel) left(room, user);
    });
    client.on("error", ({ error, channel }) => {
      if (channel && current) addNotice(current, `${channel}: ${error.message}`);
    });
    client.subscribe(ROOMS_CHANNEL, (data) => {
      if (data && typeof data.room === "string" && !roomProblem(data.room)) {
        knownRooms.add(data.room);
        listedRooms.add(data.room);
        renderRooms();
      }
    });
    client.on("subscribed", ({ channel }) => {
      if (channel === ROOMS_CHANNEL) {
        client.history(ROOMS_CHANNEL, { limit: 200 }).then((page) => {
          for (const pub of page.publications) {
            const name = pub.data && pub.data.room;
            if (typeof name === "string" && !roomProblem(name)) {
              knownRooms.add(name);
              listedRooms.add(name);
            }
          }
          for (const name of rooms.keys()) announceRoom(name);
          renderRooms();
        }, () => {});
      } else if (channel === WALL_CHANNEL) {
        client.history(WALL_CHANNEL, { limit: 1 }).then((page) => {
          const last = page.publications[page.publications.length - 1];
          if (last && !$("wall").dataset.offset) showWall(last.data, last.offset, last.time * 1000);
        }, () => {});
      }
    });
    client.subscribe(WALL_CHANNEL, (data, meta) => showWall(data, meta.offset, Date.now()));
    for (const room of rooms.values()) subscribeRoom(room);
    renderStatus();
  }

  function showWall(data, offset, ms) {
    const wall = $("wall");
    if (wall.dataset.dismissed === String(offset)) return;
    const shown = readPublication(data);
    $("wall-text").replaceChildren(...linkify(shown.text));
    $("wall-time").replaceWith(Object.assign(timeNode(ms), { id: "wall-time" }));
    wall.dataset.offset = String(offset);
    wall.hidden = false;
  }

  function showProblem(code, reason) {
    if (authOn && (code === 3502 || code === 3002)) {
      sessionStorage.removeItem("orbiter-chat-token");
      showAuthPanel(`The server refused the token (${reason || code}). Get a fresh one.`);
    } else if (current) {
      addNotice(current, `Disconnected by the server (${code}${reason ? `: ${reason}` : ""}); reload the page to try again.`);
    }
  }

  // ------------------------------------------------------------------ joining

  function enterChat(nick) {
    me = nick;
    $("my-nick").textContent = nick;
    $("join").hidden = true;
    $("message").disabled = false;
    const saved = store.get("rooms", [LOBBY]);
    for (const name of [LOBBY, ...saved]) if (typeof name === "string" && !roomProblem(name)) joinRoom(name, false);
    const last = store.get("current", LOBBY);
    switchTo(rooms.has(last) ? last : LOBBY);
    renderPending();
  }

  /** Join as `nick` if no one else present holds it. A `remembered` name (this browser's,
   * from before) is kept when the server cannot be asked: the page starts offline and
   * reconnects by itself. */
  async function tryNick(nick, remembered = false) {
    const problem = nickProblem(nick);
    const error = $("join-error");
    if (problem) {
      error.textContent = problem;
      error.hidden = false;
      return;
    }
    error.hidden = true;
    $("join-button").disabled = true;
    try {
      if (!(await nickIsFree(nick, remembered ? 5000 : 15000))) {
        error.textContent = `“${nick}” is taken by someone here now. Pick another nickname.`;
        error.hidden = false;
        store.set("nick", null);
        $("join-form").hidden = false;
        $("join").hidden = false;
        $("nickname").value = nick;
        $("nickname").focus();
        return;
      }
    } catch (err) {
      if (!remembered) {
        error.textContent = `Could not reach the server: ${err.message}`;
        error.hidden = false;
        $("join").hidden = false;
        return;
      }
    } finally {
      $("join-button").disabled = false;
    }
    error.hidden = true;
    store.set("nick", nick);
    start({ user: nick, session: randomId().slice(0, 12), location: "/chat", info: { browser: browserId } });
    enterChat(nick);
  }

  /** The user a connection token names (its `sub`), read to show it; the server checks it. */
  function tokenUser(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(decodeURIComponent(escape(atob(part))));
      return typeof claims.sub === "string" ? claims.sub : "";
    } catch (_) {
      return "";
    }
  }

  function showAuthPanel(problem) {
    $("join").hidden = false;
    $("join-form").hidden = true;
    $("auth-needed").hidden = false;
    const error = $("token-error");
    error.textContent = problem || "";
    error.hidden = !problem;
  }

  function useToken(token) {
    const user = tokenUser(token);
    if (!user) {
      showAuthPanel("That is not a connection token (a JWT whose payload has a sub).");
      return;
    }
    sessionStorage.setItem("orbiter-chat-token", token);
    stopped = false;
    start({ token });
    enterChat(user);
  }

  // ------------------------------------------------------------------ drawer, keys

  function closeDrawer() {
    document.body.classList.remove("drawer-open");
    $("menu").setAttribute("aria-expanded", "false");
  }

  function wire() {
    $("join-form").addEventListener("submit", (event) => {
      event.preventDefault();
      tryNick($("nickname").value.trim());
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (token) useToken(token);
    });
    $("send-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("message");
      const text = input.value;
      if (!text.trim() || input.disabled) return;
      input.value = "";
      send(text);
    });
    $("room-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = $("room-name").value.trim();
      const problem = roomProblem(name);
      $("room-error").textContent = problem;
      $("room-error").hidden = !problem;
      if (problem || !me) return;
      $("room-name").value = "";
      if (client) announceRoom(name);
      joinRoom(name, true);
    });
    $("leave-room").addEventListener("click", () => current && leaveRoom(current.name));
    $("older").addEventListener("click", loadOlder);
    $("scroller").addEventListener("scroll", () => {
      if ($("scroller").scrollTop < 40) loadOlder();
    });
    $("wall-close").addEventListener("click", () => {
      $("wall").dataset.dismissed = $("wall").dataset.offset || "";
      $("wall").hidden = true;
    });
    $("menu").addEventListener("click", () => {
      const open = document.body.classList.toggle("drawer-open");
      $("menu").setAttribute("aria-expanded", String(open));
      if (open) $("sidebar").querySelector("button, input").focus();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeDrawer();
      if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown") && current) {
        const names = Array.from(rooms.keys());
        const i = names.indexOf(current.name) + (event.key === "ArrowUp" ? -1 : 1);
        if (i >= 0 && i < names.length) switchTo(names[i]);
        event.preventDefault();
      }
    });
    addEventListener("online", renderStatus);
    addEventListener("offline", renderStatus);
  }

  // ------------------------------------------------------------------ start

  wire();
  renderStatus();
  if (authOn) {
    const token = params.get("token") || sessionStorage.getItem("orbiter-chat-token");
    if (params.has("token")) {
      // Kept for this tab (sessionStorage), out of the address bar, history and bookmarks.
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
    }
    // A client that waits for a token; the page shows how to get one.
    window.chatClient = new Orbiter.Client(clientOptions({ autoConnect: false }));
    if (token) useToken(token);
    else showAuthPanel("");
  } else {
    const nick = store.get("nick", "");
    $("join-form").hidden = false;
    if (nick && !nickProblem(nick)) {
      $("nickname").value = nick;
      tryNick(nick, true);
    } else {
      $("join").hidden = false;
      $("nickname").focus();
    }
  }
  window.chat = { rooms, send, joinRoom, leaveRoom, switchTo, get outbox() { return outbox; } };
})();
