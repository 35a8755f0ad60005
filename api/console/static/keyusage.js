// A key's page: its requests and spend per day as a chart, from the figures the page carries.
"use strict";

(function () {
  const element = document.getElementById("key-chart");
  const days = JSON.parse(element.dataset.days).map(function (ms) { return ms / 1000; });
  if (!days.length) return;
  const data = [days, JSON.parse(element.dataset.requests), JSON.parse(element.dataset.cost)];
  const options = {
    width: Math.max(element.clientWidth, 260),
    height: 200,
    scales: { x: { time: true }, dollars: {} },
    series: [{}, { label: "requests", stroke: "#2563eb" }, { label: "$", stroke: "#7c3aed", scale: "dollars" }],
    axes: [{}, { size: 50 }, { side: 1, scale: "dollars", size: 60, grid: { show: false } }],
  };
  const chart = new uPlot(options, data, element);
  new ResizeObserver(function () {
    chart.setSize({ width: Math.max(element.clientWidth, 260), height: 200 });
  }).observe(element);
})();
