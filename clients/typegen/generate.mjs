// bridge-ipc-typegen: an OpenRPC document (bridge's `rpc.discover`) → TypeScript types of
// every channel (JSON-RPC method) and notification, shaped like bridge-ipc's built-in
// wire types: `ChannelMap` (name → {params, result}), `NotificationMap` (topic → params),
// the schemas under `components/schemas` as named types, and the Channel/Params/Result/
// Topic/Payload helpers. `new BridgeClient<ChannelMap, NotificationMap>(…)` (bridge-ipc)
// then types `invoke` and `on` for the application's own channels.
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
 * @returns {Promise<string>} the same text for the same document, wherever it came from.
 */
export async function generateTypes(doc) {
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
  return body + HELPERS;
}
