// Wrong uses of the prompt-template types (see good.ts): tsc must reject exactly the code
// lines that end in an error comment, each for the reason that comment gives
// (tests/e2e/test_prompt_templates.py checks the line numbers).
import { BridgeClient } from "bridge-ipc";
import type { ChannelMap, NotificationMap, Params, PromptTemplateView } from "./bridge-types.js";

export async function misuse(client: BridgeClient<ChannelMap, NotificationMap>, view: PromptTemplateView): Promise<void> {
  const misspelt: Params<"prompt-template:create"> = { item: { name: "A", template: "t", model: null, modle: "x" } }; // error: unknown field
  const nameless: Params<"prompt-template:create"> = { item: { template: "t", model: null } }; // error: name is required
  const numeric: Params<"prompt-template:update"> = { id: view.id, updates: { template: 42 } }; // error: template is a string
  const count: number = view.name; // error: name is a string
  await client.invoke("prompt-template:read", { name: "A" }); // error: read takes {id}
  client.on("prompt-template:changed", (event) => console.log(event.item?.nmae)); // error: no such field
  console.log(misspelt, nameless, numeric, count);
}
