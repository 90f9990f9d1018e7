// Live alert feed: rows arrive as server-sent events and are added as text (never HTML).
"use strict";
(function () {
  const body = document.querySelector("#alerts tbody");
  const state = document.getElementById("feed-state");
  if (!body || !window.EventSource) return;
  const columns = ["raised_by", "category", "severity", "document", "modus_operandi",
                   "caveat", "signature", "status"];
  const feed = new EventSource("/alerts/feed");
  feed.onopen = function () {
    state.dataset.state = "live";
    state.textContent = "Live: new alerts appear here as they arrive.";
  };
  feed.onerror = function () {
    state.dataset.state = "reconnecting";
    state.textContent = "Reconnecting to the live feed…";
  };
  feed.addEventListener("alert", function (message) {
    const alert = JSON.parse(message.data);
    const old = body.querySelector('tr[data-alert="' + CSS.escape(alert.alert_id) + '"]');
    const row = document.createElement("tr");
    row.dataset.alert = alert.alert_id;
    row.className = "new";
    for (const key of columns) {
      const cell = document.createElement("td");
      cell.textContent = alert[key];
      row.appendChild(cell);
    }
    row.appendChild(document.createElement("td"));
    if (old) old.replaceWith(row); else body.prepend(row);
    const empty = document.getElementById("no-alerts");
    if (empty) empty.remove();
  });
})();
