// The prompt-template collection of examples/prompt_templates.py as TypeScript sees it:
// `./bridge-types.js` is what bridge-ipc-typegen generates from the running example
// (tests/e2e/test_prompt_templates.py copies this file next to it and runs tsc --strict;
// `bridge-ipc` is clients/js/src). Every use below must compile.
import { BridgeClient, liveCollection, type LiveSnapshot } from "bridge-ipc";
import type {
  ChannelMap,
  NotificationMap,
  Params,
  Payload,
  PromptTemplateChanged,
  PromptTemplateView,
  Result,
  SchemaHash,
} from "./bridge-types.js";

export async function useTemplates(url: string, token: string, schemaHash: SchemaHash): Promise<void> {
  const client = new BridgeClient<ChannelMap, NotificationMap>({ url, token, schemaHash });
  const input: Params<"prompt-template:create"> = {
    item: { name: "Summarise", template: "Summarise: {text}", model: null },
  };
  const created: PromptTemplateView = await client.invoke("prompt-template:create", input);
  const id: string = created.id;
  const version: number = created.version;
  const model: string | null = created.model;
  const updated: Result<"prompt-template:update"> = await client.invoke("prompt-template:update", {
    id,
    updates: { template: "TL;DR: {text}" },
    expectedVersion: version,
  });
  const read: PromptTemplateView | null = await client.invoke("prompt-template:read", { id });
  const list: PromptTemplateView[] = await client.invoke("prompt-template:list");
  const snapshot = await client.invoke("prompt-template:snapshot");
  const revision: number = snapshot.revision;
  const items: PromptTemplateView[] = snapshot.items;
  const deleted: boolean = (await client.invoke("prompt-template:delete", { id, expectedVersion: 2 })).deleted;
  const off = client.on("prompt-template:changed", (event: Payload<"prompt-template:changed">) => {
    const kind: "created" | "updated" | "deleted" = event.type;
    const text: string | undefined = event.item?.template;
    console.log(kind, event.id, event.revision, text);
  });
  const typed: PromptTemplateChanged | undefined = undefined;

  const store = liveCollection<PromptTemplateView>(client, "prompt-template");
  const live: LiveSnapshot<PromptTemplateView> = store.getSnapshot();
  const first: string | undefined = live.items[0]?.name;
  console.log(model, updated.template, read?.name, list.length, revision, items, deleted, typed, first);
  off();
  store.close();
  client.close();
}
