// The board's little script: refresh the live parts, sort tables, draw charts, send actions.
"use strict";
const REFRESH_MS = 5000;
const SERIES = {
  daily: [["assigned", "派单"], ["replied", "答复"], ["breached", "超期"]],
  monthly: [["assigned", "派单"], ["replied", "答复"]],
};

function drawCharts(root) {
  if (!window.Plotly) return;
  root.querySelectorAll(".chart[data-chart]").forEach((el) => {
    const data = JSON.parse(el.dataset.chart);
    const traces = SERIES[el.dataset.kind].map(([key, name]) => ({ x: data.x, y: data[key], name, type: "bar" }));
    if (el.dataset.kind === "monthly") {
      traces.push({ x: data.x, y: data.on_time_rate, name: "按时答复率", type: "scatter", yaxis: "y2" });
    }
    const layout = { barmode: "group", margin: { t: 10, r: 40, b: 40, l: 40 }, height: 260,
      legend: { orientation: "h" }, yaxis2: { overlaying: "y", side: "right", range: [0, 1], tickformat: ".0%" } };
    Plotly.react(el, traces, layout, { displayModeBar: false, responsive: true });
  });
}

// The sort chosen per table (id -> [column, "asc" | "desc"]): reapplied when a refresh replaces the rows.
const sorts = new Map();

function applySort(table, index, dir) {
  const th = table.tHead.rows[0].cells[index];
  table.querySelectorAll("th[data-dir]").forEach((other) => { if (other !== th) delete other.dataset.dir; });
  th.dataset.dir = dir;
  const sign = dir === "desc" ? -1 : 1;
  const text = (tr) => tr.cells[index].textContent.trim();
  const num = (tr) => { const v = parseFloat(text(tr)); return Number.isNaN(v) ? -Infinity : v; };
  const body = table.tBodies[0];
  Array.from(body.rows)
    .sort((a, b) => sign * (th.dataset.sort === "num" ? num(a) - num(b) : text(a).localeCompare(text(b), "zh-CN")))
    .forEach((r) => body.appendChild(r));
}

function sortable(root) {
  root.querySelectorAll("table.sortable").forEach((table) => {
    table.querySelectorAll("th[data-sort]").forEach((th) => {
      th.addEventListener("click", () => {
        const dir = th.dataset.dir === "desc" ? "asc" : "desc";
        sorts.set(table.id, [th.cellIndex, dir]);
        applySort(table, th.cellIndex, dir);
      });
    });
    const kept = sorts.get(table.id);
    if (kept) applySort(table, kept[0], kept[1]);
  });
}

function refresh(el) {
  setInterval(async () => {
    const resp = await fetch(el.dataset.refresh, { credentials: "same-origin" });
    if (resp.redirected || !resp.ok) return;
    el.innerHTML = await resp.text();
    drawCharts(el);
    sortable(el);
  }, REFRESH_MS);
}

function actions(root) {
  root.querySelectorAll("form[data-action]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      if (event.submitter) data.set("type", event.submitter.value);
      const out = form.querySelector(".result");
      const resp = await fetch(form.action, { method: "POST", body: data, credentials: "same-origin" });
      const body = await resp.json();
      out.classList.toggle("error", !resp.ok);
      out.textContent = resp.ok ? "已提交" : body.error.message;
      const timeline = document.getElementById("timeline");
      if (resp.ok && timeline) {
        const again = await fetch(timeline.dataset.refresh, { credentials: "same-origin" });
        timeline.innerHTML = await again.text();
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawCharts(document);
  sortable(document);
  actions(document);
  document.querySelectorAll("[data-refresh]").forEach(refresh);
});
