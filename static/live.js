// Refreshes the live part of a page (#live) from its fragment route every
// few seconds. The page is complete without this script; it only keeps it
// current. A refresh is skipped while the reader has an error expanded or
// the keyboard focus inside the live part, so nothing moves under them.
//
// When the server has not answered for more than two refresh periods, the
// banner (#stale-banner) says so with the time of the last update, and the
// states and rates shown are marked "(stale)": a page must not keep showing
// "running" that it could not refresh. The next refresh that succeeds
// clears both.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.fragment) { return; }
  var url = live.dataset.fragment;
  var banner = document.getElementById("stale-banner");
  var PERIOD = 2000;
  // The page itself was the last update.
  var lastUpdate = Date.now();
  // Whether the last refresh failed, or has not answered yet.
  var failing = false;
  var pending = false;
  var stale = false;

  function busy() {
    return live.querySelector("details[open]") !== null ||
      live.contains(document.activeElement);
  }
  function utc(ms) { return new Date(ms).toISOString().slice(11, 19); }

  function markStale() {
    if (banner) {
      banner.textContent = "Connection lost, last update " + utc(lastUpdate) +
        " UTC: the states and rates below are from then.";
    }
    if (stale) { return; }
    stale = true;
    live.classList.add("stale");
    var cells = live.querySelectorAll(".health, .state, .rate .num");
    for (var i = 0; i < cells.length; i++) {
      var mark = document.createElement("span");
      mark.className = "stale-mark";
      mark.textContent = " (stale)";
      cells[i].appendChild(mark);
    }
  }
  function markFresh() {
    failing = false;
    lastUpdate = Date.now();
    stale = false;
    live.classList.remove("stale");
    var marks = live.querySelectorAll(".stale-mark");
    for (var i = 0; i < marks.length; i++) { marks[i].remove(); }
    if (banner) { banner.textContent = ""; }
  }
  function check() {
    if ((failing || pending) && Date.now() - lastUpdate > 2 * PERIOD) { markStale(); }
  }

  function refresh() {
    check();
    if (pending || document.hidden || busy()) { return; }
    pending = true;
    fetch(url, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) {
        // The session ended: reloading sends the reader to the login page.
        if (r.status === 401) { window.location.reload(); return null; }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        pending = false;
        if (html === null) { return; }
        if (!busy()) { live.innerHTML = html; }
        markFresh();
      })
      .catch(function () {
        // The next tick tries again.
        pending = false;
        failing = true;
        check();
      });
  }
  setInterval(refresh, PERIOD);
})();
