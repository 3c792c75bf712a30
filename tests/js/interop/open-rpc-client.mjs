// Interop: npm `@open-rpc/client-js` (WebSocketTransport) against a real `bridge serve`.
// Usage: node open-rpc-client.mjs <ws-url> <token>  → one JSON object on stdout.
// WebSocketTransport takes only a URI (no headers, no subprotocols): the token goes in `?token=`.
// Run by tests/e2e/test_interop_clients.py, which asserts on the output.

import { Client, RequestManager, WebSocketTransport } from "@open-rpc/client-js";

const [url, token] = process.argv.slice(2);
const ANTHROPIC_KEY = "sk-ant-" + "Z9y8X7w6V5u4T3s2R1q0".repeat(3);
const TIMEOUT_MS = 10_000;

const transport = new WebSocketTransport(`${url}/?token=${encodeURIComponent(token)}`);
const client = new Client(new RequestManager([transport]));
const notifications = [];
const gotNotification = new Promise((resolve) =>
  client.onNotification((message) => {
    notifications.push(message);
    resolve();
  }),
);
const plain = (error) => ({ code: error.code, message: error.message, data: error.data });

const out = {};
// client-js sends `params: []` when a request has none: accepted by channels that take
// no params; an array for a by-name channel is still -32602 (DESIGN §5).
out.withoutParams = await client.request({ method: "rpc.discover" }, TIMEOUT_MS);
out.arrayForByName = await client
  .request({ method: "llm-config:read", params: ["not-by-name"] }, TIMEOUT_MS)
  .then(() => null, plain);
out.discover = await client.request({ method: "rpc.discover", params: {} }, TIMEOUT_MS);
out.created = await client.request(
  {
    method: "llm-config:create",
    params: { config: { customName: "From open-rpc", provider: "anthropic", apiKey: ANTHROPIC_KEY } },
  },
  TIMEOUT_MS,
);
out.read = await client.request({ method: "llm-config:read", params: { id: out.created.id } }, TIMEOUT_MS);
out.conflict = await client
  .request(
    { method: "llm-config:update", params: { id: out.created.id, updates: { customName: "x" }, expectedVersion: 7 } },
    TIMEOUT_MS,
  )
  .then(() => null, plain);
await Promise.race([
  gotNotification,
  new Promise((_, reject) => setTimeout(() => reject(new Error("no notification")), TIMEOUT_MS)),
]);
out.notifications = notifications;
client.close();
process.stdout.write(JSON.stringify(out) + "\n");
