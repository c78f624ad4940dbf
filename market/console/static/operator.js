/* The operator's pages: streamed file upload with progress and retry, the fee-cap check before a plan is sent,
   and the build's progress line. Pages work without it, except the upload, which needs it. */
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

  /* The File object is the XHR body: the browser streams it from disk, it is never read into memory. */
  function setUpUpload(zone) {
    var input = zone.querySelector("#upload-file");
    var bar = zone.querySelector("#upload-progress");
    var status = zone.querySelector("#upload-status");
    var error = zone.querySelector("#upload-error");
    var retry = zone.querySelector("#upload-retry");
    var texts = zone.querySelector("#upload-texts").dataset;
    var current = null;

    function send(file, key) {
      current = { file: file, key: key };
      retry.hidden = true;
      error.hidden = true;
      bar.hidden = false;
      bar.value = 0;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", zone.dataset.upload + "?filename=" + encodeURIComponent(file.name));
      xhr.setRequestHeader("X-CSRF-Token", csrfToken());
      xhr.setRequestHeader("Idempotency-Key", key);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = function (event) {
        var total = event.lengthComputable ? event.total : file.size;
        var percent = total ? Math.floor((event.loaded / total) * 100) : 0;
        bar.value = percent;
        status.textContent = format(texts.sent, {
          sent: (event.loaded / 1e6).toFixed(1), total: (total / 1e6).toFixed(1), percent: percent
        });
      };
      xhr.onload = function () {
        if (xhr.status === 200 || xhr.status === 201) {
          bar.value = 100;
          status.textContent = texts.done;
          var upload = JSON.parse(xhr.responseText);
          window.location.assign(zone.dataset.next + encodeURIComponent(upload.id));
          return;
        }
        var message = texts.failed;
        try { message = JSON.parse(xhr.responseText).error.message || message; } catch (ignored) { /* not JSON */ }
        fail(message);
      };
      xhr.onerror = function () { fail(texts.failed); };
      xhr.send(file);
    }

    function fail(message) {
      error.textContent = message;
      error.hidden = false;
      retry.hidden = false;
    }

    input.addEventListener("change", function () {
      if (input.files && input.files[0]) { send(input.files[0], randomKey()); }
    });
    retry.addEventListener("click", function () {
      if (current) { send(current.file, current.key); }
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
      if (files && files[0]) { send(files[0], randomKey()); }
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

  document.addEventListener("DOMContentLoaded", function () {
    var zone = document.getElementById("dropzone");
    if (zone) { setUpUpload(zone); }
    document.querySelectorAll("form[data-cap-form]").forEach(setUpCapCheck);
    var recipe = document.getElementById("recipe-form");
    if (recipe) { setUpBuild(recipe); }
  });
})();
