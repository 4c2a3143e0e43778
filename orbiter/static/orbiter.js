/**
 * orbiter.js — browser client for orbiter's native protocol (docs/protocol.md).
 *
 * Loading. This file is a classic script without `import`/`export`, written
 * to be strict-mode clean and not to rely on a top-level `this`, so it loads
 * both ways and in both cases defines the globals `Orbiter` and `Orbited`:
 *
 *     <script src="/static/orbiter.js"></script>
 *     <script type="module">import "/static/orbiter.js"; const { Client } = globalThis.Orbiter;</script>
 *
 * (A file with `export` statements cannot be loaded by a classic <script>,
 * so a side-effect import plus `globalThis` is the one form that works for both.)
 *
 *     const client = new Orbiter.Client();              // same origin, connects at once
 *     const sub = client.subscribe("chat:lobby", (data, { channel, offset }) => { ... });
 *     await client.publish("chat:lobby", { nick: "ann", text: "hi" });  // -> { offset, epoch }
 *     client.on("unrecoverable", ({ channel }) => reloadStateOf(channel));
 *
 * Delivery. The client remembers, per channel, the epoch and offset of the
 * last publication it delivered. After a connection is lost it reconnects
 * (exponential backoff with full jitter) and resubscribes with `since`, so
 * missed publications are replayed from the server's history; anything with
 * an offset it has already delivered is dropped, so nothing arrives twice.
 * When the server cannot fill the gap (`recovered: false`) the client emits
 * "unrecoverable" and carries on from the channel's new position.
 *
 * Publishing while disconnected. publish() queues the message while there is
 * no open connection (unless disconnect() was called, which rejects at once)
 * and sends it as soon as a connection opens. A queued message that is not
 * sent within `publishQueueTimeout` (30 s) is dropped and its promise rejects
 * with code "timeout". A message already sent when the connection drops is
 * NOT resent (the server may or may not have published it): its promise
 * rejects with code "disconnected".
 *
 * Tokens. When the server needs a connection token (docs/security.md), pass
 * `token`: a string, or a function returning a token or a promise of one
 * (e.g. `() => fetch("/orbiter-token").then((r) => r.text())`). A function is
 * called before each connection that needs a new token, and again before the
 * token expires (at 3/4 of its lifetime), whose result is sent as `refresh`
 * on the open connection: it is never dropped for a token renewal.
 * Close codes 3500-3999 (bad token, forbidden) stop reconnecting; 3002
 * (token expired) reconnects with a fresh token when there is a function.
 */
(function (root) {
  "use strict";

  const ENDPOINT = "/connection/websocket";
  /** Close code used locally when the server stops answering (treated as "reconnect"). */
  const CLOSE_NO_REPLY = 4000;

  /** Client-side error codes; server errors carry the numeric codes of docs/protocol.md. */
  const ErrorCode = Object.freeze({
    TIMEOUT: "timeout", // no connection or no reply in time
    DISCONNECTED: "disconnected", // the connection was lost before the reply came
    CLOSED: "closed", // disconnect() was called, or the server said not to reconnect
    TOO_BIG: "too_big", // the command is larger than maxMessageSize
  });

  /** Transport names, best first; `options.transports` picks and orders a subset. */
  const TRANSPORTS = Object.freeze([
    "websocket",
    "xhr-streaming",
    "eventsource",
    "xhr-polling",
    "jsonp-polling",
  ]);

  const DEFAULTS = Object.freeze({
    user: undefined,
    session: undefined,
    location: undefined,
    info: undefined, // any JSON value, shown to others in presence
    token: undefined, // a connection token, or a function returning one (or a promise of one)
    autoConnect: true,
    minReconnectDelay: 250,
    maxReconnectDelay: 10000,
    publishQueueTimeout: 30000,
    replyTimeout: 10000, // a command unanswered this long means the connection is dead
    pingInterval: 25000, // 0 disables pings
    transports: TRANSPORTS, // which to try, in this order (a subset of TRANSPORTS)
    sockjsPath: "/sockjs", // the server's sockjs.prefix
    maxMessageSize: 1048576, // the server's limits.max_message_size (its default, 1 MiB)
    rpcTimeout: 30000, // ms an rpc() may take before its promise rejects ("timeout")
  });

  const encoder = new TextEncoder();
  const byteLength = (s) => encoder.encode(s).length;

  /** An Error with a `code`: a server error code (number) or an ErrorCode (string). */
  function makeError(code, message) {
    const err = new Error(message);
    err.name = "OrbiterError";
    err.code = code;
    return err;
  }

  /** Run a user callback; an exception is reported asynchronously, never breaks the client. */
  function safely(fn, ...args) {
    try {
      fn(...args);
    } catch (err) {
      setTimeout(() => {
        throw err;
      });
    }
  }

  /**
   * The WebSocket URL for `url`: `http(s)://host[:port][/prefix]`, `ws(s)://...`,
   * a path, or nothing (same origin). ENDPOINT is appended unless already there.
   * @param {string} [url]
   * @returns {string}
   */
  function socketUrl(url) {
    const base = root.location ? root.location.href : undefined;
    const u = new URL(url == null || url === "" ? "/" : String(url), base);
    if (u.protocol === "http:") u.protocol = "ws:";
    else if (u.protocol === "https:") u.protocol = "wss:";
    else if (u.protocol !== "ws:" && u.protocol !== "wss:") {
      throw new TypeError(`orbiter: unsupported URL ${u.href}`);
    }
    const path = u.pathname.replace(/\/+$/, "");
    u.pathname = path.endsWith(ENDPOINT) ? path : path + ENDPOINT;
    u.hash = "";
    return u.href;
  }

  /** At most this many characters of a failed transport's reason (the server's limit). */
  const MAX_FALLBACK_REASON = 120;

  /** Why a transport failed, as `connect`'s fallback report carries it: printable ASCII. */
  function failureReason(code, reason) {
    const text = `closed ${code}${reason ? `: ${reason}` : ""}`;
    return text.replace(/[^\x20-\x7e]/g, "?").slice(0, MAX_FALLBACK_REASON);
  }

  let jsonpCounter = 0;
  const randomId = (n) => {
    const bytes = new Uint8Array(n);
    (root.crypto || globalThis.crypto).getRandomValues(bytes);
    return Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
  };

  /**
   * A SockJS session over one of its HTTP transports, behind the part of the
   * WebSocket interface the Client uses (readyState, send, close, onopen,
   * onmessage({data}), onclose({code, reason})). Where WebSocket is blocked,
   * the native protocol runs over this instead: each SockJS message carries
   * native-protocol lines.
   *
   * Frames (docs/protocol.md, SockJS): "o" open, "h" heartbeat, "a[...]"
   * messages, "c[code,reason]" close. Receiving: xhr-streaming and
   * eventsource hold a response open (and reopen it when the server ends it
   * at its size limit); xhr-polling and jsonp-polling ask again after each
   * answer. Sending: one POST at a time to xhr_send (or jsonp_send), in order.
   */
  class SockJSSocket {
    /**
     * @param {string} base the SockJS prefix URL, e.g. "http://host:8000/sockjs"
     * @param {string} transport one of TRANSPORTS except "websocket"
     */
    constructor(base, transport) {
      this.readyState = 0; // CONNECTING
      this.transport = transport;
      this.onopen = this.onmessage = this.onclose = null;
      this._url = `${base}/${Math.floor(Math.random() * 1000)}/${randomId(16)}`;
      this._outbox = [];
      this._sending = false;
      this._abort = new AbortController();
      this._cleanup = null; // undoes an EventSource or a JSONP script tag
      setTimeout(() => this._receive(), 0);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error("SockJS session is not open");
      this._outbox.push(text);
      this._flush();
    }

    close(code = 1000, reason = "") {
      this._finish(code, reason);
    }

    _finish(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3; // CLOSED
      this._abort.abort();
      if (this._cleanup) this._cleanup();
      setTimeout(() => this.onclose && this.onclose({ code, reason }), 0);
    }

    /** Handle one frame; false once the session is closed. */
    _frame(frame) {
      if (this.readyState === 3) return false;
      const kind = frame.charAt(0);
      if (kind === "o" && this.readyState === 0) {
        this.readyState = 1; // OPEN
        if (this.onopen) this.onopen();
      } else if (kind === "a") {
        for (const data of JSON.parse(frame.slice(1))) {
          if (this.readyState !== 1) return false;
          if (this.onmessage) this.onmessage({ data });
        }
      } else if (kind === "c") {
        const [code, reason] = JSON.parse(frame.slice(1));
        this._finish(code, reason);
      }
      return this.readyState !== 3;
    }

    async _receive() {
      try {
        if (this.transport === "eventsource") return this._eventSource();
        while (this.readyState !== 3) {
          if (this.transport === "xhr-streaming") await this._stream();
          else if (this.transport === "xhr-polling") await this._poll();
          else if (this.transport === "jsonp-polling") await this._jsonp();
          else throw new Error(`unknown transport ${this.transport}`);
        }
      } catch (err) {
        this._finish(1006, `${this.transport} failed: ${err && err.message}`);
      }
    }

    async _post(path, init) {
      const response = await root.fetch(this._url + path, {
        method: "POST",
        cache: "no-store",
        signal: this._abort.signal,
        ...init,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return response;
    }

    async _poll() {
      const text = await (await this._post("/xhr")).text();
      for (const frame of text.split("\n")) if (frame && !this._frame(frame)) return;
    }

    /** One xhr_streaming response: a prelude of "h"s, then frames, one per line. */
    async _stream() {
      const reader = (await this._post("/xhr_streaming")).body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 1);
          if (frame && !this._frame(frame)) return reader.cancel();
        }
      }
    }

    /**
     * Frames arrive as EventSource messages. When the server ends the response
     * at its size limit the browser would reopen it on its own schedule;
     * reopen at once instead. A source that fails before any frame is a failure.
     */
    _eventSource() {
      const source = new root.EventSource(this._url + "/eventsource");
      let received = false;
      this._cleanup = () => source.close();
      source.onmessage = (ev) => {
        received = true;
        this._frame(ev.data);
      };
      source.onerror = () => {
        source.close();
        if (this.readyState === 3) return;
        if (received) this._eventSource();
        else this._finish(1006, "eventsource failed");
      };
    }

    /**
     * One JSONP poll: a script tag that calls back with one frame. Polls wait
     * for the page's load event: a held script tag would otherwise hold it.
     */
    async _jsonp() {
      const doc = root.document;
      if (doc.readyState !== "complete") {
        await new Promise((resolve) => root.addEventListener("load", resolve, { once: true }));
      }
      return new Promise((resolve, reject) => {
        const name = `__orbiter_jsonp_${++jsonpCounter}_${randomId(6)}`;
        const script = root.document.createElement("script");
        const done = () => {
          delete root[name];
          script.remove();
          this._cleanup = null;
        };
        root[name] = (frame) => {
          done();
          this._frame(frame);
          resolve();
        };
        script.onerror = () => {
          done();
          reject(new Error("jsonp poll failed"));
        };
        this._cleanup = done;
        script.src = `${this._url}/jsonp?c=${name}&t=${Date.now()}`;
        root.document.head.appendChild(script);
      });
    }

    async _flush() {
      if (this._sending || !this._outbox.length || this.readyState !== 1) return;
      this._sending = true;
      const body = JSON.stringify(this._outbox.splice(0));
      try {
        if (this.transport === "jsonp-polling") {
          await this._post("/jsonp_send", {
            headers: { "Content-Type": "application/x-www-form-urlencoded" },
            body: "d=" + encodeURIComponent(body),
          });
        } else {
          await this._post("/xhr_send", { headers: { "Content-Type": "text/plain" }, body });
        }
      } catch (err) {
        this._finish(1006, `send failed: ${err && err.message}`);
        return;
      } finally {
        this._sending = false;
      }
      this._flush();
    }
  }

  /** The http(s) URL of `path` on the server that `wsUrl` (from socketUrl) reaches. */
  function httpUrl(wsUrl, path) {
    const u = new URL(wsUrl);
    u.protocol = u.protocol === "wss:" ? "https:" : "http:";
    u.pathname = u.pathname.slice(0, -ENDPOINT.length) + path;
    u.search = "";
    return u.href.replace(/\/+$/, "");
  }

  /**
   * One subscribe() call. Several may share a channel; the server
   * subscription ends when the last of them unsubscribes.
   */
  class Subscription {
    constructor(client, channel, onMessage) {
      /** @type {string} */
      this.channel = channel;
      /** @type {boolean} false after unsubscribe() or a refused subscribe */
      this.active = true;
      /** @type {Error|null} why the server refused the subscription, if it did */
      this.error = null;
      this._client = client;
      this._onMessage = onMessage;
    }

    /** Stop receiving this channel's publications. Idempotent. */
    unsubscribe() {
      if (this.active) this._client._removeSubscription(this);
    }
  }

  /**
   * Per-channel delivery state shared by the Subscriptions of one channel (and
   * the Orbited key channel): the last position delivered, and whether the
   * server subscription is live on the current connection.
   */
  class Stream {
    constructor(channel) {
      this.channel = channel;
      /** @type {{offset: number, epoch: string}|null} */
      this.position = null;
      this.live = false; // a subscribe reply arrived on the current connection
      /** @type {Set<Subscription>} */
      this.subs = new Set();
    }
  }

  /**
   * A connection to orbiter that survives network failures.
   *
   * Events (on/off; each listener gets one `detail` object):
   *  - "state":         {state, previous}    every change of `client.state`
   *  - "connect":       {client, key}        connected; `client` is the server's client id,
   *                                          `key` the Orbited key if one was given
   *  - "disconnect":    {code, reason, reconnect}
   *  - "refresh":       {expiresIn}          the connection token was renewed
   *  - "error":         {error, channel?}    a command refused by the server (`error.code`)
   *  - "subscribed":    {channel, epoch, offset, recovered}  (recovered: undefined if new)
   *  - "unrecoverable": {channel, epoch, offset}  missed publications are lost: reload state
   *  - "message":       {data, channel, offset}   a publication to this client's Orbited key
   *  - "join", "leave":   {channel, user, info}     presence changes (channels with presence on)
   */
  class Client {
    /**
     * @param {string} [url] orbiter's address (see socketUrl); omitted: same origin
     * @param {object} [options] see DEFAULTS; `user`, `session`, `location` give the
     *   connection an Orbited key (`"user, session, /location"`)
     */
    constructor(url, options) {
      if (options === undefined && url !== null && typeof url === "object") {
        options = url;
        url = undefined;
      }
      this.options = Object.assign({}, DEFAULTS, options);
      /** @type {string} the WebSocket URL */
      this.url = socketUrl(url);
      const unknown = this.options.transports.filter((t) => !TRANSPORTS.includes(t));
      if (unknown.length || !this.options.transports.length) {
        throw new TypeError(`orbiter: transports must be some of ${TRANSPORTS.join(", ")}`);
      }
      /** @type {string|null} the transport of the current connection */
      this.transport = null;
      this._transportIndex = 0; // into options.transports: the one to try next
      this._established = false; // the server answered `connect` on the current connection
      this._proven = new Set(); // transports on which the server has answered `connect`
      this._failedTransports = []; // {transport, reason} failed before `connect` this round
      this._sockjsUrl = httpUrl(this.url, this.options.sockjsPath);
      /** @type {"connecting"|"connected"|"disconnected"} */
      this.state = "disconnected";
      /** @type {string|null} the server's id for the current connection */
      this.clientId = null;
      this._ws = null;
      this._handshaken = false; // `connect` was sent on the current socket
      this._nextId = 1;
      this._pending = new Map(); // command id -> {callback, timer}
      this._streams = new Map(); // channel -> Stream
      this._key = new Stream(null); // the Orbited key channel, named by the connect reply
      this._queue = []; // publishes waiting for a connection
      this._widgets = new Map(); // live element id -> Widget, on the current connection
      this._listeners = new Map();
      this._attempts = 0;
      this._reconnectTimer = null;
      this._pingTimer = null;
      this._stopped = false; // disconnect() was called, or the server said "do not reconnect"
      this._token = typeof this.options.token === "string" ? this.options.token : null;
      this._tokenExpiresAt = null; // when the cached token expires (ms), once the server said
      this._refreshTimer = null;
      this._onOnline = () => {
        if (this._reconnectTimer !== null) this._reconnectNow();
      };
      if (this.options.autoConnect !== false) this.connect();
    }

    // ------------------------------------------------------------------ public API

    /** Open the connection (if not open or opening); resumes after disconnect(). */
    connect() {
      this._stopped = false;
      if (this._ws) return;
      if (root.addEventListener) root.addEventListener("online", this._onOnline);
      this._reconnectNow();
    }

    /** Close the connection and stop reconnecting; queued publishes are rejected. */
    disconnect() {
      this._stopped = true;
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      if (root.removeEventListener) root.removeEventListener("online", this._onOnline);
      const ws = this._ws;
      if (ws) {
        try {
          ws.close(1000, "client disconnect");
        } catch (_) {
          /* already closing */
        }
        this._closed(ws, 1000, "client disconnect");
      } else {
        this._rejectQueue(ErrorCode.CLOSED, "client disconnected");
      }
    }

    /**
     * Receive the publications of `channel` from now on.
     * @param {string} channel
     * @param {(data: any, meta: {channel: string, offset: number, tags?: Object<string, string>}) => void} onMessage
     *   `meta.tags`: the name-value strings the publisher attached, if any
     * @returns {Subscription}
     */
    subscribe(channel, onMessage) {
      if (typeof channel !== "string" || !channel) throw new TypeError("channel must be a string");
      if (typeof onMessage !== "function") throw new TypeError("onMessage must be a function");
      const sub = new Subscription(this, channel, onMessage);
      let stream = this._streams.get(channel);
      if (!stream) {
        stream = new Stream(channel);
        this._streams.set(channel, stream);
        if (this._isOpen()) this._send([this._subscribeCommand(stream)]);
      }
      stream.subs.add(sub);
      return sub;
    }

    /**
     * Publish `data` (any JSON value) to `channel`, with `tags` (name-value strings), if given.
     * @param {string} channel
     * @param {any} data
     * @param {Object<string, string>} [tags]
     * @returns {Promise<{offset: number, epoch: string}>} rejects with an Error whose
     *   `code` is a server error code (e.g. 103: permission denied) or an ErrorCode
     */
    publish(channel, data, tags) {
      return new Promise((resolve, reject) => {
        if (this._stopped) {
          reject(makeError(ErrorCode.CLOSED, "client is disconnected; call connect() first"));
          return;
        }
        const size = byteLength(
          JSON.stringify({ id: 2 ** 53, op: "publish", channel, data, tags }),
        );
        if (size > this.options.maxMessageSize) {
          reject(makeError(ErrorCode.TOO_BIG, `message of ${size} bytes is too big`));
          return;
        }
        const item = { channel, data, tags, resolve, reject, timer: null };
        if (this._isOpen()) {
          this._send([this._publishCommand(item)]);
          return;
        }
        item.timer = setTimeout(() => {
          const i = this._queue.indexOf(item);
          if (i >= 0) this._queue.splice(i, 1);
          reject(makeError(ErrorCode.TIMEOUT, "no connection to send the message on"));
        }, this.options.publishQueueTimeout);
        this._queue.push(item);
      });
    }

    /**
     * Who is on `channel` (subscribed, on a channel with presence on).
     * @returns {Promise<{channel: string, clients: number, users: Array}>}
     */
    presence(channel) {
      return new Promise((resolve, reject) => {
        if (!this._isOpen()) {
          reject(makeError(ErrorCode.DISCONNECTED, "not connected"));
          return;
        }
        const fields = { op: "presence", channel };
        this._send([this._command(fields, (err, result) => (err ? reject(err) : resolve(result)))]);
      });
    }

    /**
     * A page of `channel`'s history (subscribed): the newest `limit` publications
     * (default 50), or with `before` (an offset) the newest `limit` older than it.
     * @param {string} channel
     * @param {{limit?: number, before?: number}} [options]
     * @returns {Promise<{channel: string, epoch: string, offset: number, recoverable: boolean,
     *   publications: Array<{offset: number, data: any, time: number, tags?: Object}>}>}
     */
    history(channel, options) {
      return new Promise((resolve, reject) => {
        if (!this._isOpen()) {
          reject(makeError(ErrorCode.DISCONNECTED, "not connected"));
          return;
        }
        const fields = Object.assign({ op: "history", channel }, options);
        this._send([this._command(fields, (err, result) => (err ? reject(err) : resolve(result)))]);
      });
    }

    /** Add a listener for `event`; returns the client. */
    on(event, fn) {
      if (!this._listeners.has(event)) this._listeners.set(event, new Set());
      this._listeners.get(event).add(fn);
      return this;
    }

    /** Remove a listener added with on(); returns the client. */
    off(event, fn) {
      const set = this._listeners.get(event);
      if (set) set.delete(fn);
      return this;
    }

    // ------------------------------------------------------------------ connection

    /** Commands can be sent: the socket is open and `connect` went first. */
    _isOpen() {
      return this._handshaken && this._ws !== null && this._ws.readyState === 1; // OPEN
    }

    _reconnectNow() {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      if (this._ws || this._stopped) return;
      this._setState("connecting");
      const transport = this.options.transports[this._transportIndex];
      let ws;
      try {
        ws =
          transport === "websocket"
            ? new root.WebSocket(this.url)
            : new SockJSSocket(this._sockjsUrl, transport);
      } catch (err) {
        this._emit("error", { error: err });
        this._stopped = true;
        this._setState("disconnected");
        return;
      }
      this._ws = ws;
      this.transport = transport;
      this._established = false;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => ws === this._ws && this._opened();
      ws.onmessage = (ev) => ws === this._ws && this._received(ev.data);
      ws.onclose = (ev) => this._closed(ws, ev.code, ev.reason);
      ws.onerror = () => {}; // a close event always follows
    }

    /** A connection token: the cached one, or a fresh one from the token function. */
    async _currentToken(fresh) {
      const source = this.options.token;
      if (typeof source !== "function") return source == null ? null : String(source);
      // A cached token near its end (as the server last said) is not worth a connect.
      const stale = this._tokenExpiresAt !== null && Date.now() > this._tokenExpiresAt - 1000;
      if (this._token !== null && !fresh && !stale) return this._token;
      const token = await source();
      if (typeof token !== "string" || !token) throw new TypeError("token function gave no token");
      this._token = token;
      this._tokenExpiresAt = null;
      return token;
    }

    /** The socket is open: get the token if one is needed, then connect. */
    _opened() {
      const ws = this._ws;
      if (this.options.token == null) return this._handshake(null);
      this._currentToken(false).then(
        (token) => ws === this._ws && this._handshake(token),
        (err) => {
          if (ws !== this._ws) return;
          this._emit("error", { error: makeError(ErrorCode.TIMEOUT, `no token: ${err && err.message}`) });
          this._abandon("no token");
        },
      );
    }

    /** Connect, resubscribe and flush queued publishes in one frame. */
    _handshake(token) {
      const connect = { op: "connect" };
      if (token) connect.token = token;
      for (const name of ["user", "session", "location"]) {
        if (this.options[name] != null) connect[name] = String(this.options[name]);
      }
      if (this.options.info !== undefined) connect.info = this.options.info;
      if (this._key.position) connect.since = this._key.position;
      if (this._failedTransports.length) {
        // What failed before this transport, for the server's debug log and /metrics.
        connect.fallback = { to: this.transport, failed: this._failedTransports.slice() };
      }
      const lines = [this._command(connect, (err, result) => this._connected(err, result))];
      for (const stream of this._streams.values()) lines.push(this._subscribeCommand(stream));
      const queued = this._queue.splice(0);
      for (const item of queued) {
        clearTimeout(item.timer);
        lines.push(this._publishCommand(item));
      }
      this._send(lines);
      this._handshaken = true;
    }

    _connected(err, result) {
      if (err) {
        // The server closes the socket next (3501) unless the connection was lost.
        if (err.code === 111) this._token = null; // expired: the next connection gets a fresh one
        if (err.code !== ErrorCode.DISCONNECTED) this._emit("error", { error: err });
        return;
      }
      this._scheduleRefresh(result.expires_in);
      const ws = this._ws;
      this._attempts = 0;
      this._established = true;
      this._proven.add(this.transport);
      this._failedTransports = [];
      this.clientId = result.client;
      this._setState("connected");
      this._emit("connect", { client: result.client, key: result.key ? result.key.key : undefined });
      if (result.key && ws === this._ws) {
        this._key.channel = result.key.channel;
        this._subscribed(this._key, result.key);
      }
      this._startPings();
    }

    /** The socket closed (or is given up on): fail what waits, then maybe reconnect. */
    _closed(ws, code, reason) {
      if (ws !== this._ws) return;
      ws.onopen = ws.onmessage = ws.onclose = null;
      this._ws = null;
      this._handshaken = false;
      clearInterval(this._pingTimer);
      clearTimeout(this._refreshTimer);
      this._refreshTimer = null;
      this._key.live = false;
      for (const stream of this._streams.values()) stream.live = false;
      this._widgets.clear(); // elements live as long as their connection
      const pending = Array.from(this._pending.values());
      this._pending.clear();
      const lost = makeError(ErrorCode.DISCONNECTED, `connection closed (${code})`);
      for (const p of pending) {
        clearTimeout(p.timer);
        p.callback(lost, undefined);
      }
      if (code >= 3500 && code <= 3999) this._stopped = true;
      if (code === 3002) {
        // Token expired: only a token function can give a new one.
        if (typeof this.options.token === "function") this._token = null;
        else this._stopped = true;
      }
      const reconnect = !this._stopped;
      this._setState("disconnected");
      this._emit("disconnect", { code, reason: reason || "", reconnect });
      if (!reconnect) {
        this._rejectQueue(ErrorCode.CLOSED, `connection closed (${code}) and not reopened`);
      } else if (!this._stopped && !this._ws && this._reconnectTimer === null) {
        // unless a "disconnect" listener already acted
        if (this._established || !this._fallBack(code, reason)) this._scheduleReconnect();
      }
    }

    /** Give up on a connection that stopped answering; it is reopened like any lost one. */
    _abandon(reason) {
      const ws = this._ws;
      if (!ws) return;
      try {
        ws.close();
      } catch (_) {
        /* ignore */
      }
      this._closed(ws, CLOSE_NO_REPLY, reason);
    }

    /**
     * The connection failed before the server answered `connect`: try the next
     * transport at once. At the end of the list start over, after a backoff.
     * A transport that has worked before is kept: its failure is an outage
     * (retried with backoff), not a network that blocks it. The failures of a round
     * are reported in the `connect` that gets through (`fallback`, docs/protocol.md).
     * @param {number} code the close code of the failed connection
     * @param {string} [reason] its close reason
     * @returns {boolean} whether a next transport is being tried
     */
    _fallBack(code, reason) {
      if (this._proven.has(this.transport)) return false;
      this._transportIndex += 1;
      if (this._transportIndex < this.options.transports.length) {
        const failed = { transport: this.transport, reason: failureReason(code, reason) };
        this._failedTransports.push(failed);
        this._reconnectTimer = setTimeout(() => this._reconnectNow(), 0);
        return true;
      }
      this._transportIndex = 0;
      this._failedTransports = [];
      return false;
    }

    /** Exponential backoff with full jitter: uniform in [0, min(max, min * 2^attempt)]. */
    _scheduleReconnect() {
      const { minReconnectDelay: min, maxReconnectDelay: max } = this.options;
      const cap = Math.min(max, min * 2 ** Math.min(this._attempts, 30));
      this._attempts += 1;
      this._reconnectTimer = setTimeout(() => this._reconnectNow(), Math.random() * cap);
    }

    /** Renew the token before it expires (`expires_in` seconds from now), on this connection. */
    _scheduleRefresh(expiresIn) {
      clearTimeout(this._refreshTimer);
      this._refreshTimer = null;
      this._tokenExpiresAt = typeof expiresIn === "number" ? Date.now() + expiresIn * 1000 : null;
      if (typeof expiresIn !== "number" || typeof this.options.token !== "function") return;
      this._refreshTimer = setTimeout(() => this._refresh(), Math.max(0, expiresIn * 750));
    }

    _refresh() {
      this._refreshTimer = null;
      const ws = this._ws;
      this._currentToken(true).then(
        (token) => {
          if (ws !== this._ws || !this._isOpen()) return;
          const line = this._command({ op: "refresh", token }, (err, result) => {
            if (err) {
              if (err.code !== ErrorCode.DISCONNECTED) this._emit("error", { error: err });
              return;
            }
            this._emit("refresh", { expiresIn: result.expires_in });
            this._scheduleRefresh(result.expires_in);
          });
          this._send([line]);
        },
        (error) => {
          // Try again shortly; if the token runs out first the server closes with 3002.
          this._emit("error", { error });
          if (ws === this._ws) this._refreshTimer = setTimeout(() => this._refresh(), 1000);
        },
      );
    }

    _startPings() {
      clearInterval(this._pingTimer);
      if (!(this.options.pingInterval > 0)) return;
      this._pingTimer = setInterval(() => {
        if (this._isOpen()) this._send([this._command({ op: "ping" }, () => {})]);
      }, this.options.pingInterval);
    }

    // ------------------------------------------------------------------ commands

    /**
     * Register a command and return its JSON line; `callback(err, result)` is
     * called once, with the reply or with an ErrorCode.DISCONNECTED error.
     */
    _command(fields, callback) {
      const id = this._nextId++;
      const timer = setTimeout(() => {
        this._abandon(`no reply from the server in ${this.options.replyTimeout} ms`);
      }, this.options.replyTimeout);
      this._pending.set(id, { callback, timer });
      return JSON.stringify(Object.assign({ id }, fields));
    }

    _subscribeCommand(stream) {
      const fields = { op: "subscribe", channel: stream.channel };
      if (stream.position) fields.since = stream.position;
      return this._command(fields, (err, result) => {
        if (this._streams.get(stream.channel) !== stream) return; // unsubscribed meanwhile
        if (!err) {
          this._subscribed(stream, result);
        } else if (err.code !== ErrorCode.DISCONNECTED) {
          this._streams.delete(stream.channel);
          for (const sub of stream.subs) {
            sub.active = false;
            sub.error = err;
          }
          this._emit("error", { error: err, channel: stream.channel });
        }
      });
    }

    _publishCommand(item) {
      const fields = { op: "publish", channel: item.channel, data: item.data };
      if (item.tags) fields.tags = item.tags;
      return this._command(fields, (err, result) => (err ? item.reject(err) : item.resolve(result)));
    }

    /** Send command lines, as few frames as fit in maxMessageSize. */
    _send(lines) {
      const ws = this._ws;
      let frame = "";
      let size = 0;
      const flush = () => {
        try {
          ws.send(frame);
        } catch (_) {
          /* the close event will fail the pending commands */
        }
      };
      for (const line of lines) {
        const n = byteLength(line) + 1;
        if (frame && size + n > this.options.maxMessageSize) {
          flush();
          frame = "";
          size = 0;
        }
        frame = frame ? frame + "\n" + line : line;
        size += n;
      }
      if (frame) flush();
    }

    _rejectQueue(code, message) {
      for (const item of this._queue.splice(0)) {
        clearTimeout(item.timer);
        item.reject(makeError(code, message));
      }
    }

    // ------------------------------------------------------------------ incoming

    /** One frame: one or more JSON messages separated by "\n". */
    _received(data) {
      const text = typeof data === "string" ? data : new TextDecoder().decode(data);
      for (const line of text.split("\n")) {
        if (!line.trim()) continue;
        let msg;
        try {
          msg = JSON.parse(line);
        } catch (_) {
          continue;
        }
        if (msg && msg.push === "pub") this._push(msg);
        else if (msg && (msg.push === "join" || msg.push === "leave")) this._presencePush(msg);
        else if (msg && msg.push === "unsubscribed") this._unsubscribedPush(msg);
        else if (msg && msg.push === "call") this._callPush(msg);
        else if (msg && "id" in msg) this._reply(msg);
        if (!this._ws) return; // a callback disconnected the client
      }
    }

    _reply(msg) {
      const p = msg.id == null ? undefined : this._pending.get(msg.id);
      const err = msg.error ? makeError(msg.error.code, msg.error.message) : null;
      if (err && msg.error.type !== undefined) err.type = msg.error.type; // a live call's exception
      if (err && msg.error.traceback !== undefined) err.remoteTraceback = msg.error.traceback;
      if (!p) {
        if (err) this._emit("error", { error: err });
        return;
      }
      this._pending.delete(msg.id);
      clearTimeout(p.timer);
      p.callback(err, msg.result);
    }

    _push(msg) {
      const stream = msg.channel === this._key.channel ? this._key : this._streams.get(msg.channel);
      if (stream && stream.live) this._deliver(stream, msg.offset, msg.data, msg.tags);
    }

    /** The server ended a subscription (a refreshed token no longer grants it). */
    _unsubscribedPush(msg) {
      const stream = this._streams.get(msg.channel);
      if (!stream) return;
      this._streams.delete(msg.channel);
      const error = makeError(103, msg.reason || "unsubscribed by the server");
      for (const sub of stream.subs) {
        sub.active = false;
        sub.error = error;
      }
      this._emit("error", { error, channel: msg.channel });
    }

    _presencePush(msg) {
      if (this._streams.has(msg.channel)) {
        this._emit(msg.push, { channel: msg.channel, user: msg.user, info: msg.info });
      }
    }

    /** A subscribe (or connect-with-key) result: replay recovered publications, then go live. */
    _subscribed(stream, result) {
      stream.live = true;
      const position = { offset: result.offset, epoch: result.epoch };
      if (result.recovered === false) {
        stream.position = position;
        this._emit("unrecoverable", { channel: stream.channel, ...position });
      } else {
        for (const pub of result.publications || []) {
          this._deliver(stream, pub.offset, pub.data, pub.tags);
        }
        const last = stream.position;
        if (!last || last.epoch !== position.epoch || last.offset < position.offset) {
          stream.position = position;
        }
      }
      this._emit("subscribed", {
        channel: stream.channel,
        ...position,
        recovered: result.recovered, // undefined on a first subscribe (no `since`)
      });
    }

    /** Deliver one publication unless it was already delivered. */
    _deliver(stream, offset, data, tags) {
      const last = stream.position;
      if (last && offset <= last.offset) return;
      stream.position = { offset, epoch: last ? last.epoch : "" };
      const meta = tags ? { channel: stream.channel, offset, tags } : { channel: stream.channel, offset };
      if (stream === this._key) {
        this._emit("message", { data, ...meta });
        return;
      }
      for (const sub of stream.subs) safely(sub._onMessage, data, meta);
    }

    _removeSubscription(sub) {
      sub.active = false;
      const stream = this._streams.get(sub.channel);
      if (!stream || !stream.subs.delete(sub) || stream.subs.size) return;
      this._streams.delete(sub.channel);
      if (this._isOpen()) {
        this._send([this._command({ op: "unsubscribe", channel: sub.channel }, () => {})]);
      }
    }

    // ------------------------------------------------------------------ live elements

    /**
     * Attach `widget` to a server element of `mount` (docs/live.md): the one it had
     * before a reconnect, while the server keeps it, else a new one. `done(err, result)`
     * is called with the reply, before any call the server makes on the widget.
     */
    _attach(mount, widget, done) {
      if (!this._isOpen()) {
        done(makeError(ErrorCode.DISCONNECTED, "not connected"));
        return;
      }
      const fields = { op: "attach", mount };
      if (widget._resume) fields.resume = widget._resume;
      const line = this._command(fields, (err, result) => {
        if (!err) {
          widget.element = result.element;
          widget._resume = result.resume;
          this._widgets.set(result.element, widget);
        }
        done(err, result);
      });
      this._send([line]);
    }

    /**
     * Call `method` of the app server through orbiter's RPC proxy (`[rpc] url`,
     * docs/live.md), which tells the app who is calling (the user from the token,
     * the browser's cookies).
     * @returns {Promise<any>} the app's result; rejects with an Error whose `code` is
     *   113 (the app's error, with `type`), 114 (no answer in rpc.timeout), 115 (the
     *   app server could not answer), 112 (no proxy), or an ErrorCode
     */
    rpc(method, data, timeout = this.options.rpcTimeout) {
      if (!this._isOpen()) return Promise.reject(makeError(ErrorCode.DISCONNECTED, "not connected"));
      return this._longCommand({ op: "rpc", method: String(method), data }, timeout);
    }

    /** A widget's call of its element's exposed `method`: a promise of its value. */
    _callElement(widget, method, args, timeout) {
      if (!this._isOpen() || this._widgets.get(widget.element) !== widget) {
        const err = makeError(ErrorCode.DISCONNECTED, "the widget is not attached to a connection");
        return Promise.reject(err);
      }
      return this._longCommand({ op: "call", element: widget.element, method, args }, timeout);
    }

    /** A command that may take long: its own time-out rejects it, the connection stays. */
    _longCommand(fields, timeout) {
      return new Promise((resolve, reject) => {
        const what = fields.op === "rpc" ? `rpc ${fields.method}` : `${fields.method}()`;
        const text = JSON.stringify(Object.assign({ id: 2 ** 53 }, fields));
        if (byteLength(text) > this.options.maxMessageSize) {
          reject(makeError(ErrorCode.TOO_BIG, `${what} of ${byteLength(text)} bytes is too big`));
          return;
        }
        const id = this._nextId++;
        const timer = setTimeout(() => {
          if (this._pending.delete(id)) {
            reject(makeError(ErrorCode.TIMEOUT, `no answer to ${what} in ${timeout} ms`));
          }
        }, timeout);
        const callback = (err, result) => {
          if (!err) resolve(result.value);
          else reject(err);
        };
        this._pending.set(id, { callback, timer });
        this._send([JSON.stringify(Object.assign({ id }, fields))]);
      });
    }

    /** The server calls a widget method; the answer goes back as a `return` op. */
    _callPush(msg) {
      const ws = this._ws;
      const answer = (fields) => {
        if (ws !== this._ws || !this._isOpen()) return; // the server failed the call already
        let line;
        try {
          line = JSON.stringify(Object.assign({ op: "return", call: msg.call }, fields));
        } catch (err) {
          line = JSON.stringify({
            op: "return",
            call: msg.call,
            error: { type: "TypeError", message: `the value cannot be sent: ${err.message}` },
          });
        }
        this._send([line]);
      };
      const widget = this._widgets.get(msg.element);
      let result;
      try {
        if (!widget) throw new ReferenceError(`no widget for element ${msg.element}`);
        result = widget._serverCall(msg.method, Array.isArray(msg.args) ? msg.args : []);
      } catch (err) {
        result = Promise.reject(err);
      }
      Promise.resolve(result).then(
        (value) => answer(value === undefined ? {} : { value }),
        (err) => {
          const type = (err && err.name) || "Error";
          const message = err && err.message !== undefined ? String(err.message) : String(err);
          answer({ error: { type, message } });
        },
      );
    }

    // ------------------------------------------------------------------ events

    _setState(state) {
      const previous = this.state;
      if (state === previous) return;
      this.state = state;
      this._emit("state", { state, previous });
    }

    _emit(event, detail) {
      const set = this._listeners.get(event);
      if (set) for (const fn of Array.from(set)) safely(fn, detail);
    }
  }

  /**
   * Orbited 0.3 compatibility: `Orbited.connect(callback, user, location, session)`
   * joins the Orbited key "user, session, /location"; every event sent to that key
   * (`POST /api/event`, pyorbited's `event(keys, message)`) calls `callback(data)`.
   * Set `Orbited.settings` ({hostname, port, protocol}) to reach another host, and
   * `Orbited.settings.token` (a token or a function, as Client's `token`) when the
   * server needs one: the token must grant the key (docs/security.md).
   */
  const Orbited = {
    settings: { hostname: null, port: null, protocol: null, token: undefined },

    /** @returns {Client} */
    connect(callback, user, location, session) {
      const client = new Client(orbitedUrl(Orbited.settings), {
        user: String(user),
        location: String(location),
        session: session == null ? "0" : String(session),
        token: Orbited.settings.token,
      });
      client.on("message", (detail) => callback(detail.data));
      return client;
    },
  };

  function orbitedUrl(s) {
    if (!s || (!s.hostname && !s.port && !s.protocol)) return undefined; // same origin
    const here = root.location || { protocol: "http:", hostname: "localhost", port: "" };
    const protocol = String(s.protocol || here.protocol).replace(/:.*$/, "");
    let host = String(s.hostname || here.hostname);
    if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`; // IPv6
    const port = s.port || (s.hostname ? "" : here.port);
    return `${protocol}://${host}${port ? ":" + port : ""}`;
  }

  /**
   * A live element's browser half (Nevow Athena's widget; docs/live.md). Subclass it,
   * and `callRemote(name, ...args)` calls the server element's `@expose`d method
   * (a promise of its return value; it rejects with an Error whose `code` is a
   * server error code, 113 with `type` when the method raised). The server may
   * call the subclass's own methods (not those of Widget, nor names starting
   * with "_"); a method's return value, or a promise of it, is the answer.
   *
   *     class Echo extends Orbiter.Widget {
   *       show(text) { this.nodeByAttribute("name", "out").textContent = text; }
   *     }
   *     Orbiter.Widget.start(Echo, document.getElementById("echo"), { mount: "/" });
   */
  class Widget {
    /** @param {Element} node the element's HTML */
    constructor(node) {
      this.node = node;
      /** @type {Client|null} */
      this.client = null;
      /** @type {number|null} the server element's id on the current connection */
      this.element = null;
      this._resume = null; // the element's token, to get it back after a reconnect
      this.callTimeout = 30000;
    }

    /** Call the server element's exposed method `name`. */
    callRemote(name, ...args) {
      if (!this.client) return Promise.reject(makeError(ErrorCode.DISCONNECTED, "not attached"));
      return this.client._callElement(this, String(name), args, this.callTimeout);
    }

    /** The first node under the widget's whose attribute `attr` is `value`. */
    nodeByAttribute(attr, value) {
      for (const n of this.node.querySelectorAll(`[${attr}]`)) {
        if (n.getAttribute(attr) === value) return n;
      }
      throw new Error(`no node with ${attr}="${value}"`);
    }

    /** The widget started on `node` (by Widget.start), or undefined. */
    static get(node) {
      return node.orbiterWidget;
    }

    /**
     * Called after each attach; `info.resumed` is true when a reconnect found the same
     * server element (within the server's live.grace_period), false for a new one.
     * @param {{resumed: boolean}} info
     */
    attached(info) {}

    _serverCall(method, args) {
      let proto = Object.getPrototypeOf(this);
      if (typeof method === "string" && method && !method.startsWith("_") && method !== "constructor") {
        for (; proto && proto !== Widget.prototype; proto = Object.getPrototypeOf(proto)) {
          const desc = Object.getOwnPropertyDescriptor(proto, method);
          if (desc && typeof desc.value === "function") return desc.value.apply(this, args);
        }
      }
      throw new TypeError(`the widget has no method ${JSON.stringify(method)} the server may call`);
    }

    /**
     * Make a `cls` widget on `node` and attach it to a new element of `options.mount`
     * on a connection (`options.client`, or a new Client with `options.clientOptions`;
     * a page's `?transports=a,b` picks the transports), again after each reconnect.
     * @returns {Promise<Widget>} once first attached
     */
    static start(cls, node, options = {}) {
      if (typeof cls === "string") {
        cls = cls.split(".").reduce((o, name) => (o == null ? undefined : o[name]), root);
      }
      if (typeof cls !== "function") throw new TypeError("Widget.start needs a widget class");
      const clientOptions = Object.assign({}, options.clientOptions);
      const query = root.location ? new URLSearchParams(root.location.search) : null;
      if (query && query.get("transports")) clientOptions.transports = query.get("transports").split(",");
      const client = options.client || new Client(options.url, clientOptions);
      const widget = new cls(node);
      widget.client = client;
      node.orbiterWidget = widget; // Widget.get(node)
      const mount = options.mount || "/";
      return new Promise((resolve, reject) => {
        let first = true;
        const attach = () =>
          client._attach(mount, widget, (err, result) => {
            if (err) {
              if (err.code !== ErrorCode.DISCONNECTED) client._emit("error", { error: err });
              if (first && err.code !== ErrorCode.DISCONNECTED) reject(err);
              return;
            }
            safely(() => widget.attached({ resumed: result.resumed === true }));
            if (first) resolve(widget);
            first = false;
          });
        client.on("connect", attach);
        if (client.state === "connected") attach();
      });
    }
  }

  root.Orbiter = Object.freeze({
    Client,
    Widget,
    Subscription,
    ErrorCode,
    socketUrl,
    SockJSSocket, // the WebSocket-like SockJS session; the TCPSocket section uses it too
    version: "0.1.0",
  });
  root.Orbited = Orbited;
})(typeof globalThis !== "undefined" ? globalThis : self);

// ============================================================================
// TCPSocket: a TCP connection through orbiter's proxy (/tcp; docs/protocol.md,
// "TCP proxy"). Its own section: it only adds to the globals defined above.
// ============================================================================
(function (root) {
  "use strict";

  const TCP_PATH = "/tcp";
  /** The /tcp subprotocol of orbiter's framing: {"type":"open"} first (none: plain websockify). */
  const TCP_SUBPROTOCOL = "orbiter.tcp";
  /** This page's id for the server's per-page limit (tcp.max_per_session). */
  const PAGE_SESSION = Array.from((root.crypto || globalThis.crypto).getRandomValues(new Uint8Array(12)), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
  /** Close code when the WebSocket failed before the server said anything (blocked, down). */
  const CLOSE_ABNORMAL = 1006;

  /** The documented close codes of the proxy (server side: orbiter/services/tcp_proxy.py). */
  const TCPCloseCode = Object.freeze({
    BACKEND_CLOSED: 1000,
    SHUTDOWN: 1001,
    TOO_BIG: 1009,
    BAD_REQUEST: 4400,
    UNAUTHORIZED: 4401, // the server needs a connection token: missing, not valid or expired
    DENIED: 4403,
    UNKNOWN_HOST: 4404,
    IDLE: 4408,
    LIMIT: 4429,
    BACKEND_ERROR: 4500,
    REFUSED: 4502,
    TIMEOUT: 4504,
  });

  /**
   * The ws(s):// URL of the proxy for `host:port`, from a base URL (http(s)/ws(s)),
   * or same origin when there is none; with `?token=` when a token is given.
   */
  function tcpUrl(base, host, port, token) {
    const here = root.location ? root.location.href : "http://localhost/";
    const u = new URL(base == null || base === "" ? "/" : String(base), here);
    if (u.protocol === "http:") u.protocol = "ws:";
    else if (u.protocol === "https:") u.protocol = "wss:";
    else if (u.protocol !== "ws:" && u.protocol !== "wss:") {
      throw new TypeError(`orbiter: unsupported URL ${u.href}`);
    }
    u.pathname = u.pathname.replace(/\/+$/, "") + TCP_PATH;
    u.search = "";
    u.searchParams.set("host", String(host));
    u.searchParams.set("port", String(port));
    u.searchParams.set("session", PAGE_SESSION);
    if (token) u.searchParams.set("token", String(token));
    u.hash = "";
    return u.href;
  }

  /** The base URL that Orbited.settings ({hostname, port, protocol}) describe; "" = same origin. */
  function settingsBase(settings) {
    if (!settings || (!settings.hostname && !settings.port && !settings.protocol)) return "";
    const here = root.location || { protocol: "http:", hostname: "localhost", port: "" };
    const protocol = String(settings.protocol || here.protocol).replace(/:.*$/, "");
    let host = String(settings.hostname || here.hostname);
    if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
    const port = settings.port || (settings.hostname ? "" : here.port);
    return `${protocol}://${host}${port ? ":" + port : ""}`;
  }

  const toBytes = (data, binaryString) => {
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const text = String(data);
    if (!binaryString) return new TextEncoder().encode(text);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
    return bytes;
  };

  /** Bytes as a "binary string" (one char per byte, codes 0-255), as Orbited's binary mode. */
  const toBinaryString = (bytes) => {
    let out = "";
    for (let i = 0; i < bytes.length; i += 8192) {
      out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    }
    return out;
  };

  /** Under the largest message the server takes (limits.max_message_size); larger sends are split. */
  const MAX_CHUNK = 60000;
  const SOCKJS_CHUNK = 45000; // 60000 characters of base64

  /** The http(s):// base URL (no trailing slash) for `base`, or the page's origin. */
  function httpBase(base) {
    const here = root.location ? root.location.href : "http://localhost/";
    const u = new URL(base == null || base === "" ? "/" : String(base), here);
    if (u.protocol === "ws:") u.protocol = "http:";
    else if (u.protocol === "wss:") u.protocol = "https:";
    return u.origin + u.pathname.replace(/\/+$/, "");
  }

  const bytesToBase64 = (bytes) => root.btoa(toBinaryString(bytes));
  const base64ToBytes = (text) => toBytes(root.atob(text), true);

  /** Transports tried in order; the SockJS ones carry the proxy where WebSocket is blocked. */
  const TCP_TRANSPORTS = Object.freeze(["websocket", "xhr-streaming", "xhr-polling"]);

  /** Why a transport failed, in a fallback report: printable ASCII, at most 120 characters
   * (the server's limit; the Client's section words its reports the same way). */
  const tcpFailureReason = (code, reason) =>
    `closed ${code}${reason ? `: ${reason}` : ""}`.replace(/[^\x20-\x7e]/g, "?").slice(0, 120);

  /**
   * One proxied connection: the common core of both APIs. Over a WebSocket at
   * /tcp (binary frames), or over a SockJS session at /tcp/sockjs (base64
   * messages) when the WebSocket fails before the server answered (blocked).
   * Calls hooks.open(), hooks.data(Uint8Array), hooks.close(code, reason) (once).
   *
   * `token` (when the server requires auth): a connection token, or a function
   * returning one or a promise of one (as the Client's), fetched once before
   * connecting; sent as ?token= over WebSocket, in the "connect" message over SockJS.
   * The transports that failed before the one that got through are reported the same
   * two ways ({to, failed: [{transport, reason}]}: ?fallback= JSON, or the "connect"
   * message's "fallback"), for the server's debug log and /metrics.
   */
  class TCPChannel {
    constructor(base, host, port, hooks, transports, token) {
      this._base = base;
      this._host = host;
      this._port = port;
      this._hooks = hooks;
      this._transports = Array.from(transports || TCP_TRANSPORTS);
      this._open = false;
      this._done = false;
      this._failed = []; // {transport, reason} that failed before an answer, in order
      this.transport = null;
      this.ws = null;
      this._token = null;
      if (token == null) {
        this._attempt(0);
        return;
      }
      Promise.resolve()
        .then(() => (typeof token === "function" ? token() : token))
        .then((value) => {
          if (typeof value !== "string" || !value) throw new TypeError("the token function gave no token");
          return value;
        })
        .then(
          (value) => {
            if (this._done) return;
            this._token = value;
            this._attempt(0);
          },
          (err) => this._finish(TCPCloseCode.UNAUTHORIZED, `no token: ${err && err.message}`),
        );
    }

    _attempt(index) {
      const transport = this._transports[index];
      const sockjs = transport !== "websocket";
      let answered = false;
      this.transport = transport;
      const fallback = this._failed.length ? { to: transport, failed: this._failed.slice() } : null;
      let ws;
      try {
        if (!sockjs) {
          const url = new URL(tcpUrl(this._base, this._host, this._port, this._token));
          if (fallback) url.searchParams.set("fallback", JSON.stringify(fallback));
          ws = new WebSocket(url.href, TCP_SUBPROTOCOL);
          ws.binaryType = "arraybuffer";
        } else {
          ws = new root.Orbiter.SockJSSocket(httpBase(this._base) + TCP_PATH + "/sockjs", transport);
          ws.onopen = () =>
            ws.send(
              JSON.stringify({
                type: "connect",
                host: String(this._host),
                port: Number(this._port),
                session: PAGE_SESSION,
                ...(this._token ? { token: this._token } : {}),
                ...(fallback ? { fallback } : {}),
              }),
            );
        }
      } catch (err) {
        if (index + 1 < this._transports.length) {
          this._failed.push({ transport, reason: tcpFailureReason(CLOSE_ABNORMAL, String(err && err.message)) });
          return this._attempt(index + 1);
        }
        return this._finish(CLOSE_ABNORMAL, String(err && err.message));
      }
      this.ws = ws;
      ws.onmessage = (ev) => {
        if (this._done || this.ws !== ws) return;
        answered = true;
        if (!this._open) {
          // The first message of either framing: {"type":"open","target":...}.
          this._open = true;
          this._hooks.open();
          return;
        }
        if (sockjs) this._hooks.data(base64ToBytes(ev.data));
        else if (typeof ev.data !== "string") this._hooks.data(new Uint8Array(ev.data));
      };
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        const code = ev.code || CLOSE_ABNORMAL;
        if (!answered && code === CLOSE_ABNORMAL && index + 1 < this._transports.length) {
          this._failed.push({ transport, reason: tcpFailureReason(code, ev.reason) });
          this._attempt(index + 1); // blocked or unreachable this way: try the next transport
          return;
        }
        this._finish(code, ev.reason || "");
      };
      if (!sockjs) ws.onerror = () => {};
    }

    get isOpen() {
      return this._open && !this._done;
    }

    /** Bytes queued in the browser, not yet sent (for the caller's own flow control). */
    get bufferedAmount() {
      return this.ws && typeof this.ws.bufferedAmount === "number" ? this.ws.bufferedAmount : 0;
    }

    send(bytes) {
      if (!this.isOpen) throw new Error("orbiter: the TCP connection is not open");
      const sockjs = this.transport !== "websocket";
      const chunk = sockjs ? SOCKJS_CHUNK : MAX_CHUNK;
      for (let i = 0; i < bytes.length; i += chunk) {
        const part = bytes.subarray(i, Math.min(i + chunk, bytes.length));
        this.ws.send(sockjs ? bytesToBase64(part) : part);
      }
    }

    close() {
      if (this._done) return;
      try {
        if (this.ws) this.ws.close(1000);
      } catch (err) {
        /* already closing */
      }
      this._finish(1000, "closed by the page");
    }

    _finish(code, reason) {
      if (this._done) return;
      this._done = true;
      this._hooks.close(code, reason);
    }
  }

  /**
   * Orbited 0.7's TCPSocket, as the seeds use it:
   *
   *     const sock = new Orbited.TCPSocket();
   *     sock.onopen = () => sock.send("NICK ann\r\n");
   *     sock.onread = (data) => ...;     // a string
   *     sock.onclose = (code) => ...;    // a close code: TCPSocket.CloseCode
   *     sock.open("localhost", 6667);    // open(host, port, isBinary)
   *
   * Text mode (the default) sends strings as UTF-8 and hands onread decoded
   * UTF-8 (a character split across reads is kept until it is whole).
   * Binary mode (`open(host, port, true)`) uses "binary strings", one char
   * per byte. send() also takes Uint8Array / ArrayBuffer in either mode.
   *
   * When the server requires auth: `new Orbited.TCPSocket({ token })`, a token or
   * a function returning one (or a promise of one), as the Client's; without it,
   * `Orbited.settings.token`. A missing, bad or expired token closes with 4401.
   */
  class TCPSocket {
    constructor(options) {
      this._options = options || {};
      this.readyState = TCPSocket.READY_STATE_INITIALIZED;
      this.onopen = null;
      this.onread = null;
      this.onclose = null;
      this._channel = null;
      this._binary = false;
      this._decoder = null;
    }

    open(host, port, isBinary) {
      if (this.readyState !== TCPSocket.READY_STATE_INITIALIZED) {
        throw new Error("orbiter: TCPSocket.open() may be called once");
      }
      this._binary = !!isBinary;
      this._decoder = this._binary ? null : new TextDecoder("utf-8");
      this.readyState = TCPSocket.READY_STATE_OPENING;
      const settings = (root.Orbited && root.Orbited.settings) || {};
      const token = this._options.token != null ? this._options.token : settings.token;
      this._channel = new TCPChannel(settingsBase(settings), host, port, {
        open: () => {
          this.readyState = TCPSocket.READY_STATE_OPEN;
          if (this.onopen) this.onopen();
        },
        data: (bytes) => {
          const data = this._binary ? toBinaryString(bytes) : this._decoder.decode(bytes, { stream: true });
          if (data && this.onread) this.onread(data);
        },
        close: (code) => {
          this.readyState = TCPSocket.READY_STATE_CLOSED;
          if (this.onclose) this.onclose(code);
        },
      }, settings.transports, token);
    }

    send(data) {
      if (this.readyState !== TCPSocket.READY_STATE_OPEN) {
        throw new Error("orbiter: TCPSocket.send() before onopen or after close");
      }
      this._channel.send(toBytes(data, this._binary));
    }

    close() {
      if (this._channel) this._channel.close();
      else this.readyState = TCPSocket.READY_STATE_CLOSED;
    }
  }
  TCPSocket.READY_STATE_INITIALIZED = 1;
  TCPSocket.READY_STATE_OPENING = 2;
  TCPSocket.READY_STATE_OPEN = 3;
  TCPSocket.READY_STATE_CLOSING = 4;
  TCPSocket.READY_STATE_CLOSED = 5;
  TCPSocket.CloseCode = TCPCloseCode;

  /**
   * The modern API: a promise for an open connection with streams.
   *
   *     const conn = await Orbiter.connectTCP("localhost", 6667, { url: "http://host:8000" });
   *     const writer = conn.writable.getWriter();
   *     await writer.write(new TextEncoder().encode("NICK ann\r\n"));
   *     for await (const chunk of conn.readable) { ... }   // Uint8Array chunks
   *     const { code, reason } = await conn.closed;
   *
   * `options.token`: a connection token or a function giving one, when the server needs it.
   * `options.transports` (default ["websocket", "xhr-streaming", "xhr-polling"]) are
   * tried in order while a transport fails before the server answers (WebSocket blocked);
   * the seed API reads the same list from `Orbited.settings.transports`.
   *
   * The promise rejects with an Error whose `code` is the close code when the
   * connection cannot be opened (denied 4403, unknown host 4404, refused 4502, ...).
   * `writable` waits while more than `highWaterMark` bytes (default 1 MiB) are
   * still queued in the browser, so a slow backend slows the writer.
   */
  function connectTCP(host, port, options) {
    const opts = options || {};
    const highWaterMark = opts.highWaterMark || 1048576;
    return new Promise((resolve, reject) => {
      let controller = null;
      let settled = false;
      let resolveClosed;
      const closed = new Promise((r) => (resolveClosed = r));
      const channel = new TCPChannel(opts.url, host, port, {
        open: () => {
          settled = true;
          resolve(connection);
        },
        data: (bytes) => {
          if (controller) controller.enqueue(bytes);
        },
        close: (code, reason) => {
          if (controller) {
            try {
              controller.close();
            } catch (err) {
              /* cancelled by the reader */
            }
          }
          resolveClosed({ code, reason });
          if (!settled) {
            settled = true;
            const err = new Error(`orbiter: TCP connection to ${host}:${port} failed: ${reason || code}`);
            err.name = "OrbiterError";
            err.code = code;
            reject(err);
          }
        },
      }, opts.transports, opts.token);
      const waitForRoom = async () => {
        for (let i = 0; channel.bufferedAmount > highWaterMark && channel.isOpen; i++) {
          await new Promise((r) => setTimeout(r, Math.min(5 * (i + 1), 100)));
        }
      };
      const connection = {
        readable: new ReadableStream({
          start(c) {
            controller = c;
          },
          cancel() {
            channel.close();
          },
        }),
        writable: new WritableStream({
          async write(chunk) {
            await waitForRoom();
            channel.send(toBytes(chunk, false));
          },
          close() {
            channel.close();
          },
          abort() {
            channel.close();
          },
        }),
        send(data) {
          channel.send(toBytes(data, false));
        },
        close() {
          channel.close();
        },
        closed,
      };
    });
  }

  /**
   * A proxied TCP connection behind the WebSocket interface (readyState, binaryType,
   * send, close, onopen, onmessage({data: ArrayBuffer}), onclose({code, reason})),
   * for clients written against WebSocket: `STOMPClient({transport: "tcp"})` uses it.
   * `options.token` (else `Orbited.settings.token`): the proxy's connection token.
   */
  class TCPWebSocket {
    constructor(host, port, options) {
      const opts = options || {};
      this.readyState = 0;
      this.binaryType = "arraybuffer";
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      const settings = (root.Orbited && root.Orbited.settings) || {};
      const base = opts.url != null ? opts.url : settingsBase(settings);
      const token = opts.token != null ? opts.token : settings.token;
      this._channel = new TCPChannel(base, host, port, {
        open: () => {
          this.readyState = 1;
          if (this.onopen) this.onopen({});
        },
        data: (bytes) => {
          const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
          if (this.onmessage) this.onmessage({ data });
        },
        close: (code, reason) => {
          this.readyState = 3;
          if (this.onclose) this.onclose({ code, reason, wasClean: code === 1000 });
        },
      }, opts.transports, token);
    }

    get bufferedAmount() {
      return this._channel.bufferedAmount;
    }

    send(data) {
      this._channel.send(toBytes(data, false));
    }

    close() {
      this.readyState = 2;
      this._channel.close();
    }
  }

  if (root.Orbited) root.Orbited.TCPSocket = TCPSocket;
  else root.Orbited = { settings: { hostname: null, port: null, protocol: null }, TCPSocket };
  root.Orbiter = Object.freeze(
    Object.assign({}, root.Orbiter, { TCPSocket, TCPWebSocket, TCPCloseCode, connectTCP, tcpUrl })
  );
})(typeof globalThis !== "undefined" ? globalThis : self);

// ===========================================================================
// STOMPClient — the seed's STOMP client API over orbiter's STOMP endpoints
// (issue 6; docs/protocol.md "STOMP"). Separate from the sections above.
// ===========================================================================
/**
 * const stomp = new STOMPClient();                  // or new Orbiter.STOMPClient({url})
 * stomp.onconnectedframe = (frame) => stomp.subscribe("/topic/chat");
 * stomp.onmessageframe = (frame) => show(frame.body);
 * stomp.connect("localhost", 61613, login, passcode);
 * stomp.send("hi", "/topic/chat");
 *
 * `connect(host, port, login, passcode)` keeps the seed's signature: `host`
 * becomes the CONNECT frame's virtual host; the connection itself goes to the
 * orbiter server the page talks to (same origin, or `Orbited.settings`
 * {hostname, port, protocol}, or the `url` option), as STOMP over WebSocket at
 * `/stomp` — or over SockJS at `/stomp/sockjs` when `transport: "sockjs"` is
 * given, or WebSocket is missing and the page loaded sockjs-client (`SockJS`).
 * (The `sockjs` option is passed on to `new SockJS(url, null, options)`.)
 * Callbacks: onopen(), onclose(code), onerrorframe(frame),
 * onconnectedframe(frame) (also onconnectframe), onmessageframe(frame),
 * onreceiptframe(frame). A frame is {type, command, headers, body}.
 */
(function (root) {
  "use strict";

  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8");

  function escapeHeader(value) {
    return String(value)
      .replace(/\\/g, "\\\\")
      .replace(/\r/g, "\\r")
      .replace(/\n/g, "\\n")
      .replace(/:/g, "\\c");
  }

  function unescapeHeader(value) {
    return value.replace(/\\(.)/g, (_, c) => ({ r: "\r", n: "\n", c: ":", "\\": "\\" })[c] ?? "\\" + c);
  }

  function concat(a, b) {
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  /** An incremental STOMP frame parser over bytes (frames may be split anywhere). */
  class FrameReader {
    constructor() {
      this.buffer = new Uint8Array(0);
    }

    feed(chunk) {
      this.buffer = concat(this.buffer, chunk);
      const frames = [];
      for (;;) {
        let start = 0;
        const buf = this.buffer;
        while (start < buf.length && (buf[start] === 10 || buf[start] === 13)) start++;
        let end = -1;
        let sep = 0;
        for (let i = start; i + 1 < buf.length; i++) {
          if (buf[i] === 10 && buf[i + 1] === 10) { end = i; sep = 2; break; }
          if (buf[i] === 10 && buf[i + 1] === 13 && buf[i + 2] === 10) { end = i; sep = 3; break; }
        }
        if (end < 0) { this.buffer = buf.subarray(start); return frames; }
        const lines = decoder.decode(buf.subarray(start, end)).split("\n").map((l) => l.replace(/\r$/, ""));
        const command = lines.shift();
        const headers = {};
        const escaped = command !== "CONNECTED";
        for (const line of lines) {
          const colon = line.indexOf(":");
          if (colon < 0) continue;
          const name = escaped ? unescapeHeader(line.slice(0, colon)) : line.slice(0, colon);
          if (!(name in headers)) {
            headers[name] = escaped ? unescapeHeader(line.slice(colon + 1)) : line.slice(colon + 1);
          }
        }
        const bodyStart = end + sep;
        let bodyEnd;
        if ("content-length" in headers) {
          bodyEnd = bodyStart + Number(headers["content-length"]);
          if (buf.length <= bodyEnd) { this.buffer = buf; return frames; }
        } else {
          bodyEnd = buf.indexOf(0, bodyStart);
          if (bodyEnd < 0) { this.buffer = buf; return frames; }
        }
        const body = decoder.decode(buf.subarray(bodyStart, bodyEnd));
        this.buffer = buf.subarray(bodyEnd + 1);
        frames.push({ type: command, command, headers, body });
      }
    }
  }

  function encodeFrame(command, headers, body) {
    const bytes = encoder.encode(body == null ? "" : String(body));
    let head = command + "\n";
    for (const [name, value] of Object.entries(headers || {})) {
      if (value == null) continue;
      head += command === "CONNECT" ? `${name}:${value}\n` : `${escapeHeader(name)}:${escapeHeader(value)}\n`;
    }
    if (bytes.length) head += `content-length:${bytes.length}\n`;
    return concat(concat(encoder.encode(head + "\n"), bytes), new Uint8Array([0]));
  }

  function baseUrl(options) {
    if (options.url) return options.url;
    const here = root.location || { protocol: "http:", host: "localhost" };
    const settings = (root.Orbited && root.Orbited.settings) || {};
    let protocol = String(settings.protocol || here.protocol).replace(/:.*$/, "");
    let host = here.host;
    if (settings.hostname || settings.port) {
      let name = String(settings.hostname || here.hostname);
      if (name.includes(":") && !name.startsWith("[")) name = `[${name}]`;
      host = settings.port ? `${name}:${settings.port}` : name;
    }
    if (options.transport !== "sockjs") protocol = protocol === "https" ? "wss" : "ws";
    return `${protocol}://${host}${options.path || "/stomp"}`;
  }

  class STOMPClient {
    constructor(options) {
      this.options = Object.assign({ transport: "auto", path: "/stomp", heartbeat: 10000 }, options || {});
      this.onopen = null;
      this.onclose = null;
      this.onerrorframe = null;
      this.onconnectedframe = null;
      this.onconnectframe = null;
      this.onmessageframe = null;
      this.onreceiptframe = null;
      this.connected = false;
      this._socket = null;
      this._args = null;
      this._pending = [];
      this._subscriptions = new Map();
      this._ids = 0;
      this._beat = null;
    }

    connect(host, port, login, passcode) {
      this._args = [host, port, login, passcode];
      this._open();
    }

    reset() {
      this._closeSocket();
      if (this._args) this._open();
    }

    send(body, destination, headers) {
      this._frame("SEND", Object.assign({ destination }, headers || {}), body);
    }

    subscribe(destination, headers) {
      const all = Object.assign({ id: `sub-${++this._ids}`, destination, ack: "auto" }, headers || {});
      this._subscriptions.set(all.id, destination);
      this._frame("SUBSCRIBE", all);
      return all.id;
    }

    unsubscribe(destinationOrId, headers) {
      let id = destinationOrId;
      for (const [key, destination] of this._subscriptions) {
        if (destination === destinationOrId) id = key;
      }
      this._subscriptions.delete(id);
      this._frame("UNSUBSCRIBE", Object.assign({ id }, headers || {}));
    }

    ack(messageId, transaction) {
      this._frame("ACK", { id: messageId, transaction });
    }

    nack(messageId, transaction) {
      this._frame("NACK", { id: messageId, transaction });
    }

    begin(transaction) {
      this._frame("BEGIN", { transaction });
    }

    commit(transaction) {
      this._frame("COMMIT", { transaction });
    }

    abort(transaction) {
      this._frame("ABORT", { transaction });
    }

    disconnect() {
      this._frame("DISCONNECT", {});
      this._args = null;
    }

    _useSockJS() {
      const choice = this.options.transport;
      return choice === "sockjs" || (choice === "auto" && typeof root.WebSocket !== "function" && typeof root.SockJS === "function");
    }

    _open() {
      if (this._useTCP()) return this._openSocket(this._tcpSocket());
      const sockjs = this._useSockJS();
      const url = baseUrl({ ...this.options, transport: sockjs ? "sockjs" : "websocket", path: this.options.path + (sockjs ? "/sockjs" : "") });
      const socket = sockjs
        ? new root.SockJS(url, null, this.options.sockjs)
        : new root.WebSocket(url, ["v12.stomp", "v11.stomp", "v10.stomp"]);
      if (!sockjs) socket.binaryType = "arraybuffer";
      this._openSocket(socket);
    }

    /**
     * transport "tcp" — or "auto" on a seed-era page, which sets the global
     * `TCPSocket = Orbited.TCPSocket` for its stomp.js: STOMP to connect()'s
     * host:port through orbiter's /tcp proxy, as the seeds' [access] rules expect.
     */
    _useTCP() {
      const choice = this.options.transport;
      const seedPage = root.TCPSocket != null && root.Orbited != null && root.TCPSocket === root.Orbited.TCPSocket;
      return choice === "tcp" || (choice === "auto" && seedPage);
    }

    /** STOMP straight to connect()'s host:port through orbiter's /tcp proxy. */
    _tcpSocket() {
      const [host, port] = this._args || [];
      return new root.Orbiter.TCPWebSocket(host, port, {
        url: this.options.url,
        transports: this.options.transports,
        token: this.options.tcpToken, // the proxy's token (the STOMP passcode goes to the broker)
      });
    }

    _openSocket(socket) {
      const tcp = this._useTCP();
      const reader = new FrameReader();
      this._socket = socket;
      this.connected = false;
      socket.onopen = () => {
        if (this._socket !== socket) return;
        if (this.onopen) this.onopen();
        const [host, , login, passcode] = this._args || [];
        const beat = this.options.heartbeat;
        this._write(encodeFrame("CONNECT", {
          "accept-version": "1.0,1.1,1.2",
          // Over "tcp" the broker is a real server: its virtual host is options.vhost (or none).
          host: tcp ? this.options.vhost : host || (root.location && root.location.hostname) || "localhost",
          login, passcode, "heart-beat": `${beat},0`,
        }));
      };
      socket.onmessage = (event) => {
        if (this._socket !== socket) return;
        const data = typeof event.data === "string" ? encoder.encode(event.data) : new Uint8Array(event.data);
        for (const frame of reader.feed(data)) this._dispatch(frame);
      };
      socket.onclose = (event) => {
        if (this._socket !== socket) return;
        this._socket = null;
        this.connected = false;
        clearInterval(this._beat);
        if (this.onclose) this.onclose(event.code);
      };
    }

    _dispatch(frame) {
      if (frame.command === "CONNECTED") {
        this.connected = true;
        const [, serverWants] = (frame.headers["heart-beat"] || "0,0").split(",").map(Number);
        const every = serverWants && this.options.heartbeat ? Math.max(serverWants, this.options.heartbeat) : 0;
        if (every) this._beat = setInterval(() => this._write(encoder.encode("\n")), every / 2);
        const pending = this._pending;
        this._pending = [];
        if (this.onconnectedframe) this.onconnectedframe(frame);
        if (this.onconnectframe) this.onconnectframe(frame);
        for (const bytes of pending) this._write(bytes);
      } else if (frame.command === "MESSAGE") {
        if (this.onmessageframe) this.onmessageframe(frame);
      } else if (frame.command === "RECEIPT") {
        if (this.onreceiptframe) this.onreceiptframe(frame);
      } else if (frame.command === "ERROR") {
        if (this.onerrorframe) this.onerrorframe(frame);
      }
    }

    _frame(command, headers, body) {
      const bytes = encodeFrame(command, headers, body);
      if (this.connected) this._write(bytes);
      else this._pending.push(bytes);
    }

    _write(bytes) {
      const socket = this._socket;
      if (!socket || socket.readyState !== 1) return;
      socket.send(decoder.decode(bytes)); // STOMP frames as text, over WebSocket and SockJS alike
    }

    _closeSocket() {
      const socket = this._socket;
      this._socket = null;
      this.connected = false;
      clearInterval(this._beat);
      if (socket) socket.close();
    }
  }

  root.STOMPClient = STOMPClient;
  root.Orbiter = Object.freeze(Object.assign({}, root.Orbiter, { STOMPClient }));
})(typeof globalThis !== "undefined" ? globalThis : self);
