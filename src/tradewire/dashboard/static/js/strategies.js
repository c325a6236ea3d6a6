// Strategies: the stored list, a JSON editor, validate_strategy_config with every error and
// warning shown at its path, and upsert_strategy.

import { $, errorText, h, replaceOptions } from "./dom.js";

const TEMPLATE = {
  strategy_name: "my_strategy",
  direction: "LONG",
  s1_signal: { conditions: [{ id: "oversold", indicatorId: "rsi", params: { period: 14 }, operator: "<", value: 30 }] },
  z1_entry: {
    conditions: [{ id: "turning", indicatorId: "rsi", params: { period: 14 }, operator: ">", value: 35 }],
    positionSize: { type: "percentage", value: 50 },
  },
  ze1_close: { conditions: [{ id: "recovered", indicatorId: "rsi", params: { period: 14 }, operator: ">", value: 55 }] },
  o1_cancel: { conditions: [], timeoutSeconds: 3600 },
  emergency_exit: { conditions: [], cooldownMinutes: 0, actions: [] },
};

export function setupStrategies(connection, onList) {
  const select = $("#strategy-select");
  const editor = $("#strategy-editor");
  const result = $("#strategy-result");
  let documents = new Map();

  const load = async () => {
    const reply = await connection.request({ type: "get_strategies" });
    documents = new Map(reply.strategies.map((s) => [s.strategy_name, s]));
    replaceOptions(select, reply.strategies.map((s) => [s.strategy_name, `${s.strategy_name} v${s.version}`]));
    if (!editor.value && reply.strategies.length) show(select.value);
    onList(reply.strategies);
  };
  const show = (name) => {
    const stored = documents.get(name);
    if (stored) editor.value = JSON.stringify(stored.document, null, 2);
    result.replaceChildren();
  };
  const parsed = () => {
    try {
      return JSON.parse(editor.value);
    } catch (error) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, `Not JSON: ${error.message}`));
      editor.focus();
      return null;
    }
  };
  const problems = (title, items, kind) =>
    items.length
      ? [h("h3", {}, title), h("ul", { class: kind }, items.map((p) => h("li", {}, h("code", {}, p.path || "(document)"), ` ${p.message}`)))]
      : [];

  select.addEventListener("change", () => show(select.value));
  $("#strategy-new").addEventListener("click", () => {
    editor.value = JSON.stringify(TEMPLATE, null, 2);
    result.replaceChildren();
    editor.focus();
  });
  $("#strategy-validate").addEventListener("click", async () => {
    const document = parsed();
    if (!document) return;
    try {
      const reply = await connection.request({ type: "validate_strategy_config", strategy_config: document });
      const verdict = reply.valid
        ? h("p", { class: "ok", "data-valid": "true" }, "Valid.")
        : h("p", { class: "error", "data-valid": "false" }, `${reply.errors.length} error(s).`);
      result.replaceChildren(verdict, ...problems("Errors", reply.errors, "errors"), ...problems("Warnings", reply.warnings, "warnings"));
    } catch (error) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(error)));
    }
  });
  $("#strategy-save").addEventListener("click", async () => {
    const document = parsed();
    if (!document) return;
    try {
      const reply = await connection.request({ type: "upsert_strategy", strategy_config: document });
      result.replaceChildren(h("p", { class: "ok" }, `Saved ${reply.strategy_name} as version ${reply.version}.`));
      await load();
      select.value = reply.strategy_name;
    } catch (error) {
      const errors = (error.details && error.details.errors) || [];
      result.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(error)), ...problems("Errors", errors, "errors"));
    }
  });
  return load();
}
