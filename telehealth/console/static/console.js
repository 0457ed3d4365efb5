// Staff console behaviour. Loaded from this server only (the CSP forbids inline scripts).
// - The board refreshes its list without reloading the page; the refresh does not count as
//   activity, so an unattended board still signs out after the idle time.
// - Forms with data-confirm ask before they submit.
(function () {
  "use strict";

  function refreshBoard(board, status) {
    if (document.hidden) return;
    fetch(board.dataset.refreshUrl, {
      headers: {"X-Console-Refresh": "1"}, credentials: "same-origin", cache: "no-store"
    }).then(function (response) {
      if (response.status === 401) { window.location.reload(); return null; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      if (html === null) return;
      var focused = document.activeElement && board.contains(document.activeElement)
        ? document.activeElement.id : null;
      board.innerHTML = html;
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
      var list = board.querySelector("[data-open-count]");
      var open = list ? Number(list.dataset.openCount) : 0;
      document.title = (open ? "(" + open + ") " : "") + document.title.replace(/^\(\d+\) /, "");
      status.textContent = "Updated at " + new Date().toLocaleTimeString() + ".";
    }).catch(function () {
      status.textContent = "Could not refresh; trying again.";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var board = document.getElementById("board");
    if (board) {
      var status = document.getElementById("board-updated");
      var every = Math.max(2, Number(board.dataset.refreshSeconds) || 10) * 1000;
      window.setInterval(function () { refreshBoard(board, status); }, every);
    }
    document.addEventListener("submit", function (event) {
      var message = event.target.getAttribute("data-confirm");
      if (message && !window.confirm(message)) event.preventDefault();
    });
  });
})();
