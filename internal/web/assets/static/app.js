// Relais: small progressive enhancement. The pages work without it.
// The inactivity warning (AUTH-6): the server signs a session out after
// the tenant's idle timeout (body data-idle, in seconds). Shortly before,
// this warns the user and offers to stay signed in (an authenticated
// request renews the idle timer); at the end it goes to the sign-in page.
(function () {
  "use strict";
  var idle = parseInt(document.body.getAttribute("data-idle") || "0", 10);
  var box = document.getElementById("idle-warning");
  if (!idle || !box) { return; }
  var warnBefore = Math.min(120, Math.floor(idle / 4));
  var left = document.getElementById("idle-left");
  var stay = document.getElementById("idle-stay");
  var deadline, warnTimer, tick;

  function fmt(s) {
    var m = Math.floor(s / 60), r = s % 60;
    return m + ":" + (r < 10 ? "0" : "") + r;
  }
  function update() {
    var s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    left.textContent = fmt(s);
    if (s <= 0) {
      window.clearInterval(tick);
      window.location.assign("/login?expired=1");
    }
  }
  function show() {
    box.hidden = false;
    stay.focus();
    update();
    tick = window.setInterval(update, 1000);
  }
  function arm() {
    window.clearTimeout(warnTimer);
    window.clearInterval(tick);
    box.hidden = true;
    deadline = Date.now() + idle * 1000;
    warnTimer = window.setTimeout(show, (idle - warnBefore) * 1000);
  }
  stay.addEventListener("click", function () {
    fetch("/account/keepalive", { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.ok) { arm(); } else { window.location.assign("/login?expired=1"); }
    }, function () { /* offline: keep the warning */ });
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !box.hidden) { stay.click(); }
  });
  arm();
})();
