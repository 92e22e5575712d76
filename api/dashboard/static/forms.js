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
