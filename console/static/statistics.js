// Draws the merged table's chart (vendored Chart.js); counts start at zero.
"use strict";
(function () {
  const canvas = document.getElementById("chart");
  if (!canvas || !window.Chart) return;
  const data = JSON.parse(canvas.dataset.chart);
  if (!data.labels.length) return;
  const colours = ["#0b4f79", "#d97706", "#2f855a", "#9b2c2c", "#6b46c1", "#4a5568"];
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.series.map(function (s, i) {
        return { label: s.name, data: s.values, backgroundColor: colours[i % colours.length] };
      }),
    },
    options: {
      animation: false,
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { legend: { display: data.series.length > 1 } },
    },
  });
  canvas.dataset.drawn = "yes";
})();
