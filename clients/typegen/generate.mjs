// bridge-ipc-typegen: an OpenRPC document (bridge's `rpc.discover`) → TypeScript types of
// every channel (JSON-RPC method) and notification, shaped like bridge-ipc's built-in
// wire types: `ChannelMap` (name → {params, result}), `NotificationMap` (topic → params),
// the schemas under `components/schemas` as named types, and the Channel/Params/Result/
// Topic/Payload helpers. `new BridgeClient<ChannelMap, NotificationMap>(…)` (bridge-ipc)
// then types `invoke` and `on` for the application's own channels.
//
// Contract drift: the output also carries the `schemaHash` of the document it was generated
// from (`SchemaHash` type; `schemaHashModule` writes it as a runtime constant), which
// bridge-ipc's BridgeClient takes as its `schemaHash` option and compares with `bridge:hello`.
import { createHash } from "node:crypto";
import { compile } from "json-schema-to-typescript";

const SCHEMA_REF = "#/components/schemas/";

/**
 * Deep copy of `node` with `#/components/schemas/X` refs pointing at `#/$defs/X`, keys
 * sorted: the canonical form bridge hashes (`schemaHash`), so a document read from a file
 * and the same one from `rpc.discover` give the same text.
 */
function rewriteRefs(node) {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node === null || typeof node !== "object") return node;
  const copy = {};
  for (const [key, value] of Object.entries(node).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    copy[key] = key === "$ref" && typeof value === "string" && value.startsWith(SCHEMA_REF)
      ? `#/$defs/${value.slice(SCHEMA_REF.length)}`
      : rewriteRefs(value);
  }
  return copy;
}

/** Compare two strings by Unicode code points (Python's str order), not UTF-16 code units. */
function byCodePoint(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** `value` as Python's `json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False)` writes it. */
function canonicalJson(value, indent = "") {
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    const inner = indent + "  ";
    return `[\n${value.map((item) => inner + canonicalJson(item, inner)).join(",\n")}\n${indent}]`;
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort(byCodePoint);
    if (keys.length === 0) return "{}";
    const inner = indent + "  ";
    const items = keys.map((key) => `${inner}${JSON.stringify(key)}: ${canonicalJson(value[key], inner)}`);
    return `{\n${items.join(",\n")}\n${indent}}`;
  }
  return JSON.stringify(value);
}

/**
 * The `schemaHash` bridge announces for `doc` (DESIGN §5): `"sha256:"` + the hex SHA-256 of
 * its canonical bytes (sorted keys, 2-space indent, LF, final newline, as Python's
 * `json.dumps(sort_keys=True, indent=2, ensure_ascii=False)`). Limit: JavaScript reads a
 * float such as `1.0` as `1`, so a document holding one hashes differently here; the bin
 * takes the hash from `bridge:hello` when it reads a running server.
 * @param {object} doc an OpenRPC document.
 * @returns {string} `sha256:<hex>`.
 */
export function schemaHash(doc) {
  return "sha256:" + createHash("sha256").update(canonicalJson(doc) + "\n", "utf8").digest("hex");
}

/**
 * A module exporting `SCHEMA_HASH` = `hash`, for bridge-ipc's `schemaHash` option.
 * @param {string} hash `sha256:<hex>`.
 * @param {"esm" | "cjs" | "json"} format ESM (`export const`), CommonJS (`exports.`) or JSON (`{"schemaHash"}`).
 * @returns {string}
 */
export function schemaHashModule(hash, format = "esm") {
  if (format === "json") return JSON.stringify({ schemaHash: hash }, null, 2) + "\n";
  const doc = "/** schemaHash of the OpenRPC document bridge-ipc-typegen generated the types from. Do not edit. */\n";
  if (format === "cjs") return `${doc}exports.SCHEMA_HASH = ${JSON.stringify(hash)};\n`;
  return `${doc}export const SCHEMA_HASH = ${JSON.stringify(hash)};\n`;
}

/** Closed empty objects become Record<string, never>, so {foo: 1} is rejected. */
function tightenEmptyObjects(node) {
  if (Array.isArray(node)) return node.forEach(tightenEmptyObjects);
  if (node === null || typeof node !== "object") return;
  if (node.type === "object" && node.additionalProperties === false && node.properties && Object.keys(node.properties).length === 0) {
    node.tsType = "Record<string, never>";
  }
  Object.values(node).forEach(tightenEmptyObjects);
}

/** The params of an OpenRPC method as one JSON Schema: an object (by-name) or a tuple (by-position). */
function paramsSchema(method) {
  const params = method.params ?? [];
  if (method.paramStructure === "by-position") {
    const required = params.filter((p) => p.required).length;
    return { type: "array", items: params.map((p) => p.schema ?? {}), minItems: required, maxItems: params.length };
  }
  const properties = {};
  for (const p of params) properties[p.name] = { ...(p.schema ?? {}), ...(p.description ? { description: p.description } : {}) };
  return {
    type: "object",
    properties,
    required: params.filter((p) => p.required).map((p) => p.name),
    additionalProperties: false,
  };
}

/**
 * One JSON Schema holding every wire shape of `doc`: `{channels, notifications}` plus `$defs`.
 * @param {object} doc an OpenRPC 1.x document (methods with `x-server-to-client: true` are notifications).
 */
export function openrpcToSchema(doc) {
  if (!doc || !Array.isArray(doc.methods)) throw new Error("not an OpenRPC document: no methods array");
  const channels = {};
  const notifications = {};
  for (const method of [...doc.methods].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (method["x-server-to-client"]) {
      notifications[method.name] = { ...rewriteRefs(paramsSchema(method)), ...(method.summary ? { description: method.summary } : {}) };
      continue;
    }
    channels[method.name] = {
      type: "object",
      ...(method.summary ? { description: method.summary } : {}),
      properties: { params: rewriteRefs(paramsSchema(method)), result: rewriteRefs(method.result?.schema ?? {}) },
      required: ["params", "result"],
      additionalProperties: false,
    };
  }
  const schema = {
    title: "AppSchema",
    description: `Every wire shape of ${doc.info?.title ?? "the server"} (OpenRPC ${doc.openrpc ?? "?"}).`,
    type: "object",
    properties: {
      channels: { title: "ChannelMap", description: "Channel name → {params, result}.", type: "object", properties: channels, required: Object.keys(channels), additionalProperties: false },
      notifications: { title: "NotificationMap", description: "Notification topic → params.", type: "object", properties: notifications, required: Object.keys(notifications), additionalProperties: false },
    },
    required: ["channels", "notifications"],
    additionalProperties: false,
    $defs: rewriteRefs(doc.components?.schemas ?? {}),
  };
  tightenEmptyObjects(schema);
  return schema;
}

const HELPERS = `
/** Every channel (JSON-RPC method) name. */
export type Channel = keyof ChannelMap;
/** By-name params of channel \`C\`. */
export type Params<C extends Channel> = ChannelMap[C]["params"];
/** Result of channel \`C\`. */
export type Result<C extends Channel> = ChannelMap[C]["result"];
/** Every notification topic (server → renderer). */
export type Topic = keyof NotificationMap;
/** Params of notification \`T\`. */
export type Payload<T extends Topic> = NotificationMap[T];
`;

/**
 * TypeScript declarations for `doc`.
 * @param {object} doc an OpenRPC document.
 * @param {object} [options]
 * @param {string} [options.schemaHash] the document's `schemaHash` (default: computed from
 *   `doc`), emitted as the `SchemaHash` type.
 * @returns {Promise<string>} the same text for the same document, wherever it came from.
 */
export async function generateTypes(doc, options = {}) {
  const hash = options.schemaHash ?? schemaHash(doc);
  const banner = `/* eslint-disable */
/**
 * Generated by bridge-ipc-typegen from the server's OpenRPC document. Do not edit.
 * Use: new BridgeClient<ChannelMap, NotificationMap>({url, token}) (bridge-ipc).
 */`;
  const body = await compile(openrpcToSchema(doc), "AppSchema", {
    bannerComment: banner,
    additionalProperties: false,
    unreachableDefinitions: true,
    strictIndexSignatures: true,
    format: true,
    style: { singleQuote: false, printWidth: 100 },
  });
  const hashType = `
/** \`schemaHash\` of the document these types were generated from; pass the same value (the
 * \`--hash-out\` module's SCHEMA_HASH) as BridgeClient's \`schemaHash\` option. */
export type SchemaHash = ${JSON.stringify(hash)};
`;
  return body + HELPERS + hashType;
}
