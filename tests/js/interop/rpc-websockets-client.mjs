// Interop: the npm `rpc-websockets` Client against a real `bridge serve`.
// Usage: node rpc-websockets-client.mjs <ws-url> <token>  → one JSON object on stdout.
// The token travels as `?token=` (DESIGN §6): this client sets no headers or subprotocols.
// Run by tests/e2e/test_interop_clients.py, which asserts on the output.

import { Client } from "rpc-websockets";

const [url, token] = process.argv.slice(2);
const OPENAI_KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0".repeat(2);
const TIMEOUT_MS = 10_000;

const within = (promise, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), TIMEOUT_MS)),
  ]);
const plain = (error) => ({ code: error.code, message: error.message, data: error.data });

const client = new Client(`${url}/?token=${encodeURIComponent(token)}`, { autoconnect: true, reconnect: false });
await within(new Promise((resolve, reject) => {
  client.once("open", resolve);
  client.once("error", (event) => reject(new Error(`connect failed: ${event?.message ?? event}`)));
}), "open");

const out = {};
out.hello = await client.call("bridge:hello", {}, TIMEOUT_MS);
out.created = await client.call(
  "llm-config:create",
  { config: { customName: "From rpc-websockets", provider: "openai", apiKey: OPENAI_KEY } },
  TIMEOUT_MS,
);
out.validationError = await client
  .call("llm-config:create", { config: { customName: "", provider: "azure", apiKey: "x" } }, TIMEOUT_MS)
  .then(() => null, plain);
out.unknownChannel = await client.call("llm-config:nope", {}, TIMEOUT_MS).then(() => null, plain);
out.subscribed = await client.subscribe("llm-config:changed");
out.subscribedUnknown = await client.subscribe("llm-config:nope");

// A change made by this client: the notification reaches it as an event named after the
// method, with the params as its one argument, before the call's response (DESIGN §5).
const order = [];
const changed = new Promise((resolve) =>
  client.once("llm-config:changed", (params) => {
    order.push("event");
    resolve(params);
  }),
);
const updated = await client.call(
  "llm-config:update",
  { id: out.created.id, updates: { useAuthHeader: false }, expectedVersion: 1 },
  TIMEOUT_MS,
);
order.push("response");
out.updated = updated;
out.event = await within(changed, "llm-config:changed");
out.order = order;
out.unsubscribed = await client.unsubscribe("llm-config:changed");
client.close();
process.stdout.write(JSON.stringify(out) + "\n");
