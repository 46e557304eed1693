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
  // A decision is sent once: a second click would be a second POST.
  document.querySelectorAll("form.decide").forEach(function (f) {
    f.addEventListener("submit", function () {
      setTimeout(function () {
        f.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
})();
