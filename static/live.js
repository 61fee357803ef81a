// Refreshes the live part of a page (#live) from its fragment route every
// few seconds. The page is complete without this script; it only keeps it
// current. A refresh is skipped while the reader has an error expanded or
// the keyboard focus inside the live part, so nothing moves under them.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.fragment) { return; }
  var url = live.dataset.fragment;
  function busy() {
    return live.querySelector("details[open]") !== null ||
      live.contains(document.activeElement);
  }
  function refresh() {
    if (document.hidden || busy()) { return; }
    fetch(url, { headers: { "Accept": "text/html" } })
      .then(function (r) {
        // The session ended: reloading sends the reader to the login page.
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && !busy()) { live.innerHTML = html; }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  setInterval(refresh, 2000);
})();
