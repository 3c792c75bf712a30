// The live stores and the React/Svelte entries of npm bridge-ipc as TypeScript sees them
// (clients/js/src/*.d.ts; React's types from @types/react). `make ts-check` compiles this
// file; each `@ts-expect-error` line is a wrong use the types must reject.
import { BridgeClient, liveCollection, liveConfigs, STATUSES, type LiveSnapshot, type LiveStatus } from "../../clients/js/src/index.js";
import { BridgeProvider, useLlmConfig, useLlmConfigItem, type UseLlmConfig } from "../../clients/js/src/react.js";
import { llmConfigStore } from "../../clients/js/src/svelte.js";
import type { LlmConfigView } from "../../schemas/bridge.d.ts";

export function useStores(client: BridgeClient): void {
  const store = liveConfigs(client);
  const snapshot: LiveSnapshot<LlmConfigView> = store.getSnapshot();
  const first: LlmConfigView | undefined = snapshot.items[0];
  const byId: LlmConfigView | undefined = snapshot.byId["some-id"];
  const status: LiveStatus = snapshot.status;
  const statuses: readonly LiveStatus[] = STATUSES;
  const off: () => void = store.subscribe(() => undefined);
  const notes = liveCollection<{ id: string; text: string }>(client, "notes");
  const text: string | undefined = notes.getSnapshot().items[0]?.text;
  const release = store.overlay("some-id", null);
  llmConfigStore(client).subscribe(($configs) => console.log($configs.items.length, $configs.status))();
  console.log(first, byId, status, statuses, text);
  off();
  release();

  // @ts-expect-error snapshots are read-only
  snapshot.items.push(first!);
  // @ts-expect-error a status the store never reports
  const wrong: LiveStatus = "idle";
  console.log(wrong);
}

export async function useHooks(client: BridgeClient): Promise<void> {
  const provider = BridgeProvider({ client, children: null });
  const hook: UseLlmConfig = useLlmConfig();
  const { configurations, isLoading, error, status, createConfiguration, updateConfiguration, deleteConfiguration } = hook;
  const created: LlmConfigView = await createConfiguration({ customName: "A", provider: "openai", apiKey: "sk-…" });
  const updated: LlmConfigView = await updateConfiguration(created.id, { customName: "B" }, { optimistic: true });
  const deleted: boolean = await deleteConfiguration(created.id, { expectedVersion: updated.version });
  const one: LlmConfigView | null = useLlmConfigItem(created.id, client);
  const local: LlmConfigView | null = hook.getConfiguration(created.id);
  await hook.refreshConfigurations();
  hook.clearError();
  console.log(provider, configurations.length, isLoading, error, status, deleted, one, local);

  // @ts-expect-error unknown provider
  await createConfiguration({ customName: "A", provider: "azure", apiKey: "k" });
  // @ts-expect-error the list is read-only
  configurations.pop();
}
