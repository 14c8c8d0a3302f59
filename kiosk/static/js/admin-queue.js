/* Live progress on the admin queue page: re-read the page's numbers every 2 s (short
 * polling) and update the bars in place; the page itself works without this. */
(function () {
  "use strict";
  var POLL_MS = 2000;
  function tick(root) {
    fetch(root.getAttribute("data-src"), {headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (report) {
        if (!report) { return; }
        var seen = {};
        report.entries.forEach(function (e) {
          seen[e.file_id] = true;
          var row = root.querySelector('tr[data-file="' + e.file_id + '"]');
          if (!row) { return; }
          var bar = row.querySelector("progress");
          bar.max = e.bytes_total || 1;
          bar.value = e.bytes_done;
          row.children[1].textContent = e.state;
        });
        var rows = root.querySelectorAll("tr[data-file]");
        for (var i = 0; i < rows.length; i++) {
          if (!seen[rows[i].getAttribute("data-file")]) { rows[i].classList.add("done"); }
        }
      })
      .catch(function () {})
      .then(function () { window.setTimeout(function () { tick(root); }, POLL_MS); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("queue-live");
    if (root) { window.setTimeout(function () { tick(root); }, POLL_MS); }
  });
})();
