// The Node peer: an idiomatic rpc-websockets server with bridge's llm-config:read/list
// semantics over an in-memory Map (views only, as bridge's cache serves them).
// Usage: node rpcws_server.mjs COUNT  → prints {"event":"ready","url":...,"ids":[...]}.
// Note: rpc-websockets never answers a request whose id is 0 (it treats it as a notification).
import { randomUUID } from "node:crypto";
import { Server } from "rpc-websockets";

const count = Number(process.argv[2] ?? "50");
const configs = new Map();
const now = new Date().toISOString();
for (let i = 0; i < count; i++) {
  const id = randomUUID();
  configs.set(id, {
    id,
    customName: `Config ${String(i).padStart(5, "0")}`,
    provider: "openai",
    apiKeyPreview: "sk-...9j0",
    baseUrl: null,
    useAuthHeader: true,
    createdAt: now,
    updatedAt: now,
    version: 1,
  });
}

const server = new Server({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
server.register("llm-config:read", (params) => configs.get(params?.id) ?? null);
server.register("llm-config:list", () => [...configs.values()]);
server.on("listening", () => {
  const { port } = server.wss.address();
  process.stdout.write(
    `${JSON.stringify({ event: "ready", url: `ws://127.0.0.1:${port}`, ids: [...configs.keys()] })}\n`,
  );
});
process.on("SIGTERM", () => server.close().then(() => process.exit(0)));
