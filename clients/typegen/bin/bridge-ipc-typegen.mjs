#!/usr/bin/env node
// bridge-ipc-typegen — TypeScript types for a bridge application's channels and notifications.
//
//   bridge-ipc-typegen --openrpc openrpc.json --out src/bridge-types.d.ts
//   bridge-ipc-typegen --connection-file DATA_DIR/connection.json --out src/bridge-types.d.ts
//   bridge-ipc-typegen --url ws://127.0.0.1:PORT --token-file FILE --out src/bridge-types.d.ts
//
// From a running server it calls `rpc.discover` (token as `Authorization: Bearer`; or
// BRIDGE_TOKEN). --check writes nothing and exits 1 when --out differs (for CI).
import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { generateTypes } from "../generate.mjs";

const USAGE = "usage: bridge-ipc-typegen (--openrpc FILE | --connection-file FILE | --url URL [--token-file FILE]) [--out FILE] [--check]";
const TIMEOUT_MS = 10000;

/** Call rpc.discover on `url` with `token`; resolves with the OpenRPC document. */
function discover(url, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to rpc.discover from ${url} within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    ws.on("open", () => ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "rpc.discover" })));
    ws.on("message", (data) => {
      const message = JSON.parse(String(data));
      if (message.id !== 1) return; // a notification
      clearTimeout(timer);
      ws.close();
      if (message.error) reject(new Error(`rpc.discover failed: ${message.error.message}`));
      else resolve(message.result);
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
      check: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let doc;
  let source;
  if (values.openrpc) {
    doc = JSON.parse(await readFile(values.openrpc, "utf8"));
    source = values.openrpc;
  } else if (values["connection-file"] || values.url) {
    let url = values.url;
    let token = process.env.BRIDGE_TOKEN;
    if (values["connection-file"]) ({ url, token } = JSON.parse(await readFile(values["connection-file"], "utf8")));
    if (values["token-file"]) token = (await readFile(values["token-file"], "utf8")).trim();
    if (!token) throw new Error("no token: give --token-file, --connection-file or BRIDGE_TOKEN");
    doc = await discover(url, token);
    source = "rpc.discover";
  } else {
    console.error(USAGE);
    return 2;
  }
  const output = await generateTypes(doc);
  if (!values.out) {
    process.stdout.write(output);
    return 0;
  }
  if (values.check) {
    const current = await readFile(values.out, "utf8").catch(() => "");
    if (current === output) return 0;
    console.error(`stale: ${values.out} differs from ${source}; run bridge-ipc-typegen again`);
    return 1;
  }
  await writeFile(values.out, output);
  console.error(`wrote ${values.out}`);
  return 0;
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
