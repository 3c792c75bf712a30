// Assemble the webview's assets: src/ plus the ESM build of the npm package bridge-ipc
// (clients/js/dist/index.mjs, built first when missing) as bridge-ipc.mjs, into dist/ (or
// argv[2]). tauri.conf.json runs it before `tauri dev` / `tauri build`; tests run it into a
// temp dir. (An app of your own would `npm install bridge-ipc` and bundle it instead.)
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] ?? path.join(here, "dist"));
const pkg = path.join(here, "..", "..", "clients", "js");
const esm = path.join(pkg, "dist", "index.mjs");
if (!existsSync(esm)) execFileSync(process.execPath, [path.join(pkg, "build.mjs")], { stdio: "inherit" });
mkdirSync(out, { recursive: true });
cpSync(path.join(here, "src"), out, { recursive: true });
cpSync(esm, path.join(out, "bridge-ipc.mjs"));
