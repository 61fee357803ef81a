// The parameter table of a script output: add and remove rows. Without
// this script the page still offers a few empty rows.
(function () {
  "use strict";
  var table = document.getElementById("params");
  var add = document.getElementById("add-row");
  if (!table || !add) { return; }
  var body = table.tBodies[0];

  function wire(row) {
    var remove = row.querySelector(".remove-row");
    remove.hidden = false;
    remove.addEventListener("click", function () {
      var next = row.nextElementSibling || row.previousElementSibling;
      row.parentNode.removeChild(row);
      var focus = next ? next.querySelector("input") : add;
      (focus || add).focus();
    });
    var type = row.querySelector("select");
    var value = row.querySelector("input[name=param_value]");
    type.addEventListener("change", function () {
      value.type = type.value === "password" ? "password" : "text";
    });
  }

  Array.prototype.forEach.call(body.rows, wire);
  add.hidden = false;
  add.addEventListener("click", function () {
    var template = body.rows[body.rows.length - 1];
    var row = template ? template.cloneNode(true) : null;
    if (!row) { return; }
    Array.prototype.forEach.call(row.querySelectorAll("input"), function (i) {
      i.value = ""; i.type = "text"; i.removeAttribute("placeholder");
    });
    row.querySelector("select").value = "string";
    Array.prototype.forEach.call(row.querySelectorAll(".field-error"), function (e) {
      e.parentNode.removeChild(e);
    });
    body.appendChild(row);
    wire(row);
    row.querySelector("input").focus();
  });

  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();
