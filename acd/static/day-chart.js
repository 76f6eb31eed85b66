// The day chart (uPlot, a classic script: window.uPlot): service level over 15 minutes and
// today, the target, and the calls waiting, from the day's history the service sends with its
// first message and one point with each update after it.

import * as C from "/static/common/common.js";
import { rem } from "./wallboard-format.js";

const TARGET_COLOUR = "#f5b301";

let chart = null;
let latest = null; // the board state the chart shows (its target, its time)
let history = { t: [], sl_15min: [], sl_today: [], waiting: [] };
let horizon = 24 * 3600;

export function setHistory(h) {
  history = {
    t: h.t.slice(),
    sl_15min: h.sl_15min.slice(),
    sl_today: h.sl_today.slice(),
    waiting: h.waiting.slice(),
  };
  horizon = h.horizon || horizon;
}

// The newest point replaces the last one while it is in the same interval.
export function addPoint(p) {
  const n = history.t.length;
  if (n && history.t[n - 1] === p.t) {
    history.sl_15min[n - 1] = p.sl_15min;
    history.sl_today[n - 1] = p.sl_today;
    history.waiting[n - 1] = p.waiting;
  } else if (!n || p.t > history.t[n - 1]) {
    history.t.push(p.t);
    history.sl_15min.push(p.sl_15min);
    history.sl_today.push(p.sl_today);
    history.waiting.push(p.waiting);
  }
  while (history.t.length && history.t[0] <= p.t - horizon) {
    for (const series of Object.values(history)) series.shift();
  }
}

function clockLabel(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString(C.language() === "pl" ? "pl-PL" : "en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    hour12: false,
  });
}

function chartData(state) {
  const target = state ? state.target_sl_percent : 90;
  return [
    history.t,
    history.sl_15min,
    history.sl_today,
    history.t.map(() => target),
    history.waiting,
  ];
}

function chartSize() {
  const el = C.$("chart");
  return { width: Math.max(200, el.clientWidth), height: Math.round(rem() * 13) };
}

function drawTarget(u) {
  const target = latest ? latest.target_sl_percent : null;
  if (target === null) return;
  const y = u.valToPos(target, "pct", true);
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = TARGET_COLOUR;
  ctx.lineWidth = 2 * devicePixelRatio;
  ctx.setLineDash([10 * devicePixelRatio, 6 * devicePixelRatio]);
  ctx.beginPath();
  ctx.moveTo(u.bbox.left, y);
  ctx.lineTo(u.bbox.left + u.bbox.width, y);
  ctx.stroke();
  ctx.restore();
}

function chartOptions() {
  const font = Math.round(rem() * 0.85) + "px DejaVu Sans, Arial, sans-serif";
  const axis = {
    stroke: "#d9dee5",
    font,
    grid: { stroke: "#2a3240", width: 1 },
    ticks: { stroke: "#2a3240", width: 1 },
  };
  const percentValue = (u, v) => (v === null || v === undefined ? "—" : v.toFixed(1) + "%");
  return {
    ...chartSize(),
    cursor: { drag: { x: false, y: false } },
    hooks: { draw: [drawTarget] },
    legend: { live: false }, // nobody points at a TV: the legend names the lines
    scales: {
      // From the first point (at least the last hour) to now, so the time axis reads right
      // from the first point on (uPlot would pad a single point by days).
      x: {
        time: true,
        range: () => {
          const now = latest ? latest.at : Date.now() / 1000;
          const first = history.t.length ? history.t[0] : now;
          return [Math.min(first, now - 3600), now];
        },
      },
      pct: { range: [0, 100] },
      calls: { range: (u, min, max) => [0, Math.max(4, Math.ceil((max || 0) * 1.2))] },
    },
    axes: [
      { ...axis, space: rem() * 4.5, values: (u, ticks) => ticks.map(clockLabel) },
      { ...axis, scale: "pct", size: rem() * 3.6, values: (u, vals) => vals.map((v) => v + "%") },
      { ...axis, scale: "calls", side: 1, size: rem() * 3, grid: { show: false } },
    ],
    series: [
      { label: C.t("chart.time") },
      {
        label: C.t("chart.sl_15min"),
        scale: "pct",
        stroke: "#5cc8ff",
        width: 3,
        spanGaps: true,
        value: percentValue,
      },
      {
        label: C.t("chart.sl_today"),
        scale: "pct",
        stroke: "#e6e9ee",
        width: 2,
        spanGaps: true,
        value: percentValue,
      },
      {
        // In the legend only: the line itself is drawn across the whole plot (drawTarget).
        label: C.t("chart.target"),
        scale: "pct",
        stroke: TARGET_COLOUR,
        width: 2,
        dash: [10, 6],
        paths: () => null,
        points: { show: false },
        value: percentValue,
      },
      {
        label: C.t("chart.waiting"),
        scale: "calls",
        stroke: "#ff8a4c",
        fill: "rgba(255, 138, 76, 0.25)",
        width: 2,
        paths: window.uPlot.paths.stepped({ align: 1 }),
        points: { show: false },
      },
    ],
  };
}

// A new chart (in the page's language) for `state`, the last board state, or null.
export function buildChart(state) {
  const el = C.$("chart");
  latest = state;
  destroyChart();
  if (typeof window.uPlot === "undefined") {
    el.textContent = C.t("chart.missing");
    return;
  }
  el.replaceChildren();
  chart = new window.uPlot(chartOptions(), chartData(latest), el);
}

export function updateChart(state) {
  latest = state;
  if (chart) chart.setData(chartData(state));
}

export function resizeChart() {
  if (chart) chart.setSize(chartSize());
}

export function destroyChart() {
  if (chart) chart.destroy();
  chart = null;
}
