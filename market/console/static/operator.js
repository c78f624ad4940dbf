/* The operator's pages: resumable file upload in parts with progress, the fee-cap check before a plan is sent,
   and the build's progress, polled. Pages work without it, except the upload, which needs it. */
(function () {
  "use strict";

  function csrfToken() {
    var field = document.querySelector("input[name=csrf_token]");
    return field ? field.value : "";
  }

  function format(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) { return String(values[key]); }).replace("%%", "%");
  }

  function randomKey() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  /* A resumable upload: the file goes in parts (File.slice: the browser reads each part from disk as it sends it,
     the file is never in memory), each PUT with its Content-Range. The session's id is kept in localStorage under
     the file's name, size and date, so after a network error, or a reload and the same file chosen again, the
     server says how much it has and only the rest is sent. */
  var PART_BYTES = 8 * 1024 * 1024;
  var AUTO_RETRIES = 3;

  function setUpUpload(zone) {
    var input = zone.querySelector("#upload-file");
    var bar = zone.querySelector("#upload-progress");
    var status = zone.querySelector("#upload-status");
    var error = zone.querySelector("#upload-error");
    var retry = zone.querySelector("#upload-retry");
    var texts = zone.querySelector("#upload-texts").dataset;
    var current = null;

    function fileKey(file) { return "upload:" + file.name + ":" + file.size + ":" + file.lastModified; }

    function request(method, url, body, headers, onprogress) {
      return new Promise(function (resolve, reject) {
        var xhr = new XMLHttpRequest();
        xhr.open(method, url);
        xhr.setRequestHeader("X-CSRF-Token", csrfToken());
        Object.keys(headers || {}).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
        if (onprogress) { xhr.upload.onprogress = onprogress; }
        xhr.onload = function () {
          var data = null;
          try { data = JSON.parse(xhr.responseText); } catch (ignored) { /* not JSON */ }
          resolve({ status: xhr.status, data: data });
        };
        xhr.onerror = function () { reject(new Error("network")); };
        xhr.send(body === undefined ? null : body);
      });
    }

    function show(sent, total) {
      var percent = total ? Math.floor((sent / total) * 100) : 0;
      bar.value = percent;
      status.textContent = format(texts.sent, {
        sent: (sent / 1e6).toFixed(1), total: (total / 1e6).toFixed(1), percent: percent
      });
    }

    function finished(file, upload) {
      window.localStorage.removeItem(fileKey(file));
      bar.value = 100;
      status.textContent = texts.done;
      window.location.assign(zone.dataset.next + encodeURIComponent(upload.id));
    }

    function session(file) {
      var saved = window.localStorage.getItem(fileKey(file));
      var fresh = function () {
        var url = zone.dataset.sessions + "?filename=" + encodeURIComponent(file.name) + "&size=" + file.size;
        return request("POST", url).then(function (answer) {
          if (answer.status !== 201) { throw answer; }
          window.localStorage.setItem(fileKey(file), answer.data.id);
          return answer.data;
        });
      };
      if (!saved) { return fresh(); }
      return request("GET", zone.dataset.sessions + "/" + encodeURIComponent(saved)).then(function (answer) {
        return answer.status === 200 && answer.data.size === file.size ? answer.data : fresh();
      });
    }

    function sendFrom(file, state, attempt) {
      if (state.upload) { finished(file, state.upload); return; }
      var part = Number(zone.dataset.partBytes) || PART_BYTES;
      var start = state.offset;
      var end = Math.min(start + part, file.size);
      show(start, file.size);
      request("PUT", zone.dataset.sessions + "/" + encodeURIComponent(state.id), file.slice(start, end), {
        "Content-Type": "application/octet-stream",
        "Content-Range": "bytes " + start + "-" + (end - 1) + "/" + file.size
      }, function (event) { show(start + event.loaded, file.size); }).then(function (answer) {
        if (answer.status === 200) { sendFrom(file, answer.data, 0); return; }
        if (answer.status === 409) { resume(file, state.id, attempt + 1); return; }
        throw answer;
      }).catch(function (failure) { again(file, state.id, attempt, failure); });
    }

    /* Ask the server how much it has, then go on from there. */
    function resume(file, id, attempt) {
      request("GET", zone.dataset.sessions + "/" + encodeURIComponent(id)).then(function (answer) {
        if (answer.status !== 200) { throw answer; }
        sendFrom(file, answer.data, attempt);
      }).catch(function (failure) { again(file, id, attempt, failure); });
    }

    function again(file, id, attempt, failure) {
      if (failure instanceof Error && attempt < AUTO_RETRIES) {
        window.setTimeout(function () { resume(file, id, attempt + 1); }, 500 * (attempt + 1));
        return;
      }
      var message = (failure && failure.data && failure.data.error && failure.data.error.message) || texts.failed;
      fail(message);
    }

    function send(file) {
      current = file;
      retry.hidden = true;
      error.hidden = true;
      bar.hidden = false;
      bar.value = 0;
      session(file).then(function (state) { sendFrom(file, state, 0); }).catch(function (failure) {
        fail((failure && failure.data && failure.data.error && failure.data.error.message) || texts.failed);
      });
    }

    function fail(message) {
      error.textContent = message;
      error.hidden = false;
      retry.hidden = false;
    }

    input.addEventListener("change", function () {
      if (input.files && input.files[0]) { send(input.files[0]); }
    });
    retry.addEventListener("click", function () {
      if (current) { send(current); }
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      var files = event.dataTransfer && event.dataTransfer.files;
      if (files && files[0]) { send(files[0]); }
    });
  }

  /* A price above the fee cap (the input's max) is refused here, next to its plan, before the form is sent. */
  function setUpCapCheck(form) {
    form.addEventListener("submit", function (event) {
      var first = null;
      form.querySelectorAll(".plan-row").forEach(function (row) {
        var note = row.querySelector("[data-cap-error]");
        var over = [];
        row.querySelectorAll("input[type=number][max]").forEach(function (input) {
          var bad = input.value !== "" && Number(input.value) > Number(input.max);
          input.setAttribute("aria-invalid", bad ? "true" : "false");
          if (bad) { over.push(input); }
        });
        if (note) {
          note.hidden = over.length === 0;
          note.textContent = over.map(function (input) {
            return format(form.dataset.capMessage, { field: input.labels[0].textContent, cap: input.max });
          }).join(" ");
          if (over.length) { note.id = note.id || "cap-error-" + Math.random().toString(16).slice(2); }
        }
        over.forEach(function (input) { input.setAttribute("aria-describedby", note ? note.id : ""); });
        if (over.length && !first) { first = over[0]; }
      });
      if (first) {
        event.preventDefault();
        first.focus();
      }
    });
  }

  function setUpBuild(form) {
    form.addEventListener("submit", function (event) {
      var submitter = event.submitter;
      if (!submitter || submitter.value !== "build") { return; }
      form.querySelector("#build-progress").hidden = false;
      form.querySelector("#build-status").textContent = form.dataset.buildingText;
    });
  }

  /* The build runs on the server; this page polls its state and shows the stage, rows, and the end. */
  function setUpBuildJob(section) {
    var rows = section.querySelector("#build-rows");
    var bar = section.querySelector("#build-bar");
    var line = section.querySelector("#build-state");
    var lang = document.documentElement.lang || undefined;

    function apply(state) {
      section.querySelectorAll("#build-stages li").forEach(function (item, index) {
        var current = index === state.stage_index && state.state === "running";
        item.classList.toggle("current", current);
        item.classList.toggle("passed", index < state.stage_index || state.state === "done");
        if (current) { item.setAttribute("aria-current", "step"); } else { item.removeAttribute("aria-current"); }
      });
      if (state.percent !== null) {
        rows.hidden = false;
        rows.textContent = format(rows.dataset.template, {
          table: state.table, done: state.rows_done.toLocaleString(lang), total: state.rows_total.toLocaleString(lang)
        });
        bar.value = state.percent;
      } else {
        bar.removeAttribute("value");
      }
      section.dataset.state = state.state;
      if (state.state === "running") {
        line.textContent = format(section.dataset.running, { stage: state.stage_label });
        window.setTimeout(poll, 1000);
        return;
      }
      bar.hidden = true;
      section.querySelector("#build-refresh").hidden = true;
      if (state.state === "done") {
        line.textContent = format(section.dataset.done, { number: state.version });
        section.querySelector("#build-version").href = state.version_url;
        section.querySelector("#build-version").hidden = false;
        window.location.assign(state.version_url);
        return;
      }
      line.textContent = section.dataset.failed;
      var box = section.querySelector("#build-error");
      box.innerHTML = "";
      var alert = document.createElement("div");
      alert.className = "alert";
      alert.setAttribute("role", "alert");
      var text = document.createElement("p");
      text.textContent = state.error ? state.error.message : section.dataset.failed;
      alert.appendChild(text);
      box.appendChild(alert);
      box.hidden = false;
      section.querySelector("#build-again").hidden = false;
    }

    function poll() {
      window.fetch(section.dataset.stateUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(apply)
        .catch(function () { window.setTimeout(poll, 3000); });
    }

    if (section.dataset.state === "running") { window.setTimeout(poll, 500); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var zone = document.getElementById("dropzone");
    if (zone) { setUpUpload(zone); }
    document.querySelectorAll("form[data-cap-form]").forEach(setUpCapCheck);
    var recipe = document.getElementById("recipe-form");
    if (recipe) { setUpBuild(recipe); }
    var job = document.getElementById("build-job");
    if (job) { setUpBuildJob(job); }
  });
})();
