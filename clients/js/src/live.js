// live.js — a live, immutable view of one revisioned collection (DESIGN §8), for UI
// frameworks: React's external-store contract (`subscribe(listener) → unsubscribe`,
// `getSnapshot()`), which Svelte's store contract and plain code can use as well.
//
// State is loaded with `<name>:snapshot`, kept current from `<name>:changed` events and
// resynced with a fresh snapshot every time the client (re)opens. Changes are queued and
// applied together once per animation frame (a ~16 ms timer where there is none, e.g.
// Node), so a burst of events — each WebSocket message is its own task — notifies the
// listeners once. Between two notifications `getSnapshot()` returns the same object; an
// item that did not change keeps its object identity, and a no-op, duplicate or stale
// event changes nothing at all.

/** Delay of a flush where there is no requestAnimationFrame, in milliseconds (one 60 Hz frame). */
const FRAME_MS = 16;
/** Bound on waiting for a frame: rAF does not run in a hidden document, in milliseconds. */
const HIDDEN_FALLBACK_MS = 250;
/** Delay before a failed snapshot is asked again while the connection stays open, in milliseconds. */
const RESYNC_RETRY_MS = 1000;

const EMPTY_ITEMS = Object.freeze([]);
const EMPTY_BY_ID = Object.freeze(Object.create(null));

/** Run `callback` at the next animation frame (or after one frame's worth of time). */
function nextFrame(callback) {
  if (typeof requestAnimationFrame !== "function") {
    setTimeout(callback, FRAME_MS);
    return;
  }
  let done = false;
  const run = () => {
    if (done) return;
    done = true;
    cancelAnimationFrame(frame);
    clearTimeout(timer);
    callback();
  };
  const frame = requestAnimationFrame(run);
  const timer = setTimeout(run, HIDDEN_FALLBACK_MS);
}

/** The store's status for a client status: one set of names, `idle` reads as `connecting`. */
function storeStatus(clientStatus) {
  return clientStatus === "idle" ? "connecting" : clientStatus;
}

function deepFreeze(value) {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

function sameJson(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.prototype.hasOwnProperty.call(b, key) && sameJson(a[key], b[key]));
}

/** The item an event or snapshot carries (`config` for llm-config, `item` for other collections). */
function itemOf(event) {
  return event.config ?? event.item;
}

/** The items a snapshot carries (`configs` for llm-config, `items` for other collections). */
function itemsOf(snapshot) {
  return snapshot.configs ?? snapshot.items ?? [];
}

/**
 * A live store over collection `name` of `client`.
 *
 * Snapshot: `{items, byId, status, revision, error}`, frozen. `items` in the server's
 * list order (creation order); `byId` maps id → item; `status` is `connecting`, `open`,
 * `reconnecting`, `closed` or `failed` (the client's names; `open` once this store's
 * own snapshot is applied); `revision` the last collection revision applied; `error`
 * the last failure (a TerminalError, a failed snapshot), cleared by the next successful
 * sync or `clearError()`.
 */
export class LiveCollection {
  /**
   * @param {import("./client.js").BridgeClient} client
   * @param {string} name Collection name, e.g. "llm-config" (channels `<name>:snapshot`, topic `<name>:changed`).
   * @param {{schedule?: (flush: () => void) => void}} [options] `schedule` runs a flush later (default: next animation frame, else 16 ms).
   */
  constructor(client, name, options = {}) {
    this.client = client;
    this.name = name;
    this._schedule = options.schedule ?? nextFrame;
    /** Server state: id → frozen item, in list order. */
    this._base = new Map();
    /** Local (optimistic) changes laid over the server state: token → {id, item | null}. */
    this._overlay = new Map();
    this._nextToken = 1;
    this._revision = 0;
    this._status = storeStatus(client.status);
    this._error = null;
    this._loaded = false;
    /** Changes waiting for the next flush, in arrival order: {event} | {snapshot} | {status, error?}. */
    this._queue = [];
    this._flushScheduled = false;
    /** Events held back while this store's snapshot request is in flight. */
    this._held = null;
    this._syncGeneration = 0;
    this._retryTimer = null;
    this._listeners = new Set();
    this._closed = false;
    this._snapshot = Object.freeze({
      items: EMPTY_ITEMS,
      byId: EMPTY_BY_ID,
      status: this._status,
      revision: 0,
      error: null,
    });
    // React calls these unbound.
    this.subscribe = this.subscribe.bind(this);
    this.getSnapshot = this.getSnapshot.bind(this);

    this._offChanged = client.on(`${name}:changed`, (event) => this._onEvent(event));
    this._offStatus = client.onStatus((status, detail) => this._onStatus(status, detail));
    // Failures surface through the status (and `error`), not as a rejection here.
    client.connect().catch(() => {});
  }

  /** True once a snapshot of the collection has been applied. */
  get loaded() {
    return this._loaded;
  }

  /**
   * Register `listener`, called (without arguments) after each change of the snapshot.
   * @param {() => void} listener
   * @returns {() => void} unsubscribe; a listener removed during a notification is not called after.
   */
  subscribe(listener) {
    this._listeners.add(listener);
    return () => {
      this._listeners.delete(listener);
    };
  }

  /** The current immutable snapshot; the same object until the next notification. */
  getSnapshot() {
    return this._snapshot;
  }

  /** Ask for a fresh snapshot now (e.g. after `<name>:refresh-cache`); resolves once it is applied. */
  refresh() {
    return this._resync();
  }

  /** Forget the last failure (`error` becomes null at the next flush). */
  clearError() {
    if (this._error === null) return;
    this._error = null;
    this._scheduleFlush();
  }

  /**
   * Lay a local change over the server state until `release()` is called: `item` replaces
   * (or adds) id's item, `null` hides it; listeners are notified at once. Used for
   * optimistic writes.
   * @param {string} id
   * @param {object | null} item
   * @returns {() => void} release: drop the local change (the server state shows again).
   */
  overlay(id, item) {
    const token = this._nextToken++;
    this._overlay.set(token, { id, item: item === null ? null : deepFreeze(item) });
    // Shown at once (that is the point of an optimistic write); the release is batched
    // with the server's own change notification, so a success does not flicker.
    this._flush();
    return () => {
      if (this._overlay.delete(token)) this._scheduleFlush();
    };
  }

  /** Detach from the client; listeners get no further notification. */
  close() {
    this._closed = true;
    this._offChanged();
    this._offStatus();
    clearTimeout(this._retryTimer);
    this._listeners.clear();
  }

  // ---- internals -------------------------------------------------------------------

  _onEvent(event) {
    if (this._closed || !event || typeof event.id !== "string") return;
    if (this._held) this._held.push(event);
    else this._enqueue({ event });
  }

  _onStatus(clientStatus, detail) {
    if (this._closed) return;
    const status = storeStatus(clientStatus);
    if (status === "open") {
      // "open" is reported once this store's own snapshot is applied.
      this._resync().catch(() => {});
      return;
    }
    this._syncGeneration += 1; // a snapshot still in flight belongs to a dead connection
    this._held = null;
    this._enqueue(status === "failed" ? { status, error: detail ?? null } : { status });
  }

  async _resync() {
    const generation = ++this._syncGeneration;
    clearTimeout(this._retryTimer);
    this._held = [];
    let snapshot;
    try {
      snapshot = await this.client.invoke(`${this.name}:snapshot`);
    } catch (error) {
      if (generation !== this._syncGeneration || this._closed) return;
      this._held = null;
      this._enqueue({ error });
      // A lost connection is retried by the client (and resynced when it reopens).
      if (error && error.name !== "ConnectionLostError" && this.client.status === "open") {
        this._retryTimer = setTimeout(() => this._resync().catch(() => {}), RESYNC_RETRY_MS);
      }
      throw error;
    }
    if (generation !== this._syncGeneration || this._closed) return;
    const held = this._held;
    this._held = null;
    this._enqueue({ snapshot, status: "open" });
    // Held events newer than the snapshot follow it; older ones are already in it.
    for (const event of held) if (!(event.revision <= snapshot.revision)) this._enqueue({ event });
  }

  _enqueue(change) {
    this._queue.push(change);
    this._scheduleFlush();
  }

  _scheduleFlush() {
    if (this._flushScheduled || this._closed) return;
    this._flushScheduled = true;
    this._schedule(() => this._flush());
  }

  _flush() {
    this._flushScheduled = false;
    if (this._closed) return;
    const queue = this._queue;
    this._queue = [];
    for (const change of queue) {
      if (change.snapshot) this._applySnapshot(change.snapshot);
      if (change.event) this._applyEvent(change.event);
      if (change.status) this._status = change.status;
      if ("error" in change) this._error = change.error;
    }
    if (this._rebuild()) this._notify();
  }

  _applySnapshot(snapshot) {
    const fresh = new Map();
    for (const item of itemsOf(snapshot)) {
      const current = this._base.get(item.id);
      fresh.set(item.id, current && sameJson(current, item) ? current : deepFreeze(item));
    }
    this._base = fresh;
    this._revision = snapshot.revision;
    this._loaded = true;
    this._error = null;
  }

  _applyEvent(event) {
    // Stale: the snapshot or a later event already covers it.
    if (typeof event.revision === "number" && event.revision < this._revision) return;
    const current = this._base.get(event.id);
    if (event.type === "deleted") {
      this._base.delete(event.id);
    } else {
      const item = itemOf(event);
      if (!item) return;
      // An older version of an item already held (e.g. replayed by a resync) is stale too.
      if (current && typeof item.version === "number" && item.version < current.version) return;
      if (!current || !sameJson(current, item)) this._base.set(event.id, deepFreeze(item));
    }
    if (typeof event.revision === "number" && event.revision > this._revision) this._revision = event.revision;
  }

  /** Build the next snapshot; false (and the same snapshot kept) when nothing changed. */
  _rebuild() {
    let view = this._base;
    if (this._overlay.size > 0) {
      view = new Map(this._base);
      for (const { id, item } of this._overlay.values()) {
        if (item === null) view.delete(id);
        else view.set(id, item);
      }
    }
    const previous = this._snapshot;
    let { items, byId } = previous;
    let same = view.size === items.length;
    if (same) {
      let index = 0;
      for (const item of view.values()) {
        if (item !== items[index++]) {
          same = false;
          break;
        }
      }
    }
    if (!same) {
      items = Object.freeze([...view.values()]);
      const map = Object.create(null);
      for (const [id, item] of view) map[id] = item;
      byId = Object.freeze(map);
    }
    if (
      same &&
      previous.status === this._status &&
      previous.revision === this._revision &&
      previous.error === this._error
    ) {
      return false;
    }
    this._snapshot = Object.freeze({
      items,
      byId,
      status: this._status,
      revision: this._revision,
      error: this._error,
    });
    return true;
  }

  _notify() {
    for (const listener of [...this._listeners]) {
      // Unsubscribed by an earlier listener of this same notification: not called.
      if (!this._listeners.has(listener)) continue;
      try {
        listener();
      } catch (err) {
        console.error(`bridge-ipc: ${this.name} store listener failed`, err);
      }
    }
  }
}

/**
 * A live store over collection `name` (see LiveCollection). Each call makes a new store;
 * `sharedCollection` returns one per client and name.
 * @param {import("./client.js").BridgeClient} client
 * @param {string} name e.g. "llm-config".
 * @param {{schedule?: (flush: () => void) => void}} [options]
 * @returns {LiveCollection}
 */
export function liveCollection(client, name, options) {
  return new LiveCollection(client, name, options);
}

/** `liveCollection(client, "llm-config")`. */
export function liveConfigs(client, options) {
  return liveCollection(client, "llm-config", options);
}

const shared = new WeakMap();

/**
 * The one store of `client` and `name` that the React hooks and Svelte stores share
 * (made on first use, kept as long as the client lives).
 * @param {import("./client.js").BridgeClient} client
 * @param {string} name
 * @returns {LiveCollection}
 */
export function sharedCollection(client, name) {
  let byName = shared.get(client);
  if (!byName) {
    byName = new Map();
    shared.set(client, byName);
  }
  let store = byName.get(name);
  if (!store) {
    store = new LiveCollection(client, name);
    byName.set(name, store);
  }
  return store;
}
