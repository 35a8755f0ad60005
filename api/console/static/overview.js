// The Overview page: polls /console/api/overview and redraws its tiles, charts and tables.
// Values are written with textContent only, so nothing from the log is ever parsed as HTML.
"use strict";

(function () {
  const POLL_MS = 5000;
  const charts = {};

  function text(id, value) {
    document.getElementById(id).textContent = value;
  }

  function ms(value) {
    return value === null || value === undefined ? "–" : Math.round(value) + " ms";
  }

  function dollars(value) {
    return "$" + value.toFixed(value < 1 ? 4 : 2);
  }

  function percent(value) {
    return (value * 100).toFixed(1) + "%";
  }

  function chart(id, series, data) {
    const element = document.getElementById(id);
    if (charts[id]) {
      charts[id].setData(data);
      return;
    }
    const options = {
      width: Math.max(element.clientWidth, 260),
      height: 180,
      series: [{}].concat(series),
      axes: [{}, { size: 50 }],
    };
    charts[id] = new uPlot(options, data, element);
    new ResizeObserver(function () {
      charts[id].setSize({ width: Math.max(element.clientWidth, 260), height: 180 });
    }).observe(element);
  }

  function table(element, rows) {
    const body = element.querySelector("tbody");
    body.replaceChildren();
    if (!rows.length) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 6;
      cell.className = "muted";
      cell.textContent = "No requests.";
      return;
    }
    for (const usage of rows) {
      const row = body.insertRow();
      const values = [
        usage.group === null ? "(none)" : usage.group,
        usage.requests,
        usage.errors,
        ms(usage.ttft_p50_ms) + " / " + ms(usage.ttft_p95_ms),
        usage.input_tokens + usage.output_tokens,
        dollars(usage.cost_usd),
      ];
      for (const value of values) row.insertCell().textContent = value;
    }
  }

  function draw(figures) {
    text("t-rps", figures.hour.requests_per_s.toFixed(3));
    text("t-inflight", figures.in_flight);
    text("t-queued", figures.queued);
    text("t-ttft", ms(figures.hour.ttft_p50_ms) + " / " + ms(figures.hour.ttft_p95_ms));
    text("t-errors", percent(figures.hour.error_rate) + " / " + percent(figures.day.error_rate));
    text("t-spend", dollars(figures.hour.cost_usd) + " / " + dollars(figures.day.cost_usd));
    text("ov-updated", "updated " + new Date(figures.now_ms).toLocaleTimeString());
    const hours = figures.hourly.map(function (row) { return Date.parse(row.group) / 1000; });
    const column = function (field) { return figures.hourly.map(function (row) { return row[field]; }); };
    chart("c-requests", [
      { label: "requests", stroke: "#2563eb" },
      { label: "errors", stroke: "#dc2626" },
    ], [hours, column("requests"), column("errors")]);
    chart("c-ttft", [
      { label: "p50", stroke: "#059669" },
      { label: "p95", stroke: "#d97706" },
    ], [hours, column("ttft_p50_ms"), column("ttft_p95_ms")]);
    chart("c-spend", [{ label: "$", stroke: "#7c3aed" }], [hours, column("cost_usd")]);
    for (const element of document.querySelectorAll("table.breakdown")) {
      const window_ = figures[element.dataset.window];
      table(element, element.dataset.group === "model" ? window_.by_model : window_.by_channel);
    }
  }

  async function poll() {
    try {
      const response = await fetch("/console/api/overview", { headers: { accept: "application/json" } });
      if (response.status === 401) {
        window.location.assign("/console/login?next=/console/overview");
        return;
      }
      if (response.ok) draw(await response.json());
      else text("ov-updated", response.status === 503 ? "(the request log is unavailable)" : "(error " + response.status + ")");
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
