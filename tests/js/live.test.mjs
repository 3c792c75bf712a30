// The live collection store (clients/js/src/live.js; npm bridge-ipc `liveConfigs`) and its
// Svelte adapter under plain Node 20, against a real `bridge serve`: identity rules,
// batching, resync after a restart, unsubscribe during a notification, two stores on
// one client.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { derived, get } from "svelte/store";
import { OPENAI_KEY, sidecarIn } from "./helpers.mjs";
import { BridgeClient, liveCollection, liveConfigs } from "../../clients/js/src/index.js";
import { llmConfigStore } from "../../clients/js/src/svelte.js";

const ANTHROPIC_KEY = "sk-ant-" + "Z9y8X7w6V5u4T3s2R1q0".repeat(3);
const WAIT_MS = 10000;

/** A flush the test runs by hand: the store's batching made deterministic. */
function manualSchedule() {
  const pending = [];
  const schedule = (flush) => pending.push(flush);
  schedule.flush = () => {
    for (const flush of pending.splice(0)) flush();
  };
  schedule.pending = () => pending.length;
  return schedule;
}

/** Resolve once `predicate(store.getSnapshot())` holds (checked after each notification). */
function until(store, predicate, what = "the expected snapshot") {
  if (predicate(store.getSnapshot())) return Promise.resolve(store.getSnapshot());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(store.getSnapshot().status)}`));
    }, WAIT_MS);
    const off = store.subscribe(() => {
      if (!predicate(store.getSnapshot())) return;
      clearTimeout(timer);
      off();
      resolve(store.getSnapshot());
    });
  });
}

/** Resolve once `count` llm-config:changed events reached `client`. */
function events(client, count) {
  const seen = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`saw ${seen.length} of ${count} events`)), WAIT_MS);
    const off = client.onChanged((event) => {
      seen.push(event);
      if (seen.length < count) return;
      clearTimeout(timer);
      off();
      resolve(seen);
    });
  });
}

/**
 * Fault injection on a real connection: llm-config shown to the client as a collection
 * named "mirror" (whose events the client passes on unfiltered: only the store's own
 * rules stand between them and the UI), each change frame delivered twice, then the
 * previous one replayed (stale).
 */
class MirrorWebSocket extends WebSocket {
  send(data) {
    super.send(String(data).replace('"method":"mirror:', '"method":"llm-config:'));
  }

  set onmessage(handler) {
    let previous = null;
    super.onmessage = (event) => {
      if (typeof event.data !== "string" || !event.data.includes('"llm-config:changed"')) {
        handler(event);
        return;
      }
      const data = event.data.replace('"llm-config:changed"', '"mirror:changed"');
      handler(new MessageEvent("message", { data }));
      handler(new MessageEvent("message", { data })); // duplicate
      if (previous) handler(new MessageEvent("message", { data: previous })); // stale
      previous = data;
    };
  }
}

/** Resolve once `count` events of `topic` reached `client`. */
function topicEvents(client, topic, count) {
  const seen = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`saw ${seen.length} of ${count} ${topic} events`)), WAIT_MS);
    const off = client.on(topic, (event) => {
      seen.push(event);
      if (seen.length < count) return;
      clearTimeout(timer);
      off();
      resolve(seen);
    });
  });
}

async function withServer(run) {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-live-"));
  const sidecar = await sidecarIn(dir);
  try {
    await run(sidecar, dir);
  } finally {
    await sidecar.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const openai = (name) => ({ customName: name, provider: "openai", apiKey: OPENAI_KEY });

test("live: unchanged items keep identity; no-op, duplicate and stale events keep the snapshot", async () => {
  await withServer(async (sidecar) => {
    const writer = new BridgeClient({ url: sidecar.url, token: sidecar.token });
    const a = await writer.invoke("llm-config:create", { config: openai("A") });
    const b = await writer.invoke("llm-config:create", { config: openai("B") });

    const reader = new BridgeClient({ url: sidecar.url, token: sidecar.token, WebSocket: MirrorWebSocket });
    const schedule = manualSchedule();
    const store = liveCollection(reader, "mirror", { schedule });
    let notified = 0;
    store.subscribe(() => notified++);
    await reader.connect();
    // Wait for the store's own snapshot to be queued, then apply it.
    while (store.getSnapshot().status !== "open") {
      await new Promise((resolve) => setImmediate(resolve));
      schedule.flush();
    }
    const first = store.getSnapshot();
    assert.deepEqual(
      first.items.map((item) => item.customName),
      ["A", "B"],
    );
    assert.equal(first.byId[a.id], first.items[0]);
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first.items) && Object.isFrozen(first.items[0]));
    assert.equal(store.getSnapshot(), first, "getSnapshot returns the same object between changes");

    // An effective update of A (its frame delivered twice): a new snapshot, a new A, the same B.
    notified = 0;
    const arrived = topicEvents(reader, "mirror:changed", 2);
    await writer.invoke("llm-config:update", { id: a.id, updates: { customName: "A2" } });
    await arrived;
    schedule.flush();
    const second = store.getSnapshot();
    assert.equal(notified, 1);
    assert.notEqual(second, first);
    assert.notEqual(second.items, first.items);
    assert.equal(second.byId[a.id].customName, "A2");
    assert.notEqual(second.byId[a.id], first.byId[a.id]);
    assert.equal(second.byId[b.id], first.byId[b.id], "B did not change: same object");
    assert.equal(second.revision, first.revision + 1);

    // A duplicate alone, then a stale replay alone: nothing changes, nobody is notified.
    notified = 0;
    const replayed = topicEvents(reader, "mirror:changed", 3);
    await writer.invoke("llm-config:update", { id: b.id, updates: { customName: "B2" } });
    const [bEvent, bDuplicate, aStale] = await replayed;
    assert.equal(bEvent.id, b.id);
    assert.equal(bDuplicate.revision, bEvent.revision);
    assert.equal(aStale.id, a.id);
    assert.ok(aStale.revision < bEvent.revision);
    schedule.flush();
    const third = store.getSnapshot();
    assert.equal(notified, 1);
    assert.equal(third.byId[a.id], second.byId[a.id], "a stale replay of A's event keeps A");
    assert.equal(third.byId[b.id].customName, "B2");
    assert.equal(third.revision, bEvent.revision);

    // The same frames once more (each a duplicate now): the same snapshot, no notification.
    notified = 0;
    const again = topicEvents(reader, "mirror:changed", 3);
    await writer.invoke("llm-config:update", { id: b.id, updates: { customName: "B3" } });
    await again;
    schedule.flush();
    const fourth = store.getSnapshot();
    assert.equal(notified, 1);
    assert.equal(fourth.byId[a.id], third.byId[a.id]);
    const beforeNoop = fourth;

    // A no-op update: no event, no flush, no notification, the same snapshot.
    notified = 0;
    const same = await writer.invoke("llm-config:update", { id: a.id, updates: { customName: "A2" } });
    assert.equal(same.version, fourth.byId[a.id].version);
    await reader.invoke("bridge:hello"); // a round trip after it: an event would have come first
    assert.equal(schedule.pending(), 0);
    schedule.flush();
    assert.equal(notified, 0);
    assert.equal(store.getSnapshot(), beforeNoop);

    store.close();
    reader.close();
    writer.close();
  });
});

test("live: a burst of 50 changes in one frame notifies once per frame: once by hand, at most once per 16 ms window by timer", async () => {
  await withServer(async (sidecar) => {
    const writer = new BridgeClient({ url: sidecar.url, token: sidecar.token });
    const a = await writer.invoke("llm-config:create", { config: openai("A") });
    const reader = new BridgeClient({ url: sidecar.url, token: sidecar.token });
    const schedule = manualSchedule();
    const manual = liveConfigs(reader, { schedule });
    const timed = liveConfigs(reader); // default scheduler: a 16 ms timer under Node
    await reader.connect();
    while (manual.getSnapshot().status !== "open") {
      await new Promise((resolve) => setImmediate(resolve));
      schedule.flush();
    }
    await until(timed, (s) => s.status === "open" && s.items.length === 1);
    let manualNotified = 0;
    let timedNotified = 0;
    manual.subscribe(() => manualNotified++);
    timed.subscribe(() => timedNotified++);

    // 50 updates in one JSON-RPC batch: one frame in, 50 notification frames out.
    const arrived = events(reader, 50);
    const arrivals = [];
    const offArrivals = reader.onChanged(() => arrivals.push(performance.now()));
    const raw = new WebSocket(sidecar.url, ["bridge.v1", `bridge.v1.token.${sidecar.token}`]);
    await new Promise((resolve, reject) => {
      raw.onopen = resolve;
      raw.onerror = reject;
    });
    const answered = new Promise((resolve) => {
      raw.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (Array.isArray(message)) resolve(message);
      };
    });
    raw.send(
      JSON.stringify(
        Array.from({ length: 50 }, (_, i) => ({
          jsonrpc: "2.0",
          id: i + 1,
          method: "llm-config:update",
          params: { id: a.id, updates: { customName: `A${i + 1}` } },
        })),
      ),
    );
    const replies = await answered;
    assert.equal(replies.filter((reply) => reply.result).length, 50);
    await arrived;
    raw.close();

    assert.ok(schedule.pending() <= 1, "one flush is scheduled for the whole burst");
    schedule.flush();
    assert.equal(manualNotified, 1);
    assert.equal(manual.getSnapshot().items[0].customName, "A50");
    assert.equal(manual.getSnapshot().items[0].version, 51);

    const last = await until(timed, (s) => s.items[0].customName === "A50", "A50 in the timed store");
    assert.equal(last.items[0].version, 51);
    offArrivals();
    // The server commits the 50 writes one by one, so their events arrive spread over
    // `span` ms: one notification per 16 ms window at most, never one per event.
    const span = arrivals.at(-1) - arrivals[0];
    const windows = Math.floor(span / 16) + 1;
    assert.ok(timedNotified >= 1, "notified");
    assert.ok(
      timedNotified <= windows && timedNotified < 50,
      `50 events over ${span.toFixed(0)} ms caused ${timedNotified} notifications (${windows} windows)`,
    );

    manual.close();
    timed.close();
    reader.close();
    writer.close();
  });
});

test("live: a server restart goes reconnecting → open and resyncs missed changes, keeping unchanged items", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-live-"));
  let sidecar = await sidecarIn(dir);
  try {
    const port = new URL(sidecar.url).port;
    const token = sidecar.token;
    const writer = new BridgeClient({ url: sidecar.url, token });
    const kept = await writer.invoke("llm-config:create", { config: openai("Kept") });
    const changed = await writer.invoke("llm-config:create", { config: openai("Changed") });
    const gone = await writer.invoke("llm-config:create", { config: openai("Gone") });
    writer.close();

    const reader = new BridgeClient({ url: () => sidecar.url, token, initialDelayMs: 50, maxDelayMs: 200 });
    const store = liveConfigs(reader);
    const statuses = [];
    store.subscribe(() => {
      const { status } = store.getSnapshot();
      if (statuses.at(-1) !== status) statuses.push(status);
    });
    const before = await until(store, (s) => s.status === "open" && s.items.length === 3);

    assert.equal(await sidecar.stop(), 0);
    await until(store, (s) => s.status === "reconnecting");
    assert.equal(store.getSnapshot().items, before.items, "the list stays while reconnecting");

    const tokenFile = path.join(dir, "token");
    writeFileSync(tokenFile, token, { mode: 0o600 }); // a secret: bridge refuses one others can read
    sidecar = await sidecarIn(dir, ["--port", port, "--token-file", tokenFile]);
    const other = new BridgeClient({ url: sidecar.url, token });
    await other.invoke("llm-config:update", { id: changed.id, updates: { apiKey: OPENAI_KEY.replace("A1", "Q9") } });
    await other.invoke("llm-config:delete", { id: gone.id });
    const fresh = await other.invoke("llm-config:create", {
      config: { customName: "Fresh", provider: "anthropic", apiKey: ANTHROPIC_KEY },
    });
    const revision = (await other.invoke("bridge:hello")).revision;
    other.close();

    const after = await until(store, (s) => s.status === "open" && s.revision === revision, "the resynced snapshot");
    assert.deepEqual(
      after.items.map((item) => item.customName),
      ["Kept", "Changed", "Fresh"],
    );
    assert.equal(after.byId[kept.id], before.byId[kept.id], "an item unchanged across the restart keeps its identity");
    assert.equal(after.byId[changed.id].version, 2);
    assert.equal(after.byId[gone.id], undefined);
    assert.equal(after.byId[fresh.id].provider, "anthropic");
    assert.deepEqual(statuses.slice(-2), ["reconnecting", "open"]);
    assert.equal(after.error, null);
    store.close();
    reader.close();
  } finally {
    await sidecar.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("live: a listener unsubscribed during a notification is not called; two stores on one client", async () => {
  await withServer(async (sidecar) => {
    const client = new BridgeClient({ url: sidecar.url, token: sidecar.token });
    const one = liveConfigs(client);
    const two = liveCollection(client, "llm-config");
    assert.notEqual(one, two);
    await until(one, (s) => s.status === "open");
    await until(two, (s) => s.status === "open");

    const calls = [];
    let offSecond = null;
    const offFirst = one.subscribe(() => {
      calls.push("first");
      offSecond(); // removes the next listener in the middle of this notification
      offFirst(); // and itself
    });
    offSecond = one.subscribe(() => calls.push("second"));
    const third = [];
    one.subscribe(() => third.push(one.getSnapshot().items.length));

    const a = await client.invoke("llm-config:create", { config: openai("A") });
    await until(one, (s) => s.items.length === 1);
    await until(two, (s) => s.items.length === 1);
    assert.deepEqual(calls, ["first"]);
    assert.deepEqual(third, [1]);

    // Closing one store leaves the other working on the same client.
    one.close();
    await client.invoke("llm-config:update", { id: a.id, updates: { customName: "A2" } });
    const later = await until(two, (s) => s.items[0]?.customName === "A2");
    assert.equal(later.items.length, 1);
    assert.equal(one.getSnapshot().items[0].customName, "A", "a closed store no longer changes");
    assert.deepEqual(calls, ["first"]);
    assert.deepEqual(third, [1]);
    two.close();
    client.close();
  });
});

test("svelte: the readable store gives snapshots to get(), derived() and subscribers", async () => {
  await withServer(async (sidecar) => {
    const client = new BridgeClient({ url: sidecar.url, token: sidecar.token });
    const configs = llmConfigStore(client);
    const names = derived(configs, ($configs) => $configs.items.map((item) => item.customName));
    const seen = [];
    const unsubscribe = names.subscribe((value) => seen.push(value));
    assert.deepEqual(seen, [[]], "run is called at once with the current value");

    await client.invoke("llm-config:create", { config: openai("Svelte") });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no update")), WAIT_MS);
      const off = configs.subscribe(($configs) => {
        if ($configs.items.length !== 1) return;
        clearTimeout(timer);
        queueMicrotask(() => off());
        resolve();
      });
    });
    assert.equal(get(configs).status, "open");
    assert.deepEqual(get(names), ["Svelte"]);
    assert.deepEqual(seen.at(-1), ["Svelte"]);
    unsubscribe();
    client.close();
  });
});
