// The margin report's chart: revenue, cost and margin by day (Chart.js, served from our static files).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("margin-data").textContent);
  var canvas = document.getElementById("margin-chart");
  if (!canvas || typeof Chart === "undefined") { return; }
  canvas.dataset.ready = "1";
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: data.names.revenue, data: data.revenue, backgroundColor: "#79aec8" },
        { label: data.names.cost, data: data.cost, backgroundColor: "#c2c2c2" },
        { label: data.names.margin, data: data.margin, type: "line", borderColor: "#417690", backgroundColor: "#417690" }
      ]
    },
    options: { animation: false, responsive: true, scales: { y: { beginAtZero: true } } }
  });
  window.marginChartReady = true;
})();
