// Data collection: collection_start / collection_stop / collection_status as docs/PROTOCOL.md
// describes them. Errors (unknown_symbol with its close matches, a limit, a server without the
// collection component: service_unavailable) are shown as they come.

import { $, errorText, h } from "./dom.js";

export function setupCollection(connection) {
  const form = $("#collection-form");
  const message = $("#collection-message");
  const tbody = $("#collections tbody");

  const render = (collections) => {
    tbody.replaceChildren(
      ...collections.map((c) =>
        h("tr", {},
          h("td", {}, c.collection_id),
          h("td", {}, (c.symbols || []).join(", ")),
          h("td", {}, c.status ?? ""),
          h("td", {}, String(c.count ?? "")),
          h("td", {}, h("button", { type: "button", onclick: () => stop(c.collection_id) }, `Stop ${c.collection_id}`)),
        ),
      ),
    );
  };
  const refresh = async () => {
    try {
      const reply = await connection.request({ type: "collection_status" });
      render(reply.collections || (reply.collection ? [reply.collection] : []));
    } catch (error) {
      message.textContent = errorText(error);
    }
  };
  const stop = async (collectionId) => {
    try {
      await connection.request({ type: "collection_stop", collection_id: collectionId });
      await refresh();
    } catch (error) {
      message.textContent = errorText(error);
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const symbols = form.symbols.value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      message.textContent = "";
      const reply = await connection.request({ type: "collection_start", symbols, duration: form.duration.value });
      await refresh();
      message.textContent = `Collection ${reply.collection_id} started.`;
    } catch (error) {
      message.textContent = errorText(error);
    }
  });
  $("#collection-refresh").addEventListener("click", refresh);
  return refresh();
}
