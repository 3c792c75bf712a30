// The LLM provider settings page as a React app on bridge-ipc's useLlmConfig() (the
// original app's hook, plus `status`). Rows are React.memo components: a change of one
// config re-renders that row and the list, nothing else; unchanged configs keep their
// object identity across updates, reconnections and resyncs.
//
// Connection: open index.html#url=ws://127.0.0.1:PORT&token=… (the fragment never reaches
// a server log); start bridge with this page's origin allowlisted (--allow-origin).
//
// Test hooks (read by tests/browser/test_react_settings.py): window.__renders counts
// renders of the list and of each row by id; window.__statusLog lists the statuses shown;
// window.__arrivals holds the arrival times of change events; window.__bridge is the client.
import { createRoot } from "react-dom/client";
import { memo, useCallback, useEffect, useState } from "react";
import { BridgeClient, BridgeError } from "bridge-ipc";
import { BridgeProvider, useLlmConfig } from "bridge-ipc/react";

const renders = { list: 0, rows: {} };
window.__renders = renders;
window.__statusLog = [];
window.__arrivals = [];

const STATUS_TEXT = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Closed",
  failed: "Failed",
};

const Row = memo(function Row({ config, onEdit, onDelete }) {
  renders.rows[config.id] = (renders.rows[config.id] ?? 0) + 1;
  return (
    <tr data-id={config.id}>
      <td className="name">{config.customName}</td>
      <td>{config.provider}</td>
      <td className="key">{config.apiKeyPreview}</td>
      <td>{config.baseUrl ?? ""}</td>
      <td className="version">{config.version}</td>
      <td>
        <button type="button" onClick={() => onEdit(config.id)}>
          Edit
        </button>{" "}
        <button type="button" aria-label={`Delete ${config.customName}`} onClick={() => onDelete(config.id)}>
          Delete
        </button>
      </td>
    </tr>
  );
});

const List = memo(function List({ configurations, onEdit, onDelete }) {
  renders.list += 1;
  if (configurations.length === 0) return <p id="empty">No providers configured yet.</p>;
  return (
    <table>
      <thead>
        <tr>
          <th>Name</th>
          <th>Provider</th>
          <th>API key</th>
          <th>Base URL</th>
          <th>Version</th>
          <th />
        </tr>
      </thead>
      <tbody id="configs">
        {configurations.map((config) => (
          <Row key={config.id} config={config} onEdit={onEdit} onDelete={onDelete} />
        ))}
      </tbody>
    </table>
  );
});

const EMPTY_FORM = { customName: "", provider: "openai", apiKey: "", baseUrl: "", useAuthHeader: true };

/** Field errors of a BridgeError by form field (`config.customName` → `customName`). */
function fieldErrors(error) {
  const errors = {};
  if (error instanceof BridgeError) {
    for (const { field, message } of error.fieldErrors) errors[field.split(".").pop()] = message;
  }
  return errors;
}

function Editor({ editing, onDone }) {
  const { createConfiguration, updateConfiguration } = useLlmConfig();
  const [form, setForm] = useState(EMPTY_FORM);
  const [errors, setErrors] = useState({});
  const [formError, setFormError] = useState("");

  useEffect(() => {
    setForm(editing ? { ...EMPTY_FORM, ...editing, apiKey: "", baseUrl: editing.baseUrl ?? "" } : EMPTY_FORM);
    setErrors({});
    setFormError("");
  }, [editing?.id]); // eslint-disable-line react-hooks/exhaustive-deps -- refill only when another config is picked

  const set = (name) => (event) =>
    setForm({ ...form, [name]: event.target.type === "checkbox" ? event.target.checked : event.target.value });

  async function save(event) {
    event.preventDefault();
    setErrors({});
    setFormError("");
    const baseUrl = form.baseUrl.trim();
    try {
      if (!editing) {
        const config = { customName: form.customName, provider: form.provider, apiKey: form.apiKey, useAuthHeader: form.useAuthHeader };
        if (baseUrl) config.baseUrl = baseUrl;
        await createConfiguration(config);
      } else {
        // Only what changed. A key's destination (baseUrl, provider) never moves without
        // the key: the server requires apiKey then (DESIGN §2), so ask for it first.
        const updates = {};
        if (form.customName !== editing.customName) updates.customName = form.customName;
        if (form.provider !== editing.provider) updates.provider = form.provider;
        if (baseUrl !== (editing.baseUrl ?? "")) updates.baseUrl = baseUrl === "" ? null : baseUrl;
        if (form.useAuthHeader !== editing.useAuthHeader) updates.useAuthHeader = form.useAuthHeader;
        if (form.apiKey) updates.apiKey = form.apiKey;
        if (("baseUrl" in updates || "provider" in updates) && !updates.apiKey) {
          setErrors({ apiKey: "Enter the API key again: its destination changed." });
          return;
        }
        // Optimistic: the row shows the change at once; a refused update rolls it back.
        if (Object.keys(updates).length > 0) await updateConfiguration(editing.id, updates, { optimistic: true });
      }
      setForm(EMPTY_FORM);
      onDone();
    } catch (error) {
      const byField = fieldErrors(error);
      setErrors(byField);
      if (Object.keys(byField).length === 0) setFormError(error.message);
    }
  }

  return (
    <form id="editor" noValidate onSubmit={save}>
      <h2 id="form-title">{editing ? `Edit ${editing.customName}` : "Add a provider"}</h2>
      <label>
        Name
        <input name="customName" autoComplete="off" value={form.customName} onChange={set("customName")} />
        {errors.customName && <span className="field-error" data-field="customName">{errors.customName}</span>}
      </label>
      <label>
        Provider
        <select name="provider" value={form.provider} onChange={set("provider")}>
          <option value="openai">OpenAI</option>
          <option value="anthropic">Anthropic</option>
          <option value="google">Google</option>
          <option value="custom">Custom (OpenAI-compatible)</option>
        </select>
        {errors.provider && <span className="field-error" data-field="provider">{errors.provider}</span>}
      </label>
      <label>
        API key{" "}
        <small id="key-hint">{editing ? `Leave empty to keep ${editing.apiKeyPreview}` : ""}</small>
        <input name="apiKey" type="password" autoComplete="off" value={form.apiKey} onChange={set("apiKey")} />
        {errors.apiKey && <span className="field-error" data-field="apiKey">{errors.apiKey}</span>}
      </label>
      <label>
        Base URL
        <input name="baseUrl" autoComplete="off" value={form.baseUrl} onChange={set("baseUrl")} />
        {errors.baseUrl && <span className="field-error" data-field="baseUrl">{errors.baseUrl}</span>}
      </label>
      <label>
        <span>
          <input name="useAuthHeader" type="checkbox" checked={form.useAuthHeader} onChange={set("useAuthHeader")} /> Send
          the key in the Authorization header
        </span>
      </label>
      <p id="form-error" role="alert">{formError}</p>
      <div>
        <button id="save" type="submit">
          Save
        </button>{" "}
        {editing && (
          <button type="button" onClick={onDone}>
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}

function App() {
  const { configurations, isLoading, error, status, deleteConfiguration, getConfiguration, clearError } = useLlmConfig();
  const [editingId, setEditingId] = useState(null);
  const onEdit = useCallback((id) => setEditingId(id), []);
  const onDelete = useCallback((id) => deleteConfiguration(id).catch(() => {}), [deleteConfiguration]);
  const onDone = useCallback(() => setEditingId(null), []);

  useEffect(() => {
    window.__statusLog.push(status);
  }, [status]);

  const editing = editingId ? getConfiguration(editingId) : null;
  return (
    <>
      <header>
        <h1>LLM providers</h1>
        <span id="status" data-state={status} role="status" aria-live="polite">
          {STATUS_TEXT[status]}
        </span>
      </header>
      {error && (
        <p id="error" role="alert">
          {error.message} <button type="button" onClick={clearError}>Dismiss</button>
        </p>
      )}
      {isLoading ? <p id="loading">Loading…</p> : <List configurations={configurations} onEdit={onEdit} onDelete={onDelete} />}
      <Editor editing={editing} onDone={onDone} />
    </>
  );
}

const fragment = new URLSearchParams(location.hash.slice(1));
const client = new BridgeClient({ url: fragment.get("url"), token: fragment.get("token") });
window.__bridge = client;
client.onChanged(() => window.__arrivals.push(performance.now()));
createRoot(document.getElementById("root")).render(
  <BridgeProvider client={client}>
    <App />
  </BridgeProvider>,
);
