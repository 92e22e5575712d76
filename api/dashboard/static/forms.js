/* Occulta dashboard, every page: confirm destructive buttons, and say what a slow form is doing
   (an upload of a model's weights takes seconds with no other sign of life). No inline script: the
   Content-Security-Policy allows scripts from this origin only. */
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });

  function megabytes(form) {
    var bytes = 0;
    form.querySelectorAll("input[type=file]").forEach(function (input) {
      Array.prototype.forEach.call(input.files || [], function (f) { bytes += f.size; });
    });
    return bytes / 1048576;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("form[data-busy]")) return;
    var button = form.querySelector("button[type=submit]");
    var note = form.querySelector("[data-busy-note]");
    var mb = megabytes(form), started = Date.now();
    if (button) { button.disabled = true; button.textContent = form.dataset.busy; }
    if (!note) return;
    note.hidden = false;
    function tick() {
      var s = Math.round((Date.now() - started) / 1000);
      note.textContent = (mb > 0.05 ? "Uploading " + mb.toFixed(1) + " MB and checking the model" : "Submitting") +
        "… " + s + " s";
    }
    tick();
    window.setInterval(tick, 1000);
  });
})();

/* The launch form offers a native missingness strategy only for a model that has it (token_drop for
   the transformer families, layer_mask for the CNN ones). The server says which: each model option
   carries data-native, and the arch of a card being uploaded is looked up at launch/native (the
   table in auditors/families.py, not a copy here). The server refuses a mismatch anyway. */
(function () {
  "use strict";
  var form = document.querySelector("form.launch");
  if (!form) return;
  var select = form.querySelector("select[name=model_id]");
  var cardInput = form.querySelector("input[name=card]");
  var uploadedNative = null;
  var nativeUrl = (form.getAttribute("action") || window.location.pathname).replace(/\/?$/, "") + "/native";

  function apply() {
    var picked = select && select.value ? select.selectedOptions[0].dataset.native : null;
    var native = uploadedNative !== null ? uploadedNative : picked;
    form.querySelectorAll("[data-native-only]").forEach(function (label) {
      var show = native === null || native === undefined || label.dataset.nativeOnly === native;
      label.hidden = !show;
      if (!show) label.querySelector("input").checked = false;
    });
  }

  function lookUp(arch) {
    return window.fetch(nativeUrl + "?arch=" + encodeURIComponent(arch), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : { native: null }; })
      .then(function (body) { return body.native; }, function () { return null; });
  }

  if (select) select.addEventListener("change", function () { uploadedNative = null; apply(); });
  if (cardInput) cardInput.addEventListener("change", function () {
    var file = cardInput.files && cardInput.files[0];
    if (!file) { uploadedNative = null; apply(); return; }
    file.text().then(function (text) {
      var m = text.match(/["']?arch["']?\s*:\s*["']?([A-Za-z0-9_.\-]+)/);
      return m ? lookUp(m[1]) : null;
    }).then(function (native) {
      uploadedNative = native === undefined ? null : native;
      apply();
    });
  });
  apply();
})();
