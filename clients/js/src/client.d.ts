// Types of client.js, built on the wire types generated from schemas/ (wire.d.ts).
// `make ts-check` compiles tests/ts/client.ts against this file with tsc --strict; the
// expect-error lines there prove that wrong channels, params and results do not compile.
// BridgeClient is generic over a channel map and a notification map: the defaults are
// bridge's built-in ones; bridge-ipc-typegen generates an application's own.

import type {
  DeleteResult,
  ErrorData,
  FieldErrorData,
  LlmConfigChanged,
  LlmConfigInput,
  LlmConfigPatch,
  LlmConfigView,
  RefreshResult,
  ChannelMap,
  NotificationMap,
  WorkDoneProgressValue,
} from "./wire.js";

export type * from "./wire.js";

/** Protocol version this client speaks (`bridge:hello`.protocolVersion). */
export declare const PROTOCOL_VERSION: 1;

/**
 * `schemaHash` (`sha256:<hex>`) of the OpenRPC document of bridge's built-in channels, the
 * one this package's types were generated from (embedded at build time from schemas/).
 */
export declare const SCHEMA_HASH: string;

/** Reported when `bridge:hello` announces a `schemaHash` other than the expected one. */
export interface SchemaMismatchWarning {
  kind: "schema-mismatch";
  /** The hash the client's types were generated from (the `schemaHash` option or SCHEMA_HASH). */
  expected: string;
  /** The hash the server announced in `bridge:hello`. */
  actual: string;
  /** A sentence naming both hashes and the remedy. */
  message: string;
}

/** Everything `onWarning` reports (one kind today). */
export type BridgeWarning = SchemaMismatchWarning;

/** An error answered by the server: JSON-RPC `code`, `data.name` as `name`, the whole `data`. */
export declare class BridgeError extends Error {
  constructor(message: string, code: number, data: ErrorData | undefined);
  /** JSON-RPC error code (e.g. -32602, 4009). */
  readonly code: number;
  /** The server's `error.data`: `{code, name, errors?, context?}`. */
  readonly data: ErrorData | undefined;
  /** Field errors of a VALIDATION_ERROR (`[]` otherwise). */
  readonly fieldErrors: FieldErrorData[];
}

/** The connection dropped before the response arrived. */
/** No answer within the call timeout; a write may still be applied (re-read before retrying). */
export declare class CallTimeoutError extends Error {
  constructor(message: string);
}

export declare class ConnectionLostError extends Error {
  constructor(message?: string);
}

/** The server cannot be used: protocol mismatch or a policy close (1008). Not retried. */
export declare class TerminalError extends Error {
  constructor(message: string);
}

/** Connection state shared by the client and the live stores. */
export type LiveStatus = "connecting" | "open" | "reconnecting" | "closed" | "failed";
/** Connection state reported by `status` and `onStatus` (`idle` before `connect()`). */
export type Status = "idle" | LiveStatus;
/** Every LiveStatus, in the order of a connection's life. */
export declare const STATUSES: readonly LiveStatus[];

/** A value, or a provider re-read on every connection attempt. */
export type Provided<T> = T | (() => T | Promise<T>);

export interface BridgeClientOptions {
  /** `ws://127.0.0.1:PORT`, or a provider. */
  url: Provided<string>;
  /** The token (sent as the subprotocol pair `bridge.v1, bridge.v1.token.<token>`), or a provider. */
  token: Provided<string>;
  /** WebSocket implementation (default: the global one). */
  WebSocket?: typeof WebSocket;
  /** First reconnect delay, in milliseconds (default 250). */
  initialDelayMs?: number;
  /** Largest reconnect delay, in milliseconds (default 10000). */
  maxDelayMs?: number;
  /** Per-call timeout, in milliseconds; 0 for none (default 30000). */
  callTimeoutMs?: number;
  /** Bound on one opening handshake, in milliseconds (default 5000). */
  connectTimeoutMs?: number;
  /** Attempts in a row failing before the socket opens after which the status detail says
   * `reason: "handshake-refused"` (default 3). */
  handshakeRefusedAfter?: number;
  /** `schemaHash` of the OpenRPC document the caller's types were generated from (default
   * SCHEMA_HASH; bridge-ipc-typegen's `--hash-out` module for an application's own channels).
   * A different hash in `bridge:hello` is reported through `onWarning` (console.warn without
   * a listener); the connection proceeds. */
  schemaHash?: string;
}

/** Options of one `invoke`. */
export interface InvokeOptions {
  /** Aborting it sends `$/cancelRequest` (the server cancels a long-running request, e.g.
   * `llm-config:test`) and rejects the call with `signal.reason`. */
  signal?: AbortSignal;
  /** Receives the call's `$/progress` values; the params then carry a fresh `workDoneToken`. */
  onProgress?: (value: WorkDoneProgressValue) => void;
  /** This call's timeout, in milliseconds (default: `callTimeoutMs`). */
  timeoutMs?: number;
}

/** Likely causes named by a `handshake-refused` status detail. */
export declare const HANDSHAKE_REFUSED_CAUSES: readonly string[];

/** Detail of a "reconnecting" status. */
export interface ReconnectingDetail {
  attempt: number;
  delayMs: number;
  /** Set once `handshakeRefusedAfter` attempts in a row failed before the socket opened. */
  reason?: "handshake-refused";
  failedHandshakes?: number;
  likelyCauses?: readonly string[];
  message?: string;
}

/** One channel's wire shapes: by-name params and result. */
export interface ChannelSpec {
  params: unknown;
  result: unknown;
}

/**
 * Channels of map `M` whose params have no required key, e.g. `EmptyParams` (they may be
 * omitted). `{}` rather than `EmptyParams`: every params type has an optional
 * `workDoneToken`, so `{id}` would match it.
 */
export type NoParamsChannelOf<M extends { [K in keyof M]: ChannelSpec }> = {
  [C in keyof M & string]: {} extends M[C]["params"] ? C : never;
}[keyof M & string];

/** Built-in channels whose params have no required key (they may be omitted). */
export type NoParamsChannel = NoParamsChannelOf<ChannelMap>;

/**
 * A resilient JSON-RPC client for one bridge server (reconnects, resyncs, typed by channel).
 * `CM`/`NM`: the channel and notification maps (default: bridge's; generate an
 * application's own with bridge-ipc-typegen).
 */
export declare class BridgeClient<
  CM extends { [K in keyof CM]: ChannelSpec } = ChannelMap,
  NM extends { [K in keyof NM]: unknown } = NotificationMap,
> {
  constructor(options: BridgeClientOptions);
  /** Current connection status. */
  readonly status: Status;
  /** The last revision applied (from a snapshot or a notification). */
  readonly revision: number;
  /** Connect (idempotent); resolves once the protocol is checked and the first snapshot applied. */
  connect(): Promise<void>;
  /** Close for good; pending and waiting calls fail with ConnectionLostError. */
  close(): void;
  /** Call channel `C` with its by-name params; resolves with its result, rejects with BridgeError. */
  invoke<C extends keyof CM & string>(
    channel: C,
    params: CM[C]["params"],
    options?: InvokeOptions,
  ): Promise<CM[C]["result"]>;
  /** Call a channel that takes no params. */
  invoke<C extends NoParamsChannelOf<CM>>(channel: C): Promise<CM[C]["result"]>;
  /** Subscribe to topic `T`; returns an unsubscribe function. */
  on<T extends keyof NM & string>(event: T, callback: (payload: NM[T]) => void): () => void;
  /** Subscribe to `llm-config:changed`; returns an unsubscribe function. */
  onChanged(callback: (event: LlmConfigChanged) => void): () => void;
  /** Observe the status (called at once with the current one); returns an unsubscribe function. */
  onStatus(callback: (status: Status, detail?: ReconnectingDetail | Error) => void): () => void;
  /** The schema mismatch found by the last `bridge:hello`; null when the hashes agree. */
  readonly schemaMismatch: SchemaMismatchWarning | null;
  /** Observe warnings (a schema mismatch, once per announced hash; at once if one was already
   * found). While a listener is attached console.warn stays silent. Returns an unsubscribe function. */
  onWarning(callback: (warning: BridgeWarning) => void): () => void;
}

/** The Electron-style API of a preload: `window.electronAPI.llmConfig` (DESIGN §8). */
export interface LlmConfigApi {
  create(config: LlmConfigInput): Promise<LlmConfigView>;
  read(id: string): Promise<LlmConfigView | null>;
  update(id: string, updates: LlmConfigPatch, expectedVersion?: number): Promise<LlmConfigView>;
  delete(id: string, expectedVersion?: number): Promise<DeleteResult>;
  list(): Promise<LlmConfigView[]>;
  refreshCache(): Promise<RefreshResult>;
  onChanged(callback: (event: LlmConfigChanged) => void): () => void;
}

export declare function llmConfigApi(client: BridgeClient<any, any>): LlmConfigApi;
