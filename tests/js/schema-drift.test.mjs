// Contract drift caught at connect (DESIGN §8): BridgeClient compares the schemaHash its
// types came from with bridge:hello's and reports a difference — onWarning listeners, else
// console.warn — never silently. Real servers: a stock sidecar and an application's own
// (one channel and one topic more); bridge-ipc-typegen's hash for that application.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { ROOT, appSidecarIn, sidecarIn } from "./helpers.mjs";
import { BridgeClient, SCHEMA_HASH } from "../../clients/js/src/index.js";

const TYPEGEN = path.join(ROOT, "clients", "typegen", "bin", "bridge-ipc-typegen.mjs");
const run = promisify(execFile);

/** Run `body` with console.warn recorded (restored after). */
async function withConsoleWarn(body) {
  const warned = [];
  const original = console.warn;
  console.warn = (...args) => warned.push(args.join(" "));
  try {
    await body(warned);
  } finally {
    console.warn = original;
  }
  return warned;
}

/** A raw `bridge:hello` through a throwaway client whose types match whatever the server says. */
async function announcedHash(sidecar) {
  const probe = new BridgeClient({ url: sidecar.url, token: sidecar.token });
  probe.onWarning(() => {}); // the probe expects nothing in particular: keep the console quiet
  try {
    return (await probe.invoke("bridge:hello")).schemaHash;
  } finally {
    probe.close();
  }
}

test("schema drift: the package's own hash is the committed document's, and a stock sidecar matches it", async () => {
  const committed = readFileSync(path.join(ROOT, "schemas", "openrpc.json"));
  const { createHash } = await import("node:crypto");
  assert.equal(SCHEMA_HASH, "sha256:" + createHash("sha256").update(committed).digest("hex"));

  const dir = mkdtempSync(path.join(tmpdir(), "bridge-drift-"));
  try {
    // Sidecar mode (--exit-with-parent) also serves bridge:shutdown: the hash must not move.
    const sidecar = await sidecarIn(dir);
    const warnings = [];
    const warned = await withConsoleWarn(async () => {
      const client = new BridgeClient({ url: sidecar.url, token: sidecar.token });
      const hello = await client.invoke("bridge:hello");
      assert.ok(hello.channels.includes("bridge:shutdown"));
      assert.equal(hello.schemaHash, SCHEMA_HASH);
      client.onWarning((warning) => warnings.push(warning));
      assert.equal(client.schemaMismatch, null);
      client.close();
    });
    assert.deepEqual(warnings, []);
    assert.deepEqual(warned, []);
    assert.equal(await sidecar.stop(), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("schema drift: a server with an application channel is reported with both hashes, once", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-drift-"));
  try {
    const sidecar = await appSidecarIn(dir);
    const actual = await announcedHash(sidecar);
    assert.notEqual(actual, SCHEMA_HASH);

    // A listener attached before connecting: it gets the report; the console stays quiet.
    const warnings = [];
    const warned = await withConsoleWarn(async () => {
      const client = new BridgeClient({ url: sidecar.url, token: sidecar.token });
      client.onWarning((warning) => warnings.push(warning));
      const echoed = await client.invoke("app:echo", { text: "drift" }); // the connection proceeds
      assert.deepEqual(echoed, { text: "drift", length: 5 });
      assert.deepEqual(client.schemaMismatch, warnings[0]);
      // A late listener is told at once.
      const late = [];
      client.onWarning((warning) => late.push(warning));
      assert.deepEqual(late, warnings);
      client.close();
    });
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0].kind, "schema-mismatch");
    assert.equal(warnings[0].expected, SCHEMA_HASH);
    assert.equal(warnings[0].actual, actual);
    assert.ok(warnings[0].message.includes(SCHEMA_HASH) && warnings[0].message.includes(actual));
    assert.deepEqual(warned, []);

    // No listener: the same report goes to console.warn.
    const warnedAlone = await withConsoleWarn(async () => {
      const client = new BridgeClient({ url: sidecar.url, token: sidecar.token });
      await client.connect();
      client.close();
    });
    assert.equal(warnedAlone.length, 1);
    assert.ok(warnedAlone[0].includes(SCHEMA_HASH) && warnedAlone[0].includes(actual), warnedAlone[0]);
    assert.equal(await sidecar.stop(), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("schema drift: bridge-ipc-typegen's hash for the application is what the server announces", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bridge-drift-"));
  try {
    const sidecar = await appSidecarIn(dir);
    const actual = await announcedHash(sidecar);
    const env = { ...process.env, BRIDGE_TOKEN: sidecar.token };
    // From the running server (rpc.discover + bridge:hello).
    const hashModule = path.join(dir, "bridge-schema.mjs");
    const types = path.join(dir, "bridge-types.d.ts");
    await run(process.execPath, [TYPEGEN, "--url", sidecar.url, "--out", types, "--hash-out", hashModule], { env });
    const { SCHEMA_HASH: generated } = await import(pathToFileURL(hashModule).href);
    assert.equal(generated, actual);
    assert.ok(readFileSync(types, "utf8").includes(`export type SchemaHash = "${actual}";`));
    // From a file holding the document as rpc.discover sent it (compact, unsorted): the
    // hash is computed from the document itself.
    const probe = new BridgeClient({ url: sidecar.url, token: sidecar.token, schemaHash: generated });
    const document = await probe.invoke("rpc.discover");
    probe.close();
    const file = path.join(dir, "openrpc.json");
    writeFileSync(file, JSON.stringify(document));
    const jsonOut = path.join(dir, "hash.json");
    await run(process.execPath, [TYPEGEN, "--openrpc", file, "--out", types, "--hash-out", jsonOut]);
    assert.deepEqual(JSON.parse(readFileSync(jsonOut, "utf8")), { schemaHash: actual });

    const warnings = [];
    const warned = await withConsoleWarn(async () => {
      const client = new BridgeClient({ url: sidecar.url, token: sidecar.token, schemaHash: generated });
      client.onWarning((warning) => warnings.push(warning));
      await client.connect();
      assert.equal(client.schemaMismatch, null);
      client.close();
    });
    assert.deepEqual(warnings, []);
    assert.deepEqual(warned, []);
    assert.equal(await sidecar.stop(), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
