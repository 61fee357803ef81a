// The live tail of an output: server-sent events from
// /api/v1/outputs/{name}/tail. The server samples (at most `rate` events
// per second reach us) and counts what it skipped; pause and the text
// filter act here, and what they hide is counted too.
(function () {
  "use strict";
  var section = document.getElementById("tail");
  if (!section || !window.EventSource) { return; }
  var source = null;
  var paused = false;
  var hidden = 0;
  var MAX_LINES = 200;
  var stage = document.getElementById("tail-stage");
  var filter = document.getElementById("tail-filter");
  var pause = document.getElementById("tail-pause");
  var clear = document.getElementById("tail-clear");
  var lines = document.getElementById("tail-lines");
  var skipped = document.getElementById("tail-skipped");
  var hiddenOut = document.getElementById("tail-hidden");
  var state = document.getElementById("tail-state");

  function show(data) {
    var text = JSON.stringify(data.event);
    var wanted = filter.value.trim();
    if (paused || (wanted !== "" && text.indexOf(wanted) < 0)) {
      hidden += 1;
      hiddenOut.textContent = String(hidden);
      return;
    }
    var li = document.createElement("li");
    var seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = "#" + data.seq + " ";
    var body = document.createElement("code");
    // textContent, never innerHTML: event fields are outside input.
    body.textContent = text;
    li.appendChild(seq);
    li.appendChild(body);
    lines.insertBefore(li, lines.firstChild);
    while (lines.childNodes.length > MAX_LINES) { lines.removeChild(lines.lastChild); }
  }

  function connect() {
    if (source) { source.close(); }
    state.textContent = "Connecting…";
    source = new EventSource(section.dataset.source + "?stage=" + encodeURIComponent(stage.value));
    source.onopen = function () { state.textContent = "Live (" + stage.value + ")."; };
    source.onerror = function () { state.textContent = "Disconnected; retrying…"; };
    source.addEventListener("tail", function (e) {
      var data = JSON.parse(e.data);
      skipped.textContent = String(data.skipped);
      show(data);
    });
    source.addEventListener("stats", function (e) {
      skipped.textContent = String(JSON.parse(e.data).skipped);
    });
  }

  stage.addEventListener("change", function () {
    lines.textContent = "";
    hidden = 0;
    hiddenOut.textContent = "0";
    connect();
  });
  pause.addEventListener("click", function () {
    paused = !paused;
    pause.setAttribute("aria-pressed", paused ? "true" : "false");
    pause.textContent = paused ? "Resume tail" : "Pause";
  });
  clear.addEventListener("click", function () { lines.textContent = ""; });
  connect();
})();
