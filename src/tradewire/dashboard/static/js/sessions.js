// Sessions: start a backtest on a stored dataset (query datasets) or a paper session on a live
// symbol, follow it on execution_status, and show metrics, equity and trades from
// results_request once execution_result reports it finished.

import { createChart, LineSeries } from "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { $, errorText, fillTable, fmt, fmtTime, h, replaceOptions, toSeconds } from "./dom.js";

const METRICS = [
  ["return_pct", "Return %"], ["buy_and_hold_return_pct", "Buy & hold %"], ["return_ann_pct", "Return (ann.) %"],
  ["sharpe", "Sharpe"], ["sortino", "Sortino"], ["max_drawdown_pct", "Max drawdown %"], ["trades", "Trades"],
  ["win_rate_pct", "Win rate %"], ["profit_factor", "Profit factor"], ["equity_final", "Final equity"],
];

export function setupSessions(connection) {
  const form = $("#session-form");
  const error = $("#session-error");
  const progress = $("#progress");
  let current = null;
  let equityChart = null;

  const typeChanged = () => {
    const backtest = form.session_type.value === "backtest";
    $("#dataset-label").hidden = !backtest;
    $("#symbol-label").hidden = backtest;
  };
  form.session_type.addEventListener("change", typeChanged);

  const onStatus = (event) => {
    if (!current || event.session_id !== current) return;
    progress.value = event.progress_pct;
    progress.setAttribute("aria-valuetext", `${fmt(event.progress_pct)} %`);
    $("#session-status").textContent = `${event.status} · ${fmt(event.progress_pct)} % · ${event.processed} processed`;
  };
  const onResult = async (event) => {
    if (!current || event.session_id !== current) return;
    $("#session-status").textContent = event.error ? `${event.status}: ${event.error.message}` : event.status;
    if (!event.error) await showResults(event.session_id);
  };
  const showResults = async (sessionId) => {
    try {
      const reply = await connection.request({
        type: "results_request",
        request_type: "session_results",
        params: { session_id: sessionId, sections: ["metrics", "trades", "equity"], limit: 500 },
      });
      render(reply.data);
    } catch (failure) {
      error.textContent = errorText(failure);
    }
  };
  const render = (data) => {
    $("#results").hidden = false;
    const metrics = data.metrics || {};
    $("#metrics").replaceChildren(...METRICS.flatMap(([key, label]) => [h("dt", {}, label), h("dd", { "data-metric": key }, fmt(metrics[key]))]));
    if (!equityChart) {
      equityChart = createChart($("#equity-chart"), { autoSize: true });
      equityChart.series = equityChart.addSeries(LineSeries, { lineWidth: 2, color: "#2e7d32" });
    }
    const points = data.equity.sample.map(([time, value]) => ({ time: toSeconds(time), value }));
    equityChart.series.setData(points);
    equityChart.timeScale().fitContent();
    const trades = data.trades.items.map((t) => [t.symbol, fmtTime(t.entry_time), fmtTime(t.exit_time), t.units, t.pnl, t.return_pct, t.exit_reason]);
    fillTable($("#trades tbody"), trades);
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const type = form.session_type.value;
    const dataset = form.dataset.selectedOptions[0];
    const symbol = type === "backtest" ? dataset?.dataset.symbol : form.symbol.value.trim();
    const config = { fee_bps: Number(form.fee_bps.value) };
    if (type === "backtest") config.dataset_id = Number(form.dataset.value);
    try {
      const reply = await connection.request({
        type: "session_start",
        session_type: type,
        strategy_config: { [form.strategy.value]: [symbol] },
        config,
      });
      current = reply.session_id;
      $("#session-id").textContent = current;
      $("#session-progress").hidden = false;
      $("#results").hidden = true;
      progress.value = 0;
      $("#session-status").textContent = reply.session.status;
    } catch (failure) {
      error.textContent = errorText(failure);
    }
  });
  $("#session-stop").addEventListener("click", async () => {
    if (!current) return;
    try {
      await connection.request({ type: "session_stop", session_id: current });
    } catch (failure) {
      error.textContent = errorText(failure);
    }
  });

  const loadDatasets = async () => {
    const reply = await connection.request({ type: "query", query_type: "datasets" });
    const select = form.dataset;
    replaceOptions(select, reply.data.map((d) => [d.id, `${d.symbol} · ${d.kind} · ${d.rows} rows`]));
    for (const option of select.options) {
      option.dataset.symbol = reply.data.find((d) => String(d.id) === option.value).symbol;
    }
  };
  const setStrategies = (strategies) => replaceOptions(form.strategy, strategies.map((s) => [s.strategy_name, s.strategy_name]));

  typeChanged();
  const ready = Promise.all([
    connection.subscribe("execution_status", {}, onStatus),
    connection.subscribe("execution_result", {}, onResult),
    loadDatasets(),
  ]);
  return { ready, setStrategies };
}
