// Small DOM and SVG helpers. Text always goes in as text nodes (never as HTML), so nothing a
// job's name, parameters or log holds can become markup.

const SVG = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

export const STATES = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"];

export function badge(status) {
  return h("span", { class: `badge st-${status}` }, status);
}

export function when(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleString();
}

export function age(ms, now = Date.now()) {
  if (!ms) return "never";
  const sec = Math.max(0, Math.round((now - ms) / 1000));
  if (sec < 120) return `${sec} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  return `${Math.round(sec / 3600)} h`;
}

export function duration(ms) {
  if (ms === undefined || ms === null) return "";
  const sec = ms / 1000;
  return sec < 120 ? `${sec.toFixed(1)} s` : `${(sec / 60).toFixed(1)} min`;
}

export function table(headers, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "none"))));
}

export function panel(title, id, ...body) {
  return h("section", { class: "panel", "data-panel": id }, h("h2", {}, title), ...body);
}

// A line chart of several series over the same times (epoch ms), with the largest value and
// the time span as labels.
export function lineChart(times, series, label) {
  const W = 600, H = 150, P = 28;
  const max = Math.max(1, ...series.flatMap((x) => x.values));
  const t0 = times.length ? times[0] : 0;
  const t1 = times.length ? times[times.length - 1] : 1;
  const span = Math.max(1, t1 - t0);
  const x = (t) => P + ((t - t0) / span) * (W - 2 * P);
  const y = (v) => H - P + 4 - (v / max) * (H - 2 * P);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label },
    s("line", { x1: P, y1: y(0), x2: W - P, y2: y(0), class: "axis" }),
    s("text", { x: 2, y: y(max) + 4, class: "tick" }, String(Math.round(max * 10) / 10)),
    s("text", { x: 2, y: y(0) + 4, class: "tick" }, "0"),
    s("text", { x: P, y: H - 4, class: "tick" }, times.length ? `${age(t0, t1)} ago` : "no samples yet"),
    s("text", { x: W - P, y: H - 4, class: "tick", "text-anchor": "end" }, "now"));
  for (const one of series) {
    if (!times.length) continue;
    const pts = times.map((t, i) => `${x(t).toFixed(1)},${y(one.values[i]).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { points: pts, class: `line ${one.cls}` }));
  }
  const legend = h("div", { class: "legend" },
    series.map((one) => h("span", { class: `key ${one.cls}` }, `${one.name}: ${one.values.length ? one.values[one.values.length - 1] : 0}`)));
  return h("figure", {}, svg, legend);
}
