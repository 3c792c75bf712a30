// A sample renderer typed by schemas/bridge.d.ts. `make ts-check` runs `tsc --strict --noEmit`
// on it: every channel is called through the typed map, and each `@ts-expect-error` line is
// a wrong call the types must reject (tsc fails if such a line compiles).
import type {
  Channel,
  ErrorData,
  Invoke,
  LlmConfigChanged,
  LlmConfigInput,
  LlmConfigView,
  On,
  Params,
  Result,
} from "../../schemas/bridge.d.ts";

/** A minimal JSON-RPC 2.0 client over a browser WebSocket (token via subprotocol). */
export function connect(url: string, token: string): { invoke: Invoke; on: On; ready: Promise<void> } {
  const ws = new WebSocket(url, ["bridge.v1", `bridge.v1.token.${token}`]);
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void }>();
  const listeners = new Map<string, Set<(payload: never) => void>>();
  let nextId = 1;
  ws.addEventListener("message", (event: MessageEvent<string>) => {
    const message = JSON.parse(event.data) as {
      id?: number;
      method?: string;
      params?: unknown;
      result?: unknown;
      error?: { code: number; message: string; data?: ErrorData };
    };
    if (message.method !== undefined) {
      for (const listener of listeners.get(message.method) ?? []) listener(message.params as never);
      return;
    }
    const call = message.id === undefined ? undefined : pending.get(message.id);
    if (call === undefined || message.id === undefined) return;
    pending.delete(message.id);
    if (message.error !== undefined) call.reject(message.error);
    else call.resolve(message.result);
  });
  const invoke: Invoke = <C extends Channel>(channel: C, params: Params<C>) =>
    new Promise<Result<C>>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve: (value) => resolve(value as Result<C>), reject });
      ws.send(JSON.stringify({ jsonrpc: "2.0", id, method: channel, params }));
    });
  const on: On = (topic, listener) => {
    const set = listeners.get(topic) ?? new Set();
    listeners.set(topic, set);
    set.add(listener);
    return () => set.delete(listener);
  };
  const ready = new Promise<void>((resolve) => ws.addEventListener("open", () => resolve()));
  return { invoke, on, ready };
}

export async function main(invoke: Invoke, on: On): Promise<void> {
  const hello = await invoke("bridge:hello", {});
  const protocol: number = hello.protocolVersion;
  const backend: "keyring" | "file" = hello.secretBackend;
  const recovered: string | undefined = hello.recoveredFrom;

  const off = on("llm-config:changed", (e: LlmConfigChanged) => {
    const kind: "created" | "updated" | "deleted" = e.type;
    const view: LlmConfigView | undefined = e.config;
    console.log(kind, e.id, e.revision, view?.customName);
  });

  const input: LlmConfigInput = { customName: "My OpenAI", provider: "openai", apiKey: "sk-..." };
  const created: LlmConfigView = await invoke("llm-config:create", { config: input });
  const read: LlmConfigView | null = await invoke("llm-config:read", { id: created.id });
  const updated = await invoke("llm-config:update", {
    id: created.id,
    updates: { customName: "Work OpenAI", baseUrl: null },
    expectedVersion: created.version,
  });
  const list: LlmConfigView[] = await invoke("llm-config:list", {});
  const snapshot = await invoke("llm-config:snapshot", {});
  const revision: number = snapshot.revision;
  const init: true = (await invoke("llm-config:initialize", {})).initialized;
  const refreshed = await invoke("llm-config:refresh-cache", {});
  const deleted: boolean = (await invoke("llm-config:delete", { id: updated.id })).deleted;
  const doc = await invoke("rpc.discover", {});
  console.log(protocol, backend, recovered, read, list, revision, init, refreshed.count, deleted, doc["openrpc"]);

  // ---- the types bite: each call below is wrong and must not compile -------------------

  // @ts-expect-error misspelled channel
  await invoke("llm-config:craete", { config: input });
  // @ts-expect-error missing required key (config.apiKey)
  await invoke("llm-config:create", { config: { customName: "x", provider: "openai" } });
  // @ts-expect-error wrong param type (id is a string)
  await invoke("llm-config:read", { id: 42 });
  // @ts-expect-error unknown provider
  await invoke("llm-config:create", { config: { ...input, provider: "azure" } });
  // @ts-expect-error null is rejected for customName in a patch (only baseUrl may be null)
  await invoke("llm-config:update", { id: created.id, updates: { customName: null } });
  // @ts-expect-error unknown key in params (additionalProperties: false)
  await invoke("llm-config:read", { id: created.id, extra: true });
  // @ts-expect-error params of a channel without params must be empty
  await invoke("llm-config:list", { limit: 10 });
  // @ts-expect-error the result of read may be null
  const notNull: LlmConfigView = await invoke("llm-config:read", { id: created.id });
  // @ts-expect-error a view never carries the API key
  console.log(notNull.apiKey);
  // @ts-expect-error unknown topic
  on("llm-config:chnaged", () => undefined);
  // @ts-expect-error config is absent for deleted events: it may be undefined
  on("llm-config:changed", (e) => console.log(e.config.customName));

  off();
}
