// The output form: focus on what a button's answer says, and the
// parameter table of a script output (add and remove rows). Without this
// script the page still scrolls to a Test's result and offers a few empty
// rows.
(function () {
  "use strict";
  // What the person pressed a button for comes first: a Test's result,
  // else the errors that kept the output from being saved.
  var result = document.getElementById("test-result");
  var summary = document.getElementById("error-summary");
  if (result) {
    result.focus();
    result.scrollIntoView({block: "start"});
  } else if (summary) {
    summary.focus();
  }

  var table = document.getElementById("params");
  var add = document.getElementById("add-row");
  if (!table || !add) { return; }
  var body = table.tBodies[0];

  // Rows are numbered as the messages number them, from 1.
  function renumber() {
    Array.prototype.forEach.call(body.rows, function (row, i) {
      var cell = row.querySelector(".row-number");
      if (cell) { cell.textContent = String(i + 1); }
    });
  }

  function wire(row) {
    var remove = row.querySelector(".remove-row");
    remove.hidden = false;
    remove.addEventListener("click", function () {
      var next = row.nextElementSibling || row.previousElementSibling;
      row.parentNode.removeChild(row);
      renumber();
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
    Array.prototype.forEach.call(row.querySelectorAll("[aria-invalid]"), function (e) {
      e.removeAttribute("aria-invalid");
      e.removeAttribute("aria-describedby");
    });
    row.classList.remove("invalid");
    row.removeAttribute("id");
    body.appendChild(row);
    renumber();
    wire(row);
    row.querySelector("input").focus();
  });
})();
