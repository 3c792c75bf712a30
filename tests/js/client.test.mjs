// The renderer client (clients/js/src/client.js, npm bridge-ipc) under plain Node 20 against a
// real `bridge serve`: regressions found in review.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { OPENAI_KEY, sidecarIn } from "./helpers.mjs";
import { BridgeClient, ConnectionLostError, llmConfigApi } from "../../clients/js/src/index.js";


test("client: a config created while away from an initially empty server is delivered as created", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-client-"));
  try {
    let sidecar = await sidecarIn(dir);
    const port = new URL(sidecar.url).port;
    const token = sidecar.token;
    const client = new BridgeClient({ url: () => sidecar.url, token, initialDelayMs: 50, maxDelayMs: 200 });
    await client.connect(); // first snapshot: revision 0, no configs
    assert.equal(client.revision, 0);
    const events = [];
    client.onChanged((event) => events.push(event));

    assert.equal(await sidecar.stop(), 0);
    const tokenFile = path.join(dir, "token");
    writeFileSync(tokenFile, token, { mode: 0o600 }); // a secret: bridge refuses one others can read
    sidecar = await sidecarIn(dir, ["--port", port, "--token-file", tokenFile]);
    const other = new BridgeClient({ url: sidecar.url, token });
    const fresh = await llmConfigApi(other).create({ customName: "Fresh", provider: "openai", apiKey: OPENAI_KEY });
    other.close();

    await client.connect(); // resolves once the resync has delivered the missed events
    assert.deepEqual(
      events.map((e) => [e.type, e.id, e.config?.customName]),
      [["created", fresh.id, "Fresh"]],
    );
    client.close();
    assert.equal(await sidecar.stop(), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("client: close() before the first connection fails waiting calls instead of leaving them pending", async () => {
  // The url provider never resolves: the client never gets a socket.
  const client = new BridgeClient({ url: () => new Promise(() => {}), token: "t".repeat(43) });
  const call = client.invoke("llm-config:list");
  client.close();
  await assert.rejects(call, ConnectionLostError);
  assert.equal(client.status, "closed");
});
