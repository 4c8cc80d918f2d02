// Kidjamo care team: refresh the board and the alert queue in place, announce new critical
// alerts, and draw the patient page's charts with the vendored vega-embed.
(function () {
  "use strict";

  function criticalIds(root) {
    var ids = new Set();
    root.querySelectorAll("[data-critical-alerts]").forEach(function (node) {
      node.getAttribute("data-critical-alerts").split(/\s+/).forEach(function (id) { if (id) ids.add(id); });
    });
    return ids;
  }

  function startRefresh(container) {
    var url = container.getAttribute("data-refresh");
    var every = parseInt(container.getAttribute("data-refresh-ms"), 10) || 5000;
    var target = container.tagName === "TABLE" ? container.querySelector("tbody") : container;
    var known = criticalIds(target);
    var announce = document.getElementById("announce");
    var label = document.documentElement.lang === "en" ? "New critical alert" : "Nouvelle alerte critique";
    function tick() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}, cache: "no-store"})
        .then(function (response) {
          if (response.redirected || response.status === 401) { window.location.assign("/login"); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === null) return;
          target.innerHTML = html;
          var now = criticalIds(target);
          var fresh = [];
          now.forEach(function (id) { if (!known.has(id)) fresh.push(id); });
          known = now;
          if (fresh.length && announce) {
            announce.textContent = "‼ " + label + " #" + fresh.join(", #");
            fresh.forEach(function (id) {
              target.querySelectorAll('[data-critical-alerts~="' + id + '"]').forEach(function (node) { node.classList.add("fresh"); });
            });
          }
          var stamp = document.querySelector("[data-updated]");
          if (stamp) stamp.textContent = new Date().toLocaleTimeString(document.documentElement.lang);
        })
        .catch(function () { /* network hiccup: the next tick retries */ })
        .finally(function () { window.setTimeout(tick, every); });
    }
    window.setTimeout(tick, every);
  }

  var FR_FORMAT = {decimal: ",", thousands: "\u202f", grouping: [3], currency: ["", "\u00a0€"]};
  var FR_TIME = {
    dateTime: "%A %e %B %Y à %X", date: "%d/%m/%Y", time: "%H:%M:%S", periods: ["AM", "PM"],
    days: ["dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"],
    shortDays: ["dim.", "lun.", "mar.", "mer.", "jeu.", "ven.", "sam."],
    months: ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"],
    shortMonths: ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."]
  };

  function drawCharts(node) {
    var spec = JSON.parse(document.getElementById("chart-spec").textContent);
    // Fit the screen: the axis title and labels take about 70 px beside the plot.
    var width = Math.max(220, node.clientWidth - 70);
    (spec.vconcat || []).forEach(function (chart) { chart.width = width; });
    var options = {actions: false, renderer: "svg", ast: true, expr: window.vegaInterpreter.expressionInterpreter};
    if (node.getAttribute("data-locale") === "fr") {
      options.formatLocale = FR_FORMAT;
      options.timeFormatLocale = FR_TIME;
    }
    window.vegaEmbed(node, spec, options).then(function () { node.setAttribute("data-drawn", "true"); })
      .catch(function (error) { node.setAttribute("data-error", String(error)); node.textContent = String(error); });
  }

  document.querySelectorAll("[data-refresh]").forEach(startRefresh);
  var charts = document.getElementById("charts");
  if (charts && window.vegaEmbed) drawCharts(charts);
})();
