/* Occulta dashboard: draws the charts embedded in the page as JSON and switches heatmap galleries.
   Plain script, no build step; Chart.js and htmx are vendored beside it. */
(function () {
  "use strict";
  var PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

  function fmt(v) {
    if (v === null || v === undefined) return "—";
    return Math.abs(v) >= 100 || Number.isInteger(v) ? String(v) : v.toPrecision(3);
  }

  function datasets(spec) {
    var colours = {}, next = 0, bar = spec.type === "bar";
    return spec.series.map(function (s) {
      var base = s.label.replace(/^[AB] · /, "");
      if (!(base in colours)) colours[base] = PALETTE[next++ % PALETTE.length];
      var c = colours[base];
      return {
        label: s.label, data: s.data, borderColor: c, backgroundColor: bar ? c + (s.side === "B" ? "66" : "cc") : c,
        borderDash: s.side === "B" ? [6, 4] : [], borderWidth: bar ? 1 : 2, pointRadius: 2, pointHoverRadius: 5,
        tension: 0.15, spanGaps: true, fill: false
      };
    });
  }

  function drawCharts() {
    var el = document.getElementById("chart-data");
    if (!el || !window.Chart) return;
    var data = JSON.parse(el.textContent);
    document.querySelectorAll("canvas[data-group]").forEach(function (canvas) {
      var spec = data[canvas.dataset.group][Number(canvas.dataset.index)];
      new window.Chart(canvas, {
        type: spec.type || "line",
        data: { labels: spec.x, datasets: datasets(spec) },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          interaction: { mode: "index", intersect: false },
          plugins: {
            title: { display: true, text: spec.title, font: { size: 13, weight: "600" } },
            legend: { position: "bottom", labels: { boxWidth: 12, font: { size: 11 } } },
            tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + fmt(ctx.parsed.y); } } }
          },
          scales: {
            x: { title: { display: true, text: spec.x_label } },
            y: { title: { display: true, text: spec.y_label }, beginAtZero: true }
          }
        }
      });
    });
  }

  function wireGalleries() {
    document.querySelectorAll("[data-gallery]").forEach(function (gallery) {
      var buttons = gallery.querySelectorAll("button.toggle");
      buttons.forEach(function (button) {
        button.addEventListener("click", function () {
          buttons.forEach(function (b) { b.classList.toggle("on", b === button); });
          gallery.querySelectorAll("img[data-map]").forEach(function (img) {
            img.src = img.dataset.map + "?key=" + encodeURIComponent(button.dataset.key) + "&index=" + img.dataset.index;
          });
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(); wireGalleries(); });
})();
