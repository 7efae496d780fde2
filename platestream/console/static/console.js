// The console's only script: new passes appear at the top of the live page, and alerts raised
// after the page was opened show in a banner on every page. Both ask the server every 3 s.
(function () {
  "use strict";
  var EVERY_MS = 3000;

  var table = document.getElementById("passes");
  if (table && table.dataset.live === "yes") {
    var body = table.tBodies[0];
    var newest = function () {
      var first = body.querySelector("tr[data-start]");
      return first ? first.dataset.start : "0";
    };
    var poll = function () {
      var url = "/rows?after=" + encodeURIComponent(newest()) + "&camera=" + encodeURIComponent(table.dataset.camera || "");
      fetch(url, {credentials: "same-origin"}).then(function (answer) {
        return answer.ok ? answer.text() : "";
      }).then(function (rows) {
        if (rows.trim()) {
          body.insertAdjacentHTML("afterbegin", rows);
          var empty = document.querySelector(".empty");
          if (empty) { empty.remove(); }
        }
      }).catch(function () {}).finally(function () { setTimeout(poll, EVERY_MS); });
    };
    setTimeout(poll, EVERY_MS);
  }

  // Forms that destroy something ask first (no inline handlers: the pages' CSP allows none).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });

  var banner = document.getElementById("alert-banner");
  if (banner) {
    // Alerts raised in the last ten minutes (server time) until one is dismissed.
    var seen = Number(sessionStorage.getItem("platestream-alerts-seen") || Number(document.body.dataset.now) - 600000);
    var show = function (alert) {
      banner.hidden = false;
      banner.textContent = "";
      var text = document.createElement("span");
      text.textContent = "Alert · " + alert.list + ": " + alert.plate + (alert.description ? " (" + alert.description + ")" : "") +
        " seen on camera " + alert.camera_id + " at " + alert.time + " UTC" + (alert.how !== "exact" ? " — read " + alert.reading + ", " + alert.how : "");
      var link = document.createElement("a");
      link.href = "/pass?id=" + encodeURIComponent(alert.pass_id);
      link.textContent = "open the pass";
      var close = document.createElement("button");
      close.textContent = "Dismiss";
      close.addEventListener("click", function () {
        banner.hidden = true;
        sessionStorage.setItem("platestream-alerts-seen", String(alert.raised_ms));
      });
      banner.append(text, " ", link, " ", close);
    };
    var pollAlerts = function () {
      fetch("/api/alerts?after=" + seen, {credentials: "same-origin"}).then(function (answer) {
        return answer.ok ? answer.json() : {alerts: []};
      }).then(function (found) {
        if (found.alerts.length) {
          show(found.alerts[0]);
          seen = Math.max(seen, found.alerts[0].raised_ms);
        }
      }).catch(function () {}).finally(function () { setTimeout(pollAlerts, EVERY_MS); });
    };
    pollAlerts();
  }
})();
