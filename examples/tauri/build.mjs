// Assemble the webview's assets: src/ plus the shared renderer client, into dist/ (or argv[2]).
// tauri.conf.json runs it before `tauri dev` / `tauri build`; tests run it into a temp dir.
import { cpSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] ?? path.join(here, "dist"));
mkdirSync(out, { recursive: true });
cpSync(path.join(here, "src"), out, { recursive: true });
cpSync(path.join(here, "..", "renderer", "bridge-client.js"), path.join(out, "bridge-client.js"));
