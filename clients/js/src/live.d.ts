// Types of live.js: the live collection store (React's external-store contract).
import type { BridgeClient, ChannelSpec, LiveStatus } from "./client.js";
import type { LlmConfigView } from "./wire.js";

/** An item of a revisioned collection: it has a string id. */
export interface CollectionItem {
  readonly id: string;
}

/** An immutable snapshot of a collection; the same object until something changes. */
export interface LiveSnapshot<T extends CollectionItem> {
  /** Items in the server's list order (creation order); unchanged items keep their identity. */
  readonly items: readonly T[];
  /** Items by id. */
  readonly byId: Readonly<Record<string, T>>;
  /** Connection state; `open` once this store's snapshot is applied. */
  readonly status: LiveStatus;
  /** Last collection revision applied (0 before the first snapshot). */
  readonly revision: number;
  /** The last failure (TerminalError, a failed snapshot request), else null. */
  readonly error: unknown;
}

/** Options of a live store. */
export interface LiveOptions {
  /** Runs a flush later (default: next animation frame, else a 16 ms timer). */
  schedule?: (flush: () => void) => void;
}

/** A live store of collection `name` (`<name>:snapshot`, `<name>:changed`). */
export declare class LiveCollection<T extends CollectionItem = CollectionItem> {
  constructor(client: BridgeClient<any, any>, name: string, options?: LiveOptions);
  readonly client: BridgeClient<any, any>;
  readonly name: string;
  /** True once a snapshot of the collection has been applied. */
  readonly loaded: boolean;
  /** Register a listener called after each change of the snapshot; returns unsubscribe. */
  subscribe(listener: () => void): () => void;
  /** The current snapshot; the same object until the next notification. */
  getSnapshot(): LiveSnapshot<T>;
  /** Ask for a fresh snapshot now; resolves once it is applied. */
  refresh(): Promise<void>;
  /** Forget the last failure. */
  clearError(): void;
  /** Lay a local change (an item, or null to hide it) over the server state, shown at once; returns release. */
  overlay(id: string, item: T | null): () => void;
  /** Detach from the client. */
  close(): void;
}

/** A new live store of collection `name`. */
export declare function liveCollection<T extends CollectionItem = CollectionItem>(
  client: BridgeClient<any, any>,
  name: string,
  options?: LiveOptions,
): LiveCollection<T>;

/** A new live store of the LLM configs (`liveCollection(client, "llm-config")`). */
export declare function liveConfigs(client: BridgeClient<any, any>, options?: LiveOptions): LiveCollection<LlmConfigView>;

/** The store of `client` and `name` shared by the React hooks and Svelte stores. */
export declare function sharedCollection<T extends CollectionItem = CollectionItem>(
  client: BridgeClient<any, any>,
  name: string,
): LiveCollection<T>;

export type { ChannelSpec };
