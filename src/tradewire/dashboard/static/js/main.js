// Wires the panels to one Connection. Each panel is a module that uses only the public wire
// protocol (and the public REST login).

import { Connection } from "./connection.js";
import { $ } from "./dom.js";
import { forgetToken, savedToken, setupLogin } from "./login.js";
import { setupPrices } from "./prices.js";
import { setupStreams } from "./streams.js";
import { setupStrategies } from "./strategies.js";
import { setupSessions } from "./sessions.js";
import { setupCollection } from "./collection.js";

function wsUrl() {
  const path = document.querySelector('meta[name="tradewire-ws-path"]').content || "/ws";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

function showState(connection, { state, code, delay }) {
  const box = $("#connection");
  box.dataset.state = state;
  box.dataset.reconnects = String(connection.reconnects);
  box.dataset.recovery = connection.lastRecovery ?? "";
  let text = state;
  if (state === "reconnecting") text = `reconnecting in ${(delay / 1000).toFixed(1)} s (closed ${code})`;
  if (state === "open" && connection.reconnects > 0) text = `connected · reconnected ${connection.reconnects}× · ${connection.lastRecovery}`;
  else if (state === "open") text = "connected";
  if (state === "closed" && code) text = `closed (${code})`;
  $("#connection-text").textContent = `${text}${connection.clientId ? ` · ${connection.clientId}` : ""}`;
}

async function start(token) {
  const connection = new Connection(wsUrl(), token);
  connection.addEventListener("state", (event) => showState(connection, event.detail));
  connection.addEventListener("server-error", (event) => {
    if (event.detail.error_code === "token_expired") $("#connection-text").textContent = "token expired: log in again";
  });
  const user = await connection.open();
  $("#login-panel").hidden = true;
  $("#app").hidden = false;
  $("#user").textContent = `${user.user_id} (${user.level})`;
  $("#logout").hidden = false;
  $("#logout").onclick = () => {
    forgetToken();
    connection.close();
    location.reload();
  };
  const sessions = setupSessions(connection);
  await Promise.all([
    setupPrices(connection),
    setupStreams(connection),
    setupStrategies(connection, sessions.setStrategies),
    sessions.ready,
    setupCollection(connection),
  ]);
  document.body.dataset.ready = "true";
  window.tradewire = connection; // for the console
}

setupLogin(start);
const token = savedToken();
if (token) start(token).catch(() => forgetToken());
