// Build the bridge-ipc package into dist/ with esbuild (pinned in package-lock.json):
//   index/react/svelte  → .mjs (ESM) and .cjs (CommonJS); react and svelte import the
//                         main entry as a module (one client and store implementation per app);
//   preload             → preload.cjs: one CommonJS file requiring only `electron`
//                         (sandboxed Electron preloads cannot load ES modules or other files);
//   *.d.ts              → copied beside them (.d.cts for require), wire.d.ts included.
import { build } from "esbuild";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, "src");
const out = path.join(here, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

/** Keep `./index.js` (imported by the react and svelte entries) a separate module. */
const mainAsExternal = (extension) => ({
  name: "main-entry-external",
  setup(b) {
    b.onResolve({ filter: /^\.\/index\.js$/ }, () => ({ path: `./index${extension}`, external: true }));
  },
});

const common = { bundle: true, target: "es2020", legalComments: "none", logLevel: "warning" };
for (const [format, extension] of [
  ["esm", ".mjs"],
  ["cjs", ".cjs"],
]) {
  await build({ ...common, entryPoints: [path.join(src, "index.js")], format, outfile: path.join(out, `index${extension}`) });
  for (const entry of ["react", "svelte"]) {
    await build({
      ...common,
      entryPoints: [path.join(src, `${entry}.js`)],
      format,
      outfile: path.join(out, `${entry}${extension}`),
      external: ["react"],
      plugins: [mainAsExternal(extension)],
    });
  }
}
await build({
  ...common,
  entryPoints: [path.join(src, "preload.js")],
  format: "cjs",
  platform: "browser",
  external: ["electron"],
  outfile: path.join(out, "preload.cjs"),
});

for (const name of readdirSync(src).filter((n) => n.endsWith(".d.ts"))) {
  const text = readFileSync(path.join(src, name), "utf8");
  writeFileSync(path.join(out, name), text);
  // The same declarations for require(): relative imports point at the .d.cts siblings.
  const cts = text.replace(/from "\.\/([a-z]+)\.js"/g, 'from "./$1.cjs"');
  writeFileSync(path.join(out, name.replace(/\.d\.ts$/, ".d.cts")), cts);
}
console.error(`built ${path.relative(process.cwd(), out)}`);
