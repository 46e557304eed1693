// Interlock console: the countdowns to each held request's deadline.
// Pages work without it; it only keeps the remaining time current.
"use strict";
(function () {
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.deadline").forEach(function (el) {
      var left = Math.round((Date.parse(el.getAttribute("datetime")) - now) / 1000);
      if (isNaN(left)) return;
      if (left <= 0) {
        el.textContent = "0s (the host denies it now)";
        el.classList.add("expired");
        return;
      }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + "h" : "") + (h || m ? m + "m" : "") + s + "s";
    });
  }
  tick();
  setInterval(tick, 1000);
  // On the queue, say when requests arrive or go (the hub's approver
  // API, with this session's cookie), without reloading under a reason
  // being typed.
  var queue = document.querySelector("main[data-queue]");
  if (queue && window.fetch) {
    var shown = queue.getAttribute("data-queue");
    setInterval(function () {
      fetch("/v1/approvals", {credentials: "same-origin"}).then(function (r) {
        return r.ok ? r.json() : null;
      }).then(function (list) {
        if (!list) return;
        var ids = list.map(function (p) { return p.held.request.id; }).sort().join(" ");
        var note = document.getElementById("queue-changed");
        if (ids !== shown && note) note.hidden = false;
      }).catch(function () {});
    }, 10000);
  }
  // A decision is sent once: a second click would be a second POST.
  document.querySelectorAll("form.decide").forEach(function (f) {
    f.addEventListener("submit", function () {
      setTimeout(function () {
        f.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
})();
