// bridge-ipc/svelte: Svelte readable stores over the live stores.
import type { BridgeClient, CollectionItem, LiveSnapshot, LlmConfigView } from "./index.js";

/** Svelte's readable store contract: `run` is called at once, then after each change. */
export interface Readable<T> {
  subscribe(run: (value: T) => void, invalidate?: () => void): () => void;
}

/** A readable store of a live store. */
export declare function readableFrom<S>(live: { subscribe(listener: () => void): () => void; getSnapshot(): S }): Readable<S>;
/** A readable store of collection `name` (shared per client and name). */
export declare function collectionStore<T extends CollectionItem = CollectionItem>(
  client: BridgeClient<any, any>,
  name: string,
): Readable<LiveSnapshot<T>>;
/** A readable store of the LLM configs. */
export declare function llmConfigStore(client: BridgeClient<any, any>): Readable<LiveSnapshot<LlmConfigView>>;
