// The renderer client (clients/js, npm bridge-ipc) as TypeScript sees it through
// clients/js/src/*.d.ts. `make ts-check` compiles this file; each
// `@ts-expect-error` line is a wrong use the types must reject (tsc fails if it compiles).
import {
  BridgeClient,
  BridgeError,
  ConnectionLostError,
  llmConfigApi,
  SCHEMA_HASH,
  type BridgeWarning,
  type Status,
} from "../../clients/js/src/index.js";
import type { ChannelMap, LlmConfigChanged, LlmConfigInput, LlmConfigView } from "../../schemas/bridge.d.ts";

export async function useClient(url: string, token: string): Promise<void> {
  const client = new BridgeClient({ url, token: () => token, initialDelayMs: 100 });
  await client.connect();
  const status: Status = client.status;

  const hello = await client.invoke("bridge:hello", {});
  const protocol: number = hello.protocolVersion;
  const input: LlmConfigInput = { customName: "My OpenAI", provider: "openai", apiKey: "sk-..." };
  const created: LlmConfigView = await client.invoke("llm-config:create", { config: input });
  const read: LlmConfigView | null = await client.invoke("llm-config:read", { id: created.id });
  const list: LlmConfigView[] = await client.invoke("llm-config:list");
  const snapshot = await client.invoke("llm-config:snapshot", {});
  const subscribed = await client.invoke("rpc.on", ["llm-config:changed"]);
  const off = client.onChanged((e: LlmConfigChanged) => console.log(e.type, e.id, e.config?.customName));
  const offTopic = client.on("llm-config:changed", (e) => console.log(e.revision));
  const offStatus = client.onStatus((s) => console.log(s));

  try {
    await client.invoke("llm-config:update", { id: created.id, updates: { baseUrl: null }, expectedVersion: 1 });
  } catch (error) {
    if (error instanceof BridgeError) console.log(error.code, error.data?.code, error.fieldErrors[0]?.field);
    else if (error instanceof ConnectionLostError) console.log("retry later", error.message);
  }

  // A long operation: cancellable with an AbortSignal, progress through onProgress.
  const controller = new AbortController();
  const tested = await client.invoke(
    "llm-config:test",
    { id: created.id, timeoutMs: 5000 },
    { signal: controller.signal, onProgress: (v) => console.log(v.kind, v.message, v.percentage), timeoutMs: 10000 },
  );
  const ok: boolean = tested.ok;
  const kind: string | undefined = tested.error?.kind;
  client.onStatus((s, detail) => {
    if (s === "reconnecting" && detail && !(detail instanceof Error) && detail.reason === "handshake-refused")
      console.log(detail.likelyCauses?.join("; "));
  });
  console.log(ok, kind);
  // @ts-expect-error a progress kind is begin, report or end
  client.invoke("llm-config:test", { id: created.id }, { onProgress: (v) => v.kind === "done" });

  const api = llmConfigApi(client);
  const deleted: boolean = (await api.delete(created.id)).deleted;
  const refreshed: number = (await api.refreshCache()).count;
  console.log(status, protocol, read, list, snapshot.revision, subscribed["llm-config:changed"], deleted, refreshed);

  // ---- the types bite: each use below is wrong and must not compile ------------------

  // @ts-expect-error misspelled channel
  await client.invoke("llm-config:craete", { config: input });
  // @ts-expect-error missing required param (config)
  await client.invoke("llm-config:create", {});
  // @ts-expect-error params may be omitted only for channels without params
  await client.invoke("llm-config:read");
  // @ts-expect-error wrong param type (id is a string)
  await client.invoke("llm-config:read", { id: 42 });
  // @ts-expect-error rpc.on takes an array of topic names, not an object
  await client.invoke("rpc.on", { event: "llm-config:changed" });
  // @ts-expect-error the result of read may be null
  const notNull: LlmConfigView = await client.invoke("llm-config:read", { id: created.id });
  // @ts-expect-error a view never carries the API key
  console.log(notNull.apiKey);
  // @ts-expect-error config is absent for deleted events: it may be undefined
  client.onChanged((e) => console.log(e.config.customName));
  // @ts-expect-error unknown topic
  client.on("llm-config:chnaged", () => undefined);
  // @ts-expect-error unknown provider in the preload-style API
  await api.create({ ...input, provider: "azure" });
  // @ts-expect-error status is one of the known states
  const wrongStatus: "connected" = client.status;
  // @ts-expect-error url is required
  new BridgeClient({ token });

  off();
  offTopic();
  offStatus();
  client.close();
}

/** Contract drift: the expected hash is an option; warnings carry both hashes. */
export async function useSchemaHash(url: string, token: string, appHash: string): Promise<void> {
  const builtin: string = SCHEMA_HASH;
  const client = new BridgeClient({ url, token, schemaHash: appHash });
  const off = client.onWarning((warning: BridgeWarning) => console.log(warning.kind, warning.expected, warning.actual));
  const last: string | undefined = client.schemaMismatch?.actual;
  // @ts-expect-error -- the expected hash is a string
  new BridgeClient({ url, token, schemaHash: 1 });
  // bridge:shutdown is outside the document: declared beside the generated map (docs/shipping.md).
  type Shutdown = { "bridge:shutdown": { params: Record<string, never>; result: { shuttingDown: true } } };
  const sidecar = new BridgeClient<ChannelMap & Shutdown>({ url, token });
  const stopped: true = (await sidecar.invoke("bridge:shutdown", {})).shuttingDown;
  // @ts-expect-error -- not in the built-in map
  await client.invoke("bridge:shutdown", {});
  console.log(builtin, last, stopped);
  off();
}
