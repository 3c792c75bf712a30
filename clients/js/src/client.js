// client.js — the dependency-free client of the `bridge-ipc` npm package: lets a renderer
// (browser page, Electron renderer or preload, Tauri webview) talk to `bridge serve`.
//
// Wire: JSON-RPC 2.0 over one WebSocket (RFC 6455); the token travels in the
// subprotocol pair `bridge.v1, bridge.v1.token.<token>` (browsers cannot set headers);
// the server selects exactly `bridge.v1`.
//
// Behaviour (DESIGN §8): invoke() rejects with a BridgeError that keeps `code`, `name`
// and `data` (Electron's ipcRenderer.invoke keeps only the message); onChanged()
// returns an unsubscribe function; the socket reconnects with exponential backoff and
// full jitter; after each (re)connection the client checks `protocolVersion` with
// `bridge:hello`, then resyncs through `llm-config:snapshot`: notifications with a
// revision ≤ the snapshot's are dropped, and changes missed while away are delivered
// as `llm-config:changed` events. Pending calls fail with ConnectionLostError when the
// socket drops; writes are never retried automatically.
//
// Long operations (LSP conventions, docs/protocol.md): invoke(channel, params, {signal,
// onProgress}) sends a `workDoneToken` and routes `$/progress` values to onProgress; an
// aborted signal sends `$/cancelRequest` and rejects the call with the signal's reason.
// A browser cannot see why a handshake was refused: after `handshakeRefusedAfter`
// attempts in a row fail before the socket ever opens, the "reconnecting" status detail
// says `reason: "handshake-refused"` with the likely causes.
//
// Contract drift (DESIGN §8): the client knows the `schemaHash` of the OpenRPC document its
// types came from — SCHEMA_HASH (bridge's built-in channels, embedded at build time) unless
// the `schemaHash` option gives an application's own (bridge-ipc-typegen writes it). When
// `bridge:hello` announces another one, the client reports it once per announced hash:
// `onWarning` listeners get `{kind: "schema-mismatch", expected, actual, message}`; with no
// listener attached it goes to console.warn. The connection proceeds (a newer server is
// usually compatible); only `protocolVersion` is terminal.

import { SCHEMA_HASH } from "./schema-hash.js";

export { SCHEMA_HASH };

/** Protocol version this client speaks (`bridge:hello`.protocolVersion). */
export const PROTOCOL_VERSION = 1;
const SUBPROTOCOL = "bridge.v1";
const CHANGED = "llm-config:changed";
const PROGRESS = "$/progress";
const CANCEL_REQUEST = "$/cancelRequest";
/** Likely causes of handshakes that fail before the socket opens (a page cannot see the status). */
export const HANDSHAKE_REFUSED_CAUSES = Object.freeze([
  "origin not allowed: start bridge with --allow-origin <this page's origin> (http://localhost:* for a dev server)",
  "token stale: the server restarted with another token; reload the connection details",
  "server not running or not at this URL",
]);
/**
 * Connection states shared by the client (`status`, `onStatus`) and the live stores
 * (`snapshot.status`); the client is also `"idle"` before `connect()` is first called.
 */
export const STATUSES = Object.freeze(["connecting", "open", "reconnecting", "closed", "failed"]);
/** Close code the server uses for policy violations: not worth retrying. */
const CLOSE_POLICY_VIOLATION = 1008;

/** An error answered by the server: JSON-RPC `code`, `data.code` as `name`... */
export class BridgeError extends Error {
  /**
   * @param {string} message
   * @param {number} code JSON-RPC error code (e.g. -32602, 4009).
   * @param {{code?: string, name?: string, errors?: Array<{field: string, code: string, message: string}>, context?: object} | undefined} data
   */
  constructor(message, code, data) {
    super(message);
    /** JSON-RPC error code. */
    this.code = code;
    /** The server's `error.data`: `{code, name, errors?, context?}`. */
    this.data = data;
    /** The server's error class name (e.g. "ValidationError"), else "BridgeError". */
    this.name = (data && data.name) || "BridgeError";
  }

  /** Field errors of a VALIDATION_ERROR (`[]` otherwise). */
  get fieldErrors() {
    return (this.data && this.data.errors) || [];
  }
}

/** The connection dropped before the call's response arrived (the write may or may not have happened). */
export class ConnectionLostError extends Error {
  constructor(message = "Connection lost before the response arrived") {
    super(message);
    this.name = "ConnectionLostError";
  }
}

/**
 * No answer within the call timeout; the connection may still be open and a write may
 * still be applied: re-read before retrying it.
 */
export class CallTimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = "CallTimeoutError";
  }
}

/** The server cannot be used: protocol mismatch or a policy close (1008). Not retried. */
export class TerminalError extends Error {
  constructor(message) {
    super(message);
    this.name = "TerminalError";
  }
}

/**
 * A resilient JSON-RPC client for one bridge server.
 *
 * @param {object} options
 * @param {string | (() => string | Promise<string>)} options.url `ws://127.0.0.1:PORT`, or a provider re-read on every attempt.
 * @param {string | (() => string | Promise<string>)} options.token The bearer token, or a provider.
 * @param {typeof WebSocket} [options.WebSocket] WebSocket implementation (default: the global one).
 * @param {number} [options.initialDelayMs=250] First reconnect delay, in milliseconds.
 * @param {number} [options.maxDelayMs=10000] Largest reconnect delay, in milliseconds.
 * @param {number} [options.callTimeoutMs=30000] Per-call timeout, in milliseconds (0: none).
 * @param {number} [options.connectTimeoutMs=5000] Bound on one opening handshake, in milliseconds.
 * @param {number} [options.handshakeRefusedAfter=3] Attempts in a row that fail before the socket
 *   opens after which the status detail reports `reason: "handshake-refused"`.
 * @param {string} [options.schemaHash=SCHEMA_HASH] `schemaHash` of the OpenRPC document the
 *   caller's types were generated from (`sha256:<hex>`; bridge-ipc-typegen's `SCHEMA_HASH`
 *   for an application's own channels); a different one in `bridge:hello` is reported.
 */
export class BridgeClient {
  constructor(options) {
    this._url = options.url;
    this._token = options.token;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._initialDelayMs = options.initialDelayMs ?? 250;
    this._maxDelayMs = options.maxDelayMs ?? 10000;
    this._callTimeoutMs = options.callTimeoutMs ?? 30000;
    this._connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this._handshakeRefusedAfter = options.handshakeRefusedAfter ?? 3;
    this._schemaHash = options.schemaHash ?? SCHEMA_HASH;
    /** The last schema mismatch reported (null while the hashes agree). */
    this._schemaMismatch = null;
    this._warningListeners = new Set();
    /** Attempts in a row whose socket closed before it ever opened. */
    this._failedBeforeOpen = 0;
    /** workDoneToken → onProgress callback of a call in flight. */
    this._progress = new Map();
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();
    this._listeners = new Map();
    this._statusListeners = new Set();
    this._status = "idle";
    this._attempt = 0;
    this._closed = false;
    this._timer = null;
    this._resyncing = false;
    this._buffered = [];
    /** Views the client has seen, by id: the base for resync diffs. */
    this._views = new Map();
    this._revision = 0;
    /** True once a snapshot was applied: later snapshots are diffed against `_views`. */
    this._synced = false;
    this._ready = null;
    this._readyResolve = null;
    this._readyReject = null;
    this._armReady();
  }

  /** Current status: "idle" | "connecting" | "open" | "reconnecting" | "closed" | "failed". */
  get status() {
    return this._status;
  }

  /** The last revision applied (from a snapshot or a notification). */
  get revision() {
    return this._revision;
  }

  /**
   * The schema mismatch found by the last `bridge:hello`, or null when the server announced
   * the expected `schemaHash`: `{kind: "schema-mismatch", expected, actual, message}`.
   */
  get schemaMismatch() {
    return this._schemaMismatch;
  }

  /**
   * Connect (idempotent). Resolves once the socket is open, the protocol checked and
   * the first snapshot applied; rejects with TerminalError on a protocol mismatch.
   * @returns {Promise<void>}
   */
  connect() {
    if (this._status === "idle") this._open();
    return this._ready;
  }

  /** Close for good: pending calls fail with ConnectionLostError; no reconnection. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    this._setStatus("closed");
    if (this._ws) this._ws.close(1000, "client closed");
    const error = new ConnectionLostError("Client closed");
    this._failPending(error);
    // Calls waiting for a connection that will never come fail instead of hanging.
    this._readyReject(error);
  }

  /**
   * Call a channel. Params are by-name (an object) or omitted.
   * @param {string} channel e.g. "llm-config:create".
   * @param {object} [params]
   * @param {object} [options]
   * @param {AbortSignal} [options.signal] Aborting it sends `$/cancelRequest` (a long-running
   *   request is then cancelled by the server) and rejects the call with `signal.reason`.
   * @param {(value: {kind: "begin"|"report"|"end", message?: string, percentage?: number}) => void} [options.onProgress]
   *   Receives the call's `$/progress` values; the params then carry a fresh `workDoneToken`.
   * @param {number} [options.timeoutMs] This call's timeout, in milliseconds (default: callTimeoutMs).
   * @returns {Promise<any>} the JSON result.
   */
  async invoke(channel, params, options = {}) {
    const { signal } = options;
    if (signal?.aborted) throw signal.reason;
    if (signal) {
      // Waiting for a connection is abortable too.
      let onAbort;
      const aborted = new Promise((_, reject) => {
        onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      });
      try {
        await Promise.race([this.connect(), aborted]);
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    } else {
      await this.connect();
    }
    return this._call(channel, params, options);
  }

  /**
   * Subscribe to a notification topic; returns an unsubscribe function.
   * @param {string} event e.g. "llm-config:changed".
   * @param {(params: any) => void} callback
   * @returns {() => void}
   */
  on(event, callback) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(callback);
    return () => this._listeners.get(event)?.delete(callback);
  }

  /**
   * Subscribe to `llm-config:changed` ({type, id, revision, config?}); returns an unsubscribe function.
   * @param {(event: {type: "created"|"updated"|"deleted", id: string, revision: number, config?: object}) => void} callback
   */
  onChanged(callback) {
    return this.on(CHANGED, callback);
  }

  /**
   * Observe the connection status; called at once with the current one. Returns an unsubscribe function.
   * @param {(status: string, detail?: any) => void} callback
   */
  onStatus(callback) {
    this._statusListeners.add(callback);
    callback(this._status);
    return () => this._statusListeners.delete(callback);
  }

  /**
   * Observe warnings: a `schema-mismatch` (`{kind, expected, actual, message}`) when
   * `bridge:hello` announces a `schemaHash` other than the expected one — reported once
   * per announced hash, and at once to a listener attached after it was found. While at
   * least one listener is attached, console.warn stays silent. Returns an unsubscribe function.
   * @param {(warning: {kind: "schema-mismatch", expected: string, actual: string, message: string}) => void} callback
   * @returns {() => void}
   */
  onWarning(callback) {
    this._warningListeners.add(callback);
    if (this._schemaMismatch) callback(this._schemaMismatch);
    return () => this._warningListeners.delete(callback);
  }

  // ---- internals -------------------------------------------------------------------

  _armReady() {
    this._ready = new Promise((resolve, reject) => {
      this._readyResolve = resolve;
      this._readyReject = reject;
    });
    // An unobserved rejection must not crash a renderer.
    this._ready.catch(() => {});
  }

  _setStatus(status, detail) {
    this._status = status;
    for (const listener of this._statusListeners) {
      try {
        listener(status, detail);
      } catch (err) {
        console.error("bridge-client: status listener failed", err);
      }
    }
  }

  async _open() {
    if (this._closed) return;
    this._setStatus(this._attempt === 0 ? "connecting" : "reconnecting");
    let url;
    let token;
    try {
      url = typeof this._url === "function" ? await this._url() : this._url;
      token = typeof this._token === "function" ? await this._token() : this._token;
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    let ws;
    try {
      ws = new this._WebSocket(url, [SUBPROTOCOL, `${SUBPROTOCOL}.token.${token}`]);
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    // A handshake that never completes (a peer that accepted TCP and went silent) must
    // not stall reconnection forever.
    let opened = false;
    let ended = false;
    const end = (event) => {
      if (ended) return;
      ended = true;
      clearTimeout(guard);
      // A refused handshake (403 origin, 401 token) fails the socket before it opens; the
      // page is told nothing more than 1006, so the client counts such attempts.
      if (!opened) this._failedBeforeOpen += 1;
      this._onClose(ws, event);
    };
    const guard = setTimeout(() => {
      if (ws.readyState === 0) end({ code: 1006, reason: "connect timeout" });
      ws.close();
    }, this._connectTimeoutMs);
    ws.onopen = () => {
      opened = true;
      this._failedBeforeOpen = 0;
      clearTimeout(guard);
      this._onOpen(ws);
    };
    ws.onmessage = (event) => this._onMessage(event.data);
    ws.onclose = (event) => end(event);
    // Browsers follow an error with close; Node's WebSocket (undici) may fire only the
    // error of a refused handshake and stay CONNECTING: end the attempt on either.
    ws.onerror = () => {
      if (!opened) end({ code: 1006, reason: "handshake failed" });
    };
  }

  async _onOpen(ws) {
    if (ws.protocol !== SUBPROTOCOL) {
      this._terminal(new TerminalError(`server selected subprotocol "${ws.protocol}", expected ${SUBPROTOCOL}`));
      return;
    }
    // Notifications that arrive before the snapshot is applied are held back, so that
    // events missed while away are delivered before newer ones, each once.
    this._resyncing = true;
    this._buffered = [];
    try {
      const hello = await this._call("bridge:hello");
      if (hello.protocolVersion !== PROTOCOL_VERSION) {
        this._terminal(
          new TerminalError(`server speaks protocol ${hello.protocolVersion}, this client ${PROTOCOL_VERSION}`),
        );
        return;
      }
      this._checkSchema(hello.schemaHash);
      await this._resync();
    } catch (err) {
      this._resyncing = false;
      // Lost connection: onclose schedules the retry. Any other failure (e.g. 5003
      // while the server shuts down): drop this socket and try again later.
      if (!(err instanceof ConnectionLostError) && this._ws === ws) ws.close(1000, "resync failed");
      return;
    }
    this._attempt = 0;
    this._setStatus("open");
    this._readyResolve();
  }

  _checkSchema(actual) {
    const expected = this._schemaHash;
    if (actual === expected) {
      this._schemaMismatch = null;
      return;
    }
    if (this._schemaMismatch?.actual === actual) return; // this document was reported already
    const warning = {
      kind: "schema-mismatch",
      expected,
      actual,
      message:
        `the server announces schemaHash ${actual}, the client's types were generated from ${expected}: ` +
        "regenerate them (bridge-ipc-typegen) or update bridge-ipc",
    };
    this._schemaMismatch = warning;
    if (this._warningListeners.size === 0) {
      console.warn(`bridge-ipc: ${warning.message}`);
      return;
    }
    for (const listener of this._warningListeners) {
      try {
        listener(warning);
      } catch (err) {
        console.error("bridge-client: warning listener failed", err);
      }
    }
  }

  async _resync() {
    try {
      const snapshot = await this._call("llm-config:snapshot");
      const fresh = new Map(snapshot.configs.map((view) => [view.id, view]));
      const missed = [];
      for (const [id, old] of this._views) {
        if (!fresh.has(id)) missed.push({ type: "deleted", id, revision: snapshot.revision });
        else if (fresh.get(id).version !== old.version || fresh.get(id).updatedAt !== old.updatedAt)
          missed.push({ type: "updated", id, revision: snapshot.revision, config: fresh.get(id) });
      }
      // The first snapshot is the initial state, not a change; after that, an id the
      // client has not seen was created while it was away.
      for (const [id, view] of fresh) {
        if (!this._views.has(id) && this._synced)
          missed.push({ type: "created", id, revision: snapshot.revision, config: view });
      }
      this._views = fresh;
      this._revision = snapshot.revision;
      this._synced = true;
      for (const event of missed) this._emit(CHANGED, event);
      const buffered = this._buffered;
      this._buffered = [];
      for (const event of buffered) this._applyChanged(event);
    } finally {
      this._resyncing = false;
    }
  }

  _applyChanged(event) {
    if (typeof event.revision === "number" && event.revision <= this._revision) return;
    if (event.type === "deleted") this._views.delete(event.id);
    else if (event.config) this._views.set(event.id, event.config);
    this._revision = event.revision;
    this._emit(CHANGED, event);
  }

  _emit(event, params) {
    for (const callback of this._listeners.get(event) || []) {
      try {
        callback(params);
      } catch (err) {
        console.error(`bridge-client: ${event} listener failed`, err);
      }
    }
  }

  _onMessage(data) {
    if (typeof data !== "string") return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    for (const item of Array.isArray(message) ? message : [message]) {
      if (item && typeof item.method === "string" && !("id" in item)) {
        if (item.method === PROGRESS && item.params && this._progress.has(item.params.token)) {
          try {
            this._progress.get(item.params.token)(item.params.value);
          } catch (err) {
            console.error("bridge-client: onProgress failed", err);
          }
        } else if (item.method === CHANGED) {
          if (this._resyncing) this._buffered.push(item.params);
          else this._applyChanged(item.params);
        } else {
          this._emit(item.method, item.params);
        }
        continue;
      }
      const pending = item && this._pending.get(item.id);
      if (!pending) continue;
      this._pending.delete(item.id);
      clearTimeout(pending.timer);
      if (item.error) {
        pending.reject(new BridgeError(item.error.message, item.error.code, item.error.data));
      } else {
        pending.resolve(item.result);
      }
    }
  }

  _call(channel, params, options = {}) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return Promise.reject(new ConnectionLostError("Not connected"));
    const { signal, onProgress } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const timeoutMs = options.timeoutMs ?? this._callTimeoutMs;
    const id = this._nextId++;
    const message = { jsonrpc: "2.0", id, method: channel };
    let token = null;
    if (onProgress) {
      token = `js-${id}`;
      params = { ...(params || {}), workDoneToken: token };
      this._progress.set(token, onProgress);
    }
    if (params !== undefined) message.params = params;
    return new Promise((resolve, reject) => {
      const settle = (fn) => (value) => {
        clearTimeout(entry.timer);
        if (token !== null) this._progress.delete(token);
        signal?.removeEventListener("abort", onAbort);
        fn(value);
      };
      const entry = { resolve: settle(resolve), reject: settle(reject), timer: null };
      const onAbort = () => {
        if (this._pending.get(id) !== entry) return;
        this._pending.delete(id);
        // LSP: the server answers a cancelled long-running request -32800; that answer
        // finds no pending call and is dropped. Other requests are not cancelled.
        if (this._ws === ws && ws.readyState === 1)
          ws.send(JSON.stringify({ jsonrpc: "2.0", method: CANCEL_REQUEST, params: { id } }));
        entry.reject(signal.reason);
      };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this._pending.delete(id);
          entry.reject(new CallTimeoutError(`No answer to ${channel} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this._pending.set(id, entry);
      signal?.addEventListener("abort", onAbort, { once: true });
      ws.send(JSON.stringify(message));
    });
  }

  _failPending(error) {
    const pending = this._pending;
    this._pending = new Map();
    for (const entry of pending.values()) entry.reject(error);
  }

  _onClose(ws, event) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._failPending(new ConnectionLostError());
    if (this._closed || this._status === "failed") return;
    // Calls made while reconnecting wait for the next successful resync.
    if (this._status === "open") this._armReady();
    if (event.code === CLOSE_POLICY_VIOLATION) {
      this._terminal(new TerminalError(`server closed the connection: policy violation (${event.reason || 1008})`));
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._closed) return;
    this._attempt += 1;
    // Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
    const ceiling = Math.min(this._maxDelayMs, this._initialDelayMs * 2 ** (this._attempt - 1));
    const delay = Math.random() * ceiling;
    const detail = { attempt: this._attempt, delayMs: Math.round(delay) };
    if (this._failedBeforeOpen >= this._handshakeRefusedAfter) {
      detail.reason = "handshake-refused";
      detail.failedHandshakes = this._failedBeforeOpen;
      detail.likelyCauses = HANDSHAKE_REFUSED_CAUSES;
      detail.message =
        `${this._failedBeforeOpen} connection attempts in a row failed before the WebSocket opened ` +
        "(the browser does not say why; the server's log does): " +
        HANDSHAKE_REFUSED_CAUSES.join("; ");
    }
    this._setStatus("reconnecting", detail);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(), delay);
  }

  _terminal(error) {
    this._setStatus("failed", error);
    this._closed = true;
    if (this._ws) this._ws.close(1000, "client giving up");
    this._failPending(error);
    this._readyReject(error);
  }
}

/**
 * The Electron-style API of a preload: `window.electronAPI.llmConfig` (DESIGN §8).
 * @param {BridgeClient} client
 */
export function llmConfigApi(client) {
  return {
    create: (config) => client.invoke("llm-config:create", { config }),
    read: (id) => client.invoke("llm-config:read", { id }),
    update: (id, updates, expectedVersion) =>
      client.invoke(
        "llm-config:update",
        expectedVersion === undefined ? { id, updates } : { id, updates, expectedVersion },
      ),
    delete: (id, expectedVersion) =>
      client.invoke("llm-config:delete", expectedVersion === undefined ? { id } : { id, expectedVersion }),
    list: () => client.invoke("llm-config:list"),
    refreshCache: () => client.invoke("llm-config:refresh-cache"),
    onChanged: (callback) => client.onChanged(callback),
  };
}
