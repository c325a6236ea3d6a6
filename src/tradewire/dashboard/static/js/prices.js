// Live prices: one market_data subscription, a line chart of the selected symbol (points per
// second, the last one updated in place) and its last price.

import { createChart, LineSeries } from "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { $, fmt, replaceOptions, toSeconds } from "./dom.js";

const MAX_POINTS = 3600;

export function setupPrices(connection) {
  const chart = createChart($("#price-chart"), { autoSize: true, timeScale: { timeVisible: true, secondsVisible: true } });
  const series = chart.addSeries(LineSeries, { lineWidth: 2 });
  const history = new Map(); // symbol -> [{time, value}]
  const select = $("#symbol");
  const output = $("#last-price");
  let ticks = 0;

  const show = () => {
    series.setData(history.get(select.value) || []);
    chart.timeScale().scrollToRealTime();
  };
  select.addEventListener("change", show);

  const onPrice = (data) => {
    if (data.event !== "market.price_update") return;
    let points = history.get(data.symbol);
    if (!points) {
      points = [];
      history.set(data.symbol, points);
      replaceOptions(select, [...history.keys()].sort().map((symbol) => [symbol, symbol]));
      if (!select.value) select.value = data.symbol;
    }
    const point = { time: Math.floor(toSeconds(data.timestamp)), value: data.price };
    const last = points[points.length - 1];
    if (last && last.time === point.time) points[points.length - 1] = point;
    else if (!last || last.time < point.time) points.push(point);
    else return; // older than what the chart shows
    if (points.length > MAX_POINTS) points.shift();
    if (data.symbol === select.value) {
      series.update(point);
      ticks += 1;
      output.value = `${data.symbol} ${fmt(data.price)}`;
      output.dataset.ticks = String(ticks);
      output.dataset.price = String(data.price);
    }
  };
  return connection.subscribe("market_data", {}, onPrice);
}
