// The renderer client's long-operation support against a real `bridge serve`:
// invoke(..., {onProgress, signal}) on `llm-config:test` (a small model-list server on
// 127.0.0.1 stands in for the provider), and the `handshake-refused` status detail.
// Run by `make js-test` (node --experimental-websocket --test tests/js/).

import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { sidecarIn } from "./helpers.mjs";
import { BridgeClient, BridgeError, HANDSHAKE_REFUSED_CAUSES } from "../../clients/js/src/index.js";

const KEY = "canary-js-7f3a9c1e5b2d8046";
const MODELS = ["gpt-4o", "gpt-4o-mini"];

/** An OpenAI-shaped `GET /v1/models` on 127.0.0.1 (port 0); `stall` holds every request. */
async function fakeProvider({ stall = false } = {}) {
  const seen = { received: null, dropped: null };
  const received = new Promise((resolve) => (seen.received = resolve));
  const dropped = new Promise((resolve) => (seen.dropped = resolve));
  const held = new Set();
  const server = createServer((req, res) => {
    seen.received();
    if (stall) {
      held.add(res);
      req.socket.on("close", () => seen.dropped());
      return;
    }
    const ok = req.headers.authorization === `Bearer ${KEY}`;
    res.writeHead(ok ? 200 : 401, { "content-type": "application/json" });
    res.end(JSON.stringify(ok ? { object: "list", data: MODELS.map((id) => ({ id })) } : { error: {} }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    received,
    dropped,
    close: () => {
      for (const res of held) res.destroy();
      server.close();
    },
  };
}

const draft = (baseUrl) => ({ config: { customName: "Draft", provider: "custom", apiKey: KEY, baseUrl } });
// The sidecar reaches the provider directly even where a proxy is configured.
process.env.NO_PROXY = "127.0.0.1,localhost,::1";
process.env.no_proxy = process.env.NO_PROXY;

test("client: onProgress receives the $/progress values of a test; channels without progress ignore it", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-long-"));
  const provider = await fakeProvider();
  const sidecar = await sidecarIn(dir);
  try {
    const client = new BridgeClient({ url: sidecar.url, token: sidecar.token });
    const values = [];
    const result = await client.invoke("llm-config:test", draft(provider.baseUrl), {
      onProgress: (value) => values.push(value),
    });
    assert.deepEqual([result.ok, result.models], [true, MODELS]);
    assert.deepEqual(values, [
      { kind: "begin", message: "connecting", percentage: 0 },
      { kind: "report", message: "listing", percentage: 50 },
      { kind: "end", message: "ok" },
    ]);
    assert.deepEqual(await client.invoke("llm-config:list", undefined, { onProgress: (v) => values.push(v) }), []);
    assert.equal(values.length, 3);
    client.close();
  } finally {
    provider.close();
    assert.equal(await sidecar.stop(), 0);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("client: aborting the signal cancels a stalled test on the server and rejects at once", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-long-"));
  const provider = await fakeProvider({ stall: true });
  const sidecar = await sidecarIn(dir);
  try {
    const client = new BridgeClient({ url: sidecar.url, token: sidecar.token });
    await client.connect();
    const controller = new AbortController();
    const call = client.invoke("llm-config:test", { ...draft(provider.baseUrl), timeoutMs: 30000 }, {
      signal: controller.signal,
    });
    await provider.received;
    // A read on the same connection is answered while the test stalls.
    assert.equal(await client.invoke("llm-config:read", { id: "00000000-0000-4000-8000-000000000001" }), null);
    const started = Date.now();
    controller.abort();
    await assert.rejects(call, (error) => error.name === "AbortError");
    // The server aborted the outbound request: the provider sees the connection dropped.
    await provider.dropped;
    assert.ok(Date.now() - started < 15000);
    // An already aborted signal rejects without sending anything.
    await assert.rejects(client.invoke("llm-config:list", undefined, { signal: controller.signal }), {
      name: "AbortError",
    });
    // The 4029 bound is per connection and counts running tests: the cancelled one is gone.
    await assert.rejects(
      client.invoke("llm-config:test", { id: "00000000-0000-4000-8000-000000000001" }),
      (error) => error instanceof BridgeError && error.code === 4004,
    );
    client.close();
  } finally {
    provider.close();
    assert.equal(await sidecar.stop(), 0);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("client: handshakes that keep failing before the socket opens are reported as handshake-refused", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-long-"));
  const sidecar = await sidecarIn(dir);
  try {
    // A stale token: the server refuses the handshake (401) before the upgrade.
    const client = new BridgeClient({
      url: sidecar.url,
      token: "s".repeat(43),
      initialDelayMs: 10,
      maxDelayMs: 50,
      handshakeRefusedAfter: 3,
    });
    const details = [];
    const reported = new Promise((resolve) =>
      client.onStatus((status, detail) => {
        if (status !== "reconnecting" || !detail) return;
        details.push(detail);
        if (detail.reason === "handshake-refused") resolve(detail);
      }),
    );
    client.connect();
    const detail = await reported;
    client.close();
    assert.equal(detail.failedHandshakes, 3);
    assert.deepEqual(details.slice(0, 2).map((d) => d.reason), [undefined, undefined]);
    assert.deepEqual(detail.likelyCauses, HANDSHAKE_REFUSED_CAUSES);
    assert.match(detail.message, /origin not allowed/);
    assert.match(detail.message, /token stale/);
  } finally {
    assert.equal(await sidecar.stop(), 0);
    rmSync(dir, { recursive: true, force: true });
  }
});
