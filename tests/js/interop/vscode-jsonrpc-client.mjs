// Interop: npm `vscode-jsonrpc` (the LSP library VS Code uses) against a real `bridge serve`,
// over a WebSocket through `vscode-ws-jsonrpc`'s message reader/writer on an `ws` socket.
// Usage: node vscode-jsonrpc-client.mjs <ws-url> <token> <provider-base-url> <stalled-base-url>
//   → one JSON object on stdout; it cancels the stalled test when a line arrives on stdin.
// Checks a call, a cancellation (CancellationTokenSource → `$/cancelRequest` → -32800) and
// progress (`workDoneToken` → `$/progress` routed by the library's onProgress).
// Run by tests/e2e/test_interop_clients.py, which asserts on the output.

import {
  CancellationTokenSource,
  createMessageConnection,
  ProgressType,
} from "vscode-jsonrpc";
import { WebSocketMessageReader, WebSocketMessageWriter } from "vscode-ws-jsonrpc";
import { once } from "node:events";
import { createInterface } from "node:readline";
import WebSocket from "ws";

const [url, token, providerUrl, stalledUrl] = process.argv.slice(2);
const KEY = "canary-interop-5e0c2b7a9d41f368";

const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
await new Promise((resolve, reject) => {
  ws.once("open", resolve);
  ws.once("error", reject);
});

/** vscode-ws-jsonrpc's IWebSocket over a `ws` client socket (its public shape). */
const socket = {
  send: (content) => ws.send(content),
  onMessage: (cb) => ws.on("message", (data) => cb(data.toString("utf8"))),
  onError: (cb) => ws.on("error", cb),
  onClose: (cb) => ws.on("close", (code, reason) => cb(code, reason.toString())),
  dispose: () => ws.close(),
};
const connection = createMessageConnection(
  new WebSocketMessageReader(socket),
  new WebSocketMessageWriter(socket),
);
connection.listen();

const plain = (error) => ({ code: error.code, message: error.message, data: error.data });
const draft = (baseUrl) => ({ customName: "Draft", provider: "custom", apiKey: KEY, baseUrl });
const out = {};

// A call.
out.hello = await connection.sendRequest("bridge:hello", {});

// Progress: the library routes $/progress with our token to this handler.
out.progress = [];
connection.onProgress(new ProgressType(), "vs-progress-1", (value) => out.progress.push(value));
out.tested = await connection.sendRequest("llm-config:test", {
  config: draft(providerUrl),
  workDoneToken: "vs-progress-1",
});

// A cancellation: the library sends $/cancelRequest; the server answers -32800.
const source = new CancellationTokenSource();
const started = Date.now();
const pending = connection
  .sendRequest("llm-config:test", { config: draft(stalledUrl), timeoutMs: 30000 }, source.token)
  .then((result) => ({ result }), (error) => ({ error: plain(error) }));
// A later read on the same connection is answered while the test stalls (long-running).
out.readWhileStalled = await connection.sendRequest("llm-config:list", {});
// The test runner writes a line once the stalled provider has received the request.
const lines = createInterface({ input: process.stdin });
await once(lines, "line");
lines.close();
source.cancel();
out.cancelled = await pending;
out.cancelledAfterMs = Date.now() - started;

connection.dispose();
ws.close();
process.stdout.write(JSON.stringify(out), () => process.exit(0));
