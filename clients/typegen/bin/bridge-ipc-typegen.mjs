#!/usr/bin/env node
// bridge-ipc-typegen — TypeScript types for a bridge application's channels and notifications.
//
//   bridge-ipc-typegen --openrpc openrpc.json --out src/bridge-types.d.ts
//   bridge-ipc-typegen --connection-file DATA_DIR/connection.json --out src/bridge-types.d.ts
//   bridge-ipc-typegen --url ws://127.0.0.1:PORT --token-file FILE --out src/bridge-types.d.ts
//   ... --hash-out src/bridge-schema.js   (also: .cjs, .json)
//
// From a running server it calls `rpc.discover` and `bridge:hello` (token as
// `Authorization: Bearer`; or BRIDGE_TOKEN); the types carry the document's `schemaHash`
// (hello's; computed from the file with --openrpc), and --hash-out writes it as a module
// exporting SCHEMA_HASH, for bridge-ipc's `schemaHash` option (contract drift is then
// reported at connect). --check writes nothing and exits 1 when --out or --hash-out differs (for CI).
import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { generateTypes, schemaHash, schemaHashModule } from "../generate.mjs";

const USAGE =
  "usage: bridge-ipc-typegen (--openrpc FILE | --connection-file FILE | --url URL [--token-file FILE]) [--out FILE] [--hash-out FILE.js|.mjs|.cjs|.json] [--check]";
const TIMEOUT_MS = 10000;

/** Call rpc.discover and bridge:hello on `url` with `token`; resolves with `{doc, hash}`. */
function discover(url, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to rpc.discover from ${url} within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    const answers = new Map();
    ws.on("open", () =>
      ws.send(
        JSON.stringify([
          { jsonrpc: "2.0", id: 1, method: "rpc.discover" },
          { jsonrpc: "2.0", id: 2, method: "bridge:hello" },
        ]),
      ),
    );
    ws.on("message", (data) => {
      const message = JSON.parse(String(data));
      for (const item of Array.isArray(message) ? message : [message]) {
        if (item.id === 1 || item.id === 2) answers.set(item.id, item); // else a notification
      }
      if (answers.size < 2) return;
      clearTimeout(timer);
      ws.close();
      const failed = [...answers.values()].find((item) => item.error);
      if (failed) reject(new Error(`${failed.id === 1 ? "rpc.discover" : "bridge:hello"} failed: ${failed.error.message}`));
      else resolve({ doc: answers.get(1).result, hash: answers.get(2).result.schemaHash });
    });
    ws.on("unexpected-response", (_request, response) => {
      clearTimeout(timer);
      reject(new Error(`${url} refused the connection: HTTP ${response.statusCode}`));
    });
    ws.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

async function main() {
  const { values } = parseArgs({
    options: {
      openrpc: { type: "string" },
      "connection-file": { type: "string" },
      url: { type: "string" },
      "token-file": { type: "string" },
      out: { type: "string" },
      "hash-out": { type: "string" },
      check: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let doc;
  let hash;
  let source;
  if (values.openrpc) {
    doc = JSON.parse(await readFile(values.openrpc, "utf8"));
    hash = schemaHash(doc);
    source = values.openrpc;
  } else if (values["connection-file"] || values.url) {
    let url = values.url;
    let token = process.env.BRIDGE_TOKEN;
    if (values["connection-file"]) ({ url, token } = JSON.parse(await readFile(values["connection-file"], "utf8")));
    if (values["token-file"]) token = (await readFile(values["token-file"], "utf8")).trim();
    if (!token) throw new Error("no token: give --token-file, --connection-file or BRIDGE_TOKEN");
    ({ doc, hash } = await discover(url, token));
    source = "rpc.discover";
  } else {
    console.error(USAGE);
    return 2;
  }
  const outputs = [[values.out, await generateTypes(doc, { schemaHash: hash })]];
  const hashOut = values["hash-out"];
  if (hashOut) {
    const format = hashOut.endsWith(".json") ? "json" : hashOut.endsWith(".cjs") ? "cjs" : "esm";
    outputs.push([hashOut, schemaHashModule(hash, format)]);
  }
  let stale = 0;
  for (const [out, text] of outputs) {
    if (!out) {
      process.stdout.write(text);
    } else if (values.check) {
      const current = await readFile(out, "utf8").catch(() => "");
      if (current === text) continue;
      console.error(`stale: ${out} differs from ${source}; run bridge-ipc-typegen again`);
      stale = 1;
    } else {
      await writeFile(out, text);
      console.error(`wrote ${out}`);
    }
  }
  return stale;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(`bridge-ipc-typegen: ${error.message}`);
    process.exitCode = 1;
  },
);
