// Types of bridge-client.js, built on the generated wire types (schemas/bridge.d.ts).
// `make ts-check` compiles tests/ts/client.ts against this file with tsc --strict; the
// expect-error lines there prove that wrong channels, params and results do not compile.

import type {
  Channel,
  DeleteResult,
  ErrorData,
  FieldErrorData,
  LlmConfigChanged,
  LlmConfigInput,
  LlmConfigPatch,
  LlmConfigView,
  Params,
  Payload,
  RefreshResult,
  Result,
  Topic,
  WorkDoneProgressValue,
} from "../../schemas/bridge.d.ts";

/** Protocol version this client speaks (`bridge:hello`.protocolVersion). */
export declare const PROTOCOL_VERSION: 1;

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

/** Connection state reported by `status` and `onStatus`. */
export type Status = "idle" | "connecting" | "open" | "reconnecting" | "closed" | "failed";

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

/** Channels whose params have no required key, e.g. `EmptyParams` (they may be omitted). `{}` rather
 * than `EmptyParams`: every params type has an optional `workDoneToken`, so `{id}` would match it. */
export type NoParamsChannel = { [C in Channel]: {} extends Params<C> ? C : never }[Channel];

/** A resilient JSON-RPC client for one bridge server (reconnects, resyncs, typed by channel). */
export declare class BridgeClient {
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
  invoke<C extends Channel>(channel: C, params: Params<C>, options?: InvokeOptions): Promise<Result<C>>;
  /** Call a channel that takes no params. */
  invoke<C extends NoParamsChannel>(channel: C): Promise<Result<C>>;
  /** Subscribe to topic `T`; returns an unsubscribe function. */
  on<T extends Topic>(event: T, callback: (payload: Payload<T>) => void): () => void;
  /** Subscribe to `llm-config:changed`; returns an unsubscribe function. */
  onChanged(callback: (event: LlmConfigChanged) => void): () => void;
  /** Observe the status (called at once with the current one); returns an unsubscribe function. */
  onStatus(callback: (status: Status, detail?: ReconnectingDetail | Error) => void): () => void;
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

export declare function llmConfigApi(client: BridgeClient): LlmConfigApi;
