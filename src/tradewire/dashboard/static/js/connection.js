// The wire protocol in the browser: one WebSocket, request/reply by id, subscriptions with
// per-stream offsets, reconnect with exponential backoff and full jitter, resume with the
// reconnect token (query parameter: browsers cannot set headers) and recovery from our own
// last offset when the token is refused. Same behaviour as the Python client (tradewire.client).

const FINAL_CODES = new Set([1000, 1008]);
const BASE_DELAY = 500;
const MAX_DELAY = 30000;

export class Connection extends EventTarget {
  constructor(url, token) {
    super();
    this.url = url;
    this.token = token;
    this.state = "connecting";
    this.clientId = null;
    this.reconnects = 0;
    this.lastRecovery = null; // "recovered" | "partial" | "fresh" after a reconnect
    this.user = null;
    this._ws = null;
    this._reconnectToken = null;
    this._pending = new Map();
    this._nextId = 1;
    this._subs = new Map(); // stream -> {params, handler, offset, epoch}
    this._attempt = 0;
    this._closing = false;
    this._heartbeat = null;
  }

  /** Connect and authenticate; resolves with the `authenticated` reply. */
  open() {
    return new Promise((resolve, reject) => {
      this._onFirstReady = { resolve, reject };
      this._connect();
    });
  }

  close() {
    this._closing = true;
    clearInterval(this._heartbeat);
    if (this._ws) this._ws.close(1000);
    this._setState("closed");
  }

  /** Send a message; resolves with its reply, rejects with {error_code, error_message}. */
  request(message, timeout = 10000) {
    if (this.state !== "open") {
      return Promise.reject({ error_code: "not_connected", error_message: `not connected (${this.state})` });
    }
    return this._send(message, timeout);
  }

  _send(message, timeout = 10000) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject({ error_code: "timeout", error_message: `${message.type}: no reply in ${timeout / 1000} s` });
      }, timeout);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ ...message, id }));
    });
  }

  /** Subscribe to `stream`; `handler(data, frame)` gets each message once, in offset order. */
  async subscribe(stream, params, handler) {
    const sub = { params, handler, offset: null, epoch: null };
    this._subs.set(stream, sub);
    if (this.state !== "open") return null; // sent when the connection is back
    const reply = await this._send({ type: "subscribe", stream, params });
    this._noteSubscribed(sub, reply);
    return reply;
  }

  _connect() {
    const url = new URL(this.url);
    if (this._reconnectToken) url.searchParams.set("reconnect_token", this._reconnectToken);
    const ws = new WebSocket(url);
    this._ws = ws;
    this._welcomed = false;
    ws.onmessage = (event) => this._onFrame(JSON.parse(event.data));
    ws.onclose = (event) => this._onClose(ws, event.code);
  }

  async _onWelcome(welcome) {
    this._welcomed = true;
    this.clientId = welcome.client_id;
    this._reconnectToken = welcome.reconnect_token;
    const interval = (welcome.heartbeat_interval || 30) * 500;
    clearInterval(this._heartbeat);
    this._heartbeat = setInterval(() => this._ws.send('{"type":"heartbeat"}'), interval);
    try {
      const restored = await this._resume(welcome);
      this._attempt = 0;
      if (this._wasOpen) {
        this.reconnects += 1;
        this.lastRecovery = restored;
      }
      this._wasOpen = true;
      this._setState("open");
      this.dispatchEvent(new CustomEvent("ready", { detail: welcome }));
      if (this._onFirstReady) this._onFirstReady.resolve(this.user);
    } catch (error) {
      if (this._onFirstReady) this._onFirstReady.reject(error);
      this._closing = true;
      this._ws.close(1000);
    } finally {
      this._onFirstReady = null;
    }
  }

  /** Auth and subscriptions after a welcome; returns how the streams came back. */
  async _resume(welcome) {
    let restored = {};
    if (welcome.reconnected) {
      for (const s of welcome.subscriptions || []) restored[s.stream] = s;
      if (!welcome.authenticated) {
        const reply = await this._auth();
        for (const s of reply.restored_subscriptions || []) restored[s.stream] = s;
      }
    } else {
      await this._auth();
    }
    let complete = true;
    for (const [stream, sub] of this._subs) {
      const back = restored[stream];
      if (back && back.status === "subscribed") {
        this._noteSubscribed(sub, back);
        if (back.recovered === false) complete = false;
      } else {
        const recover = sub.offset !== null ? { offset: sub.offset, epoch: sub.epoch } : undefined;
        const reply = await this._send({ type: "subscribe", stream, params: sub.params, recover });
        this._noteSubscribed(sub, reply);
        if (recover && reply.recovered !== true) complete = false;
      }
    }
    if (!this._wasOpen) return null;
    return complete ? (welcome.reconnected ? "recovered" : "recovered from own offsets") : "partial";
  }

  async _auth() {
    try {
      this.user = await this._send({ type: "auth", token: this.token });
      return this.user;
    } catch (error) {
      this.dispatchEvent(new CustomEvent("auth-failed", { detail: error }));
      throw error;
    }
  }

  _noteSubscribed(sub, reply) {
    if (reply.epoch && reply.epoch !== sub.epoch && reply.recovered !== true) {
      sub.epoch = reply.epoch; // offsets start again in a new epoch
      sub.offset = null;
    }
  }

  _onFrame(frame) {
    if (!this._welcomed && frame.type === "status" && frame.status === "connected") {
      this._onWelcome(frame);
      return;
    }
    if (frame.type === "data") {
      const sub = this._subs.get(frame.stream);
      if (!sub) return;
      if (frame.epoch === sub.epoch && sub.offset !== null && frame.offset <= sub.offset) return; // duplicate
      sub.epoch = frame.epoch;
      sub.offset = frame.offset;
      sub.handler(frame.data, frame);
      return;
    }
    const pending = frame.id !== undefined ? this._pending.get(frame.id) : undefined;
    if (pending) {
      this._pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.type === "error") pending.reject(frame);
      else pending.resolve(frame);
    } else if (frame.type === "error") {
      this.dispatchEvent(new CustomEvent("server-error", { detail: frame }));
    }
  }

  _onClose(ws, code) {
    if (ws !== this._ws) return;
    clearInterval(this._heartbeat);
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject({ error_code: "connection_lost", error_message: `connection closed (${code})` });
    }
    this._pending.clear();
    if (this._closing || FINAL_CODES.has(code)) {
      this._setState("closed", code);
      if (this._onFirstReady) this._onFirstReady.reject({ error_code: "closed", error_message: `closed (${code})` });
      return;
    }
    const bound = Math.min(MAX_DELAY, BASE_DELAY * 2 ** this._attempt);
    const delay = Math.max(Math.random() * bound, code === 4029 ? 60000 : 0); // full jitter
    this._attempt += 1;
    this._setState("reconnecting", code, delay);
    setTimeout(() => this._connect(), delay);
  }

  _setState(state, code = null, delay = null) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, code, delay, attempt: this._attempt } }));
  }
}
