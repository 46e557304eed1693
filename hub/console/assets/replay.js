// Interlock console: plays a terminal channel's asciicast, fetched from
// the hub (same origin), with asciinema-player.
"use strict";
(function () {
  var el = document.getElementById("player");
  if (!el || !window.AsciinemaPlayer) return;
  window.AsciinemaPlayer.create(el.getAttribute("data-cast"), el, {
    fit: "width", idleTimeLimit: 2, preload: true, controls: true
  });
})();
