// Production build of the React settings app: src/ → dist/ (or argv[2]) with esbuild:
// one minified bundle (React in production mode, no StrictMode) plus index.html.
// bridge-ipc is the package in clients/js (a `file:` dependency: build it first, `make js-build`).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] ?? path.join(here, "dist"));
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(here, "src", "main.jsx")],
  bundle: true,
  format: "esm",
  minify: true,
  jsx: "automatic",
  target: "es2020",
  define: { "process.env.NODE_ENV": '"production"' },
  // bridge-ipc is linked (file:): resolve its `react` import from this app, so there is one React.
  preserveSymlinks: true,
  outfile: path.join(out, "app.js"),
  logLevel: "warning",
});
copyFileSync(path.join(here, "src", "index.html"), path.join(out, "index.html"));
