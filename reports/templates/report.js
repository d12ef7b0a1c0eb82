(function () {
  "use strict";
  function setAll(open) {
    document.querySelectorAll("details.docs").forEach(function (d) { d.open = open; });
  }
  var expand = document.getElementById("expand-docs");
  var collapse = document.getElementById("collapse-docs");
  if (expand) { expand.addEventListener("click", function () { setAll(true); }); }
  if (collapse) { collapse.addEventListener("click", function () { setAll(false); }); }
  var copy = document.getElementById("copy-command");
  var command = document.getElementById("command");
  if (copy && command) {
    copy.addEventListener("click", function () {
      var range = document.createRange();
      range.selectNodeContents(command);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { document.execCommand("copy"); copy.textContent = "copied"; } catch (e) { copy.textContent = "select and copy"; }
    });
  }
  document.documentElement.setAttribute("data-ready", "1");
})();
