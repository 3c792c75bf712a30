# One entry point for people and CI. Every target builds the virtual environment first;
# the schema/TypeScript targets also install the Node tools from package-lock.json.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The npm packages (clients/): bridge-ipc is built by esbuild from its own lock file.
JS_STAMP := clients/js/node_modules/.installed
TYPEGEN_STAMP := clients/typegen/node_modules/.installed
JS_DIST := clients/js/dist/index.mjs
REACT_STAMP := examples/react-settings/node_modules/.installed

.PHONY: dist sidecar sidecar-orphan-check bench demo check lint types contracts schemas-check types-check ts-check test js-test js-build schemas npm clean reliability

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# npm ci: exactly the committed lock file (json-schema-to-typescript, typescript, OpenRPC meta-schema).
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

$(JS_STAMP): clients/js/package.json clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

$(TYPEGEN_STAMP): clients/typegen/package.json clients/typegen/package-lock.json
	cd clients/typegen && npm ci --no-audit --no-fund
	touch $(TYPEGEN_STAMP)

# The React settings example: React, react-dom and esbuild from its lock file; bridge-ipc linked (file:).
$(REACT_STAMP): examples/react-settings/package.json examples/react-settings/package-lock.json
	cd examples/react-settings && npm ci --no-audit --no-fund
	touch $(REACT_STAMP)

npm: $(NODE_STAMP) $(JS_STAMP) $(TYPEGEN_STAMP) $(REACT_STAMP)

## js-build: the bridge-ipc package's dist/ (ESM, CommonJS, the sandbox-safe preload, .d.ts)
$(JS_DIST): $(JS_STAMP) clients/js/build.mjs $(wildcard clients/js/src/*)
	node clients/js/build.mjs

js-build: $(JS_DIST)

## demo: the main job — bridge serve on its embedded SQLite store, driven by a real client
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## check: everything CI runs — format, lint, types, import contracts, schema and TS freshness, tsc, tests
check: lint types contracts schemas-check types-check ts-check test js-test

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

schemas-check: $(STAMP)
	$(BIN)/bridge schemas --check
	cmp schemas/openrpc.json bridge/openrpc.json  # the package data rpc.discover serves

## types-check: schemas/bridge.d.ts is what json-schema-to-typescript makes of bridge.schema.json
types-check: $(NODE_STAMP)
	node schemas/generate-types.mjs --check

## ts-check: tsc --strict on a sample renderer (its @ts-expect-error lines prove the types bite)
ts-check: $(NODE_STAMP)
	node_modules/.bin/tsc -p tests/ts/tsconfig.json

# The typegen's dependencies: tests/e2e/test_prompt_templates.py runs its bin from the checkout.
test: $(STAMP) $(NODE_STAMP) $(JS_DIST) $(REACT_STAMP) $(TYPEGEN_STAMP)
	$(BIN)/pytest

## js-test: the JS client, its live stores, the Electron preload build and sidecar hand-off under plain Node, against a real server
js-test: $(STAMP) $(NODE_STAMP) $(JS_DIST) $(REACT_STAMP)
	BRIDGE_PYTHON=$(BIN)/python node --experimental-websocket --test tests/js/

## reliability: the dedicated long runs of tests/reliability (200 SIGKILL rounds, >= 100,000 fuzzed frames,
## a 10-minute soak, more stateful examples); figures appended to reliability-report.jsonl. `make check` runs
## the same tests in their short CI mode. Override one figure with e.g. BRIDGE_SOAK_S=300 make reliability.
reliability: $(STAMP)
	BRIDGE_RELIABILITY=long BRIDGE_RELIABILITY_REPORT=reliability-report.jsonl $(BIN)/pytest tests/reliability -m reliability -s -q

## dist: the sdist and wheel of the `bridge-ipc` distribution in dist/ (python -m build; the backend from .venv)
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

## sidecar: the frozen bridge for Tauri/Electron (PyInstaller), dist/sidecar/bridge-<target-triple>[/...]:
## one folder by default; `make sidecar SIDECAR_MODE=onefile` for one executable (see docs/shipping.md)
SIDECAR_MODE ?= onefolder
sidecar: $(STAMP)
	$(BIN)/python freeze/build_sidecar.py $(if $(filter onefile,$(SIDECAR_MODE)),--onefile,)

## sidecar-orphan-check: build the one-file sidecar, SIGKILL only its bootloader, show its Python child exits
sidecar-orphan-check: $(STAMP)
	$(BIN)/python freeze/onefile_orphan_check.py

## schemas: regenerate schemas/ (JSON Schema, OpenRPC, TypeScript) after changing a model or a channel
schemas: $(STAMP) $(NODE_STAMP)
	$(BIN)/bridge schemas
	cp schemas/openrpc.json bridge/openrpc.json
	node schemas/generate-types.mjs

## bench: bridge vs the websockets echo floors and an rpc-websockets peer (docs/performance.md); minutes
BENCH_NODE_STAMP := benchmarks/node_modules/.installed
$(BENCH_NODE_STAMP): benchmarks/package.json benchmarks/package-lock.json
	cd benchmarks && npm ci --no-audit --no-fund
	touch $(BENCH_NODE_STAMP)

bench: $(STAMP) $(BENCH_NODE_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache node_modules benchmarks/node_modules \
		clients/js/node_modules clients/js/dist clients/typegen/node_modules examples/react-settings/node_modules
