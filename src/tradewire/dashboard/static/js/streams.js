// Live tables of the signals and state_machines streams (newest first, bounded).

import { $, fmtTime, prependRow } from "./dom.js";

export async function setupStreams(connection) {
  const signals = $("#signals tbody");
  const machines = $("#machines tbody");
  await connection.subscribe("signals", {}, (s) =>
    prependRow(signals, [fmtTime(s.timestamp), s.signal_type, s.strategy_name, s.symbol, s.price, s.reason ?? ""]),
  );
  await connection.subscribe("state_machines", {}, (m) =>
    prependRow(machines, [fmtTime(m.timestamp), m.strategy_name, m.symbol, m.from_state, m.to_state, m.reason]),
  );
}
