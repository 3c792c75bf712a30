// A TypeScript app of a user of the npm packages: `bridge-ipc` from its tarball, typed by
// the types bridge-ipc-typegen generated from the running server (app-types.d.ts).
// tests/browser/test_npm_packages.py type-checks it with tsc --strict, then runs it under
// Node against that server: `node consumer.js URL TOKEN` prints one JSON line.
import { BridgeClient, BridgeError, liveConfigs, STATUSES, type LiveSnapshot, type LlmConfigView } from "bridge-ipc";
import { llmConfigStore } from "bridge-ipc/svelte";
import type { ChannelMap, NotificationMap, Result } from "./app-types.js";

declare const process: { argv: string[] }; // no @types/node in this scratch project
const [url, token] = process.argv.slice(2) as [string, string];
const client = new BridgeClient<ChannelMap, NotificationMap>({ url, token });
const hello: Result<"bridge:hello"> = await client.invoke("bridge:hello");
const created = await client.invoke("llm-config:create", {
  config: { customName: "From Node", provider: "openai", apiKey: "sk-" + "A1b2C3d4E5f6G7h8I9j0".repeat(2) },
});

const store = liveConfigs(client);
const snapshot: LiveSnapshot<LlmConfigView> = await new Promise((resolve) => {
  const check = () => {
    const current = store.getSnapshot();
    if (current.status === "open" && current.items.length === 1) resolve(current);
  };
  store.subscribe(check);
  check();
});
let svelteStatus = "";
llmConfigStore(client).subscribe(($configs) => (svelteStatus = $configs.status))();

let duplicate = "";
try {
  await client.invoke("llm-config:create", { config: { customName: "From Node", provider: "custom", apiKey: "k", baseUrl: "http://127.0.0.1:1" } });
} catch (error) {
  if (error instanceof BridgeError) duplicate = `${error.code} ${error.data?.code}`;
}

// The types bite: each line below is wrong and must not compile (never called).
export function wrongUses(): void {
  // @ts-expect-error unknown channel
  void client.invoke("llm-config:craete", { config: created });
  // @ts-expect-error the view never carries the API key
  void created.apiKey;
  // @ts-expect-error a status the client never reports
  const wrong: (typeof STATUSES)[number] = "connected";
  void wrong;
}

console.log(
  JSON.stringify({
    protocol: hello.protocolVersion,
    created: created.customName,
    live: snapshot.items.map((item) => item.id === created.id && item.customName),
    sameObject: store.getSnapshot() === snapshot,
    svelteStatus,
    duplicate,
  }),
);
store.close();
client.close();
