/* The regulator's dashboard charts: every [data-chart] box draws the JSON figure it names, with ECharts
   (vendored). Without ECharts the figures stay readable in the tables under each chart. */
(function () {
  "use strict";
  if (!window.echarts) return;
  var labelsNode = document.getElementById("chart-labels");
  var labels = labelsNode ? JSON.parse(labelsNode.textContent) : {};
  function label(key) { return Object.prototype.hasOwnProperty.call(labels, key) ? labels[key] : key; }
  document.querySelectorAll("[data-chart]").forEach(function (box) {
    var source = document.getElementById(box.getAttribute("data-chart"));
    if (!source || !source.textContent.trim()) return;
    var spec = JSON.parse(source.textContent);
    var chart = window.echarts.init(box);
    chart.setOption({
      tooltip: { trigger: "axis" },
      legend: {},
      grid: { containLabel: true, left: 8, right: 8 },
      xAxis: { type: "category", data: spec.x.map(label) },
      yAxis: { type: "value" },
      series: spec.series.map(function (s) {
        return { name: label(s.key), type: spec.type, data: s.data, stack: spec.stack ? "total" : undefined };
      }),
    });
    window.addEventListener("resize", function () { chart.resize(); });
  });
})();
