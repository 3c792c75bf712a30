// The Electron sidecar hand-off (examples/electron/sidecar.mjs) and the renderer client
// (clients/js/src/client.js, npm bridge-ipc) under plain Node 20, against a real `bridge serve`.
// Run: BRIDGE_PYTHON=.venv/bin/python node --experimental-websocket --test tests/js/

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startSidecar } from "../../examples/electron/sidecar.mjs";
import { OPENAI_KEY, python, sidecarIn } from "./helpers.mjs";
import { BridgeClient, BridgeError, ConnectionLostError, llmConfigApi } from "../../clients/js/src/index.js";


function nextEvent(api) {
  return new Promise((resolve) => {
    const off = api.onChanged((event) => {
      off();
      resolve(event);
    });
  });
}

test("sidecar: ready line handed over, preload API works, stdin EOF stops bridge", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-sidecar-"));
  try {
    const sidecar = await sidecarIn(dir);
    assert.match(sidecar.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
    assert.match(sidecar.token, /^[A-Za-z0-9_-]{32,}$/);
    assert.ok(existsSync(path.join(dir, "connection.json")));

    const client = new BridgeClient({ url: sidecar.url, token: sidecar.token });
    const api = llmConfigApi(client);
    const created = nextEvent(api);
    const view = await api.create({ customName: "Node OpenAI", provider: "openai", apiKey: OPENAI_KEY });
    assert.equal(view.apiKeyPreview, `sk-...${OPENAI_KEY.slice(-3)}`);
    assert.equal(view.apiKey, undefined);
    const event = await created;
    assert.deepEqual([event.type, event.id, event.config.customName], ["created", view.id, "Node OpenAI"]);

    assert.deepEqual((await api.list()).map((v) => v.id), [view.id]);
    const updated = await api.update(view.id, { useAuthHeader: false });
    assert.equal(updated.version, 2);
    assert.deepEqual(await api.refreshCache(), { count: 1, revision: 2 });

    await assert.rejects(
      api.create({ customName: "node openai", provider: "openai", apiKey: OPENAI_KEY }),
      (error) => error instanceof BridgeError && error.code === 4009 && error.name === "DuplicateConfigNameError",
    );
    await assert.rejects(
      api.create({ customName: "x", provider: "google", apiKey: "nope" }),
      (error) =>
        error instanceof BridgeError &&
        error.code === -32602 &&
        error.fieldErrors.length === 1 &&
        error.fieldErrors[0].field === "config.apiKey" &&
        error.fieldErrors[0].code === "API_KEY_FORMAT",
    );
    assert.deepEqual(await api.delete(view.id), { deleted: true });
    client.close();

    assert.equal(await sidecar.stop(), 0);
    assert.ok(!existsSync(path.join(dir, "connection.json")), "connection file removed on exit");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("sidecar: a busy port is reported as an error, not a hang", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-sidecar-"));
  const first = await sidecarIn(dir);
  try {
    const port = new URL(first.url).port;
    await assert.rejects(
      startSidecar({
        command: python,
        args: ["-m", "bridge"],
        serveArgs: ["--data-dir", path.join(dir, "second"), "--secret-backend", "file", "--port", port],
        stderr: "ignore",
      }),
      /could not start/,
    );
  } finally {
    await first.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("client: pending calls fail with ConnectionLostError and the client resyncs after a restart", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-client-"));
  try {
    let sidecar = await sidecarIn(dir);
    const port = new URL(sidecar.url).port;
    const token = sidecar.token;
    const client = new BridgeClient({
      url: () => sidecar.url,
      token: () => token,
      initialDelayMs: 50,
      maxDelayMs: 200,
      connectTimeoutMs: 1000,
    });
    const api = llmConfigApi(client);
    const kept = await api.create({ customName: "Kept", provider: "openai", apiKey: OPENAI_KEY });

    const statuses = [];
    client.onStatus((status) => statuses.push(status));
    assert.equal(await sidecar.stop(), 0);
    await assert.rejects(client._call("llm-config:list"), ConnectionLostError);

    // While the client is away another writer deletes "Kept" and creates "Fresh".
    const events = [];
    client.onChanged((event) => events.push(event));
    const tokenFile = path.join(dir, "token");
    writeFileSync(tokenFile, token, { mode: 0o600 }); // a secret: bridge refuses one others can read
    sidecar = await sidecarIn(dir, ["--port", port, "--token-file", tokenFile]);
    const other = new BridgeClient({ url: sidecar.url, token });
    const otherApi = llmConfigApi(other);
    await otherApi.delete(kept.id);
    const fresh = await otherApi.create({ customName: "Fresh", provider: "openai", apiKey: OPENAI_KEY });
    other.close();

    await client.connect();
    const names = (await api.list()).map((v) => v.customName);
    assert.deepEqual(names, ["Fresh"]);
    // The events missed while away were delivered, in order, once.
    const deadline = Date.now() + 5000;
    while (events.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const seen = events.map((e) => `${e.type}:${e.id}`);
    assert.ok(seen.includes(`deleted:${kept.id}`), seen.join(","));
    assert.ok(seen.includes(`created:${fresh.id}`), seen.join(","));
    assert.ok(statuses.includes("reconnecting"));
    client.close();
    assert.equal(await sidecar.stop(), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
