/* The console's small progressive enhancements. Every page works without them (plain forms and links). */
(function () {
  "use strict";

  function csrfToken() {
    var field = document.querySelector('input[name="csrf_token"]');
    return field ? field.value : "";
  }

  // Choosing a product reloads the page for it (the form still works without this, by submitting).
  function initReloads(root) {
    root.querySelectorAll("select[data-reload-on-change]").forEach(function (select) {
      select.addEventListener("change", function () {
        var url = new URL(window.location.href);
        url.searchParams.set(select.name, select.value);
        url.searchParams.delete("sql");
        window.location.assign(url.toString());
      });
    });
  }

  // SQL highlighting: CodeMirror when it is vendored, else a highlighted preview under the editor.
  var KEYWORDS = /\b(SELECT|FROM|WHERE|GROUP|BY|ORDER|HAVING|LIMIT|AS|AND|OR|NOT|IN|IS|NULL|BETWEEN|LIKE|JOIN|ON|DESC|ASC|DISTINCT|CASE|WHEN|THEN|ELSE|END|WITH|UNION)\b/gi;
  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function highlight(sql) {
    return escapeHtml(sql)
      .replace(/('[^']*')/g, '<span class="str">$1</span>')
      .replace(/\b(\d+(?:\.\d+)?)\b/g, '<span class="num">$1</span>')
      .replace(/\b(count|sum|avg|stddev|stddev_pop|stddev_samp|variance|var_pop|var_samp)\s*\(/gi, '<span class="fn">$1</span>(')
      .replace(KEYWORDS, function (word) { return '<span class="kw">' + word + "</span>"; });
  }
  function initEditor(root) {
    var area = root.querySelector("textarea[data-sql-editor]");
    if (!area) return;
    if (window.CodeMirror && window.CodeMirror.fromTextArea) {
      var editor = window.CodeMirror.fromTextArea(area, { mode: "text/x-sql", lineNumbers: true, screenReaderLabel: area.labels && area.labels[0] ? area.labels[0].textContent : "SQL" });
      area.form.addEventListener("submit", function () { editor.save(); });
      var preview = root.querySelector("#sql-highlight");
      if (preview) preview.hidden = true;
      return;
    }
    var pre = root.querySelector("#sql-highlight");
    if (!pre) return;
    var update = function () { pre.innerHTML = highlight(area.value); };
    area.addEventListener("input", update);
    update();
  }

  // Queries run in the background with a progress line and a Cancel button.
  function initAsyncQuery(root) {
    var form = root.querySelector("form[data-async-query]");
    if (!form || !window.fetch || !window.AbortController) return;
    var cancel = root.querySelector("#cancel");
    var progress = root.querySelector("#progress");
    var run = root.querySelector("#run");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var controller = new AbortController();
      var started = Date.now();
      var label = progress.getAttribute("data-running") || "Running";
      var timer = window.setInterval(function () {
        progress.textContent = label + " " + Math.round((Date.now() - started) / 1000) + " s";
      }, 500);
      progress.textContent = label + "…";
      run.disabled = true;
      cancel.hidden = false;
      // Cancel stops the query on the server (the worker interrupts it and nothing is charged); the run's
      // own request then answers with the page saying so. Only if that call fails is the wait abandoned.
      cancel.onclick = function () {
        cancel.disabled = true;
        progress.textContent = progress.getAttribute("data-cancelling") || "Cancelling…";
        var body = new FormData();
        body.append("idempotency_key", form.querySelector('input[name="idempotency_key"]').value);
        body.append("csrf_token", csrfToken());
        fetch(form.getAttribute("data-cancel-url"), {
          method: "POST",
          body: body,
          headers: { "X-CSRF-Token": csrfToken() },
          credentials: "same-origin",
        }).then(function (response) {
          return response.ok ? response.json() : { state: "failed" };
        }).then(function (answer) {
          // "cancelled" or "finished": the run's own answer is on its way. Otherwise the run has not reached
          // the server's sandbox yet (it will be stopped there when it does): stop waiting for it now.
          if (answer.state !== "cancelled" && answer.state !== "finished") controller.abort();
        }).catch(function () { controller.abort(); });
      };
      // The button that sent the form (Run or Dry run) is part of what it sends, as without the script.
      var sent = new FormData(form);
      if (event.submitter && event.submitter.name) sent.append(event.submitter.name, event.submitter.value);
      fetch(form.action, {
        method: "POST",
        body: sent,
        headers: { "X-CSRF-Token": csrfToken() },
        signal: controller.signal,
        credentials: "same-origin",
      }).then(function (response) {
        return response.text();
      }).then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var main = doc.querySelector("main");
        if (main) {
          document.querySelector("main").innerHTML = main.innerHTML;
          init(document.querySelector("main"));
          var target = document.querySelector("#sql-error") || document.querySelector("#result");
          if (target) target.scrollIntoView();
        }
      }).catch(function () {
        progress.textContent = progress.getAttribute("data-cancelled") || "Cancelled";
      }).finally(function () {
        window.clearInterval(timer);
        run.disabled = false;
        cancel.hidden = true;
        cancel.disabled = false;
      });
    });
  }

  // Charts: ECharts when it is vendored, else a plain SVG drawing of the same data.
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#0b5cad", "#d9822b", "#1d6b35", "#8a1c1c", "#6b2a86", "#0a6e6e"];
  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function drawSvg(box, spec) {
    var width = box.clientWidth || 600, height = 300, left = 60, bottom = 40, top = 20;
    var svg = el("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height });
    var stacked = !!spec.stack;
    var totals = spec.x.map(function (_, i) {
      return stacked
        ? spec.series.reduce(function (sum, s) { return sum + (Number(s.data[i]) || 0); }, 0)
        : Math.max.apply(null, spec.series.map(function (s) { return Number(s.data[i]) || 0; }));
    });
    var max = Math.max.apply(null, totals.concat([1]));
    var plotW = width - left - 10, plotH = height - top - bottom;
    var step = plotW / Math.max(spec.x.length, 1);
    var y = function (v) { return top + plotH - (v / max) * plotH; };
    svg.appendChild(el("line", { x1: left, y1: top + plotH, x2: width - 10, y2: top + plotH, stroke: "#52606d" }));
    svg.appendChild(el("text", { x: 4, y: top + 10, fill: "#52606d" }, String(max)));
    var labelEvery = Math.ceil(spec.x.length / 12);
    spec.x.forEach(function (label, i) {
      if (i % labelEvery === 0) {
        svg.appendChild(el("text", { x: left + i * step + 2, y: height - 20, fill: "#1f2933" }, String(label).slice(0, 12)));
      }
    });
    var base = spec.x.map(function () { return 0; });
    spec.series.forEach(function (series, n) {
      var colour = COLOURS[n % COLOURS.length];
      if (spec.type === "line") {
        var points = series.data.map(function (v, i) { return (left + i * step + step / 2) + "," + y(Number(v) || 0); });
        svg.appendChild(el("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
      } else {
        var barW = stacked ? step * 0.8 : (step * 0.8) / spec.series.length;
        series.data.forEach(function (v, i) {
          var value = Number(v) || 0;
          var x = left + i * step + step * 0.1 + (stacked ? 0 : n * barW);
          var topY = y(value + (stacked ? base[i] : 0));
          var h = y(stacked ? base[i] : 0) - topY;
          svg.appendChild(el("rect", { x: x, y: topY, width: Math.max(barW - 1, 1), height: Math.max(h, 0), fill: colour }));
          if (stacked) base[i] += value;
        });
      }
      svg.appendChild(el("text", { x: left + n * 150, y: height - 4, fill: colour }, series.name));
    });
    box.appendChild(svg);
  }
  function initChart(root) {
    var data = root.querySelector("#chart-data");
    var box = root.querySelector("#chart");
    if (!data || !box || !data.textContent.trim()) return;
    var spec = JSON.parse(data.textContent);
    box.textContent = "";
    if (window.echarts) {
      var chart = window.echarts.init(box);
      chart.setOption({
        tooltip: { trigger: "axis" },
        legend: {},
        xAxis: { type: "category", data: spec.x },
        yAxis: { type: "value" },
        series: spec.series.map(function (s) {
          return { name: s.name, type: spec.type, data: s.data, stack: spec.stack ? "total" : undefined };
        }),
      });
      return;
    }
    drawSvg(box, spec);
  }

  // CSV download of a result table, built in the browser (no second query, so no second charge).
  function csvCell(text) {
    if (/^[=+\-@]/.test(text)) text = "'" + text;
    return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  function initCsv(root) {
    root.querySelectorAll("[data-csv-from]").forEach(function (button) {
      button.addEventListener("click", function () {
        var table = document.getElementById(button.getAttribute("data-csv-from"));
        var lines = Array.prototype.map.call(table.rows, function (row) {
          return Array.prototype.map.call(row.cells, function (cell) { return csvCell(cell.textContent); }).join(",");
        });
        var blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv;charset=utf-8" });
        var link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = button.getAttribute("data-csv-name") || "result.csv";
        document.body.appendChild(link);
        link.click();
        link.remove();
      });
    });
  }

  // Several charts on one page: each box names its data (<div data-chart="id-of-json-script">).
  function initDataCharts(root) {
    root.querySelectorAll("[data-chart]").forEach(function (box) {
      var data = document.getElementById(box.getAttribute("data-chart"));
      if (!data || !data.textContent.trim()) return;
      var spec = JSON.parse(data.textContent);
      box.textContent = "";
      if (window.echarts) {
        window.echarts.init(box).setOption({
          tooltip: { trigger: "axis" },
          legend: {},
          xAxis: { type: "category", data: spec.x },
          yAxis: { type: "value" },
          series: spec.series.map(function (s) {
            return { name: s.name, type: spec.type, data: s.data, stack: spec.stack ? "total" : undefined };
          }),
        });
        return;
      }
      drawSvg(box, spec);
    });
  }

  // Long actions (a billing run): the form submits as usual; meanwhile the page shows the time it has taken.
  function initProgress(root) {
    root.querySelectorAll("form[data-progress]").forEach(function (form) {
      form.addEventListener("submit", function () {
        var line = form.querySelector(".progress");
        var button = form.querySelector("button[type=submit]");
        var started = Date.now();
        var label = (line && line.getAttribute("data-running")) || "Running";
        if (line) line.textContent = label + "…";
        window.setTimeout(function () { if (button) button.disabled = true; }, 0);
        window.setInterval(function () {
          if (line) line.textContent = label + " " + Math.round((Date.now() - started) / 1000) + " s";
        }, 500);
      });
    });
  }

  function init(root) {
    initDataCharts(root);
    initProgress(root);
    initReloads(root);
    initEditor(root);
    initAsyncQuery(root);
    initChart(root);
    initCsv(root);
  }
  init(document);
})();
