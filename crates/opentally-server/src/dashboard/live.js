// The live view: asks the server for events newer than the last one shown, every 0.3 s, and
// adds them at the top of the table as text (never as HTML). Keeps at most 500 rows.
(function () {
  "use strict";
  var table = document.getElementById("live");
  if (!table) return;
  var body = table.tBodies[0];
  var status = document.getElementById("live-status");
  var params = new URLSearchParams();
  ["event", "install"].forEach(function (k) {
    var v = table.dataset[k];
    if (v) params.set(k, v);
  });
  var after = null;
  var MAX_ROWS = 500;

  function cell(row, text, cls) {
    var td = row.insertCell(-1);
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
  }

  function show(e) {
    var m = e.message || {};
    var p = m.properties || {};
    var c = m.context || {};
    var row = body.insertRow(0);
    cell(row, e.timestamp);
    cell(row, m.event || m.type);
    cell(row, (e.install || "").slice(0, 12));
    cell(row, c.app && c.app.version);
    cell(row, c.os && c.os.name);
    cell(row, p.duration_ms, "num");
    cell(row, p.outcome);
    cell(row, p.error_type);
    var rest = {};
    Object.keys(p).forEach(function (k) {
      if (k !== "duration_ms" && k !== "outcome" && k !== "error_type") rest[k] = p[k];
    });
    cell(row, Object.keys(rest).length ? JSON.stringify(rest) : "");
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  }

  function poll() {
    var q = new URLSearchParams(params);
    if (after !== null) q.set("after", after);
    fetch("/dashboard/live/events?" + q.toString(), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401 || r.redirected) {
          status.textContent = "Signed out: sign in again to go on watching.";
          return null;
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) {
        if (!data) return;
        data.events.forEach(show);
        after = data.last;
        status.textContent = "Watching: new events appear here as they are acknowledged.";
        setTimeout(poll, 300);
      })
      .catch(function (e) {
        status.textContent = "Cannot reach the server (" + e.message + "); retrying.";
        setTimeout(poll, 2000);
      });
  }
  poll();
})();
