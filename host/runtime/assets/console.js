// Aegis web console: live updates (server-sent events), sorting, filtering and operator actions. The page works
// without this file; the bearer token stays in sessionStorage and is only sent in the Authorization header.
"use strict";
(function () {
  const KEY = "aegis-token";
  const $ = (s, r) => (r || document).querySelector(s);
  const $$ = (s, r) => Array.from((r || document).querySelectorAll(s));
  const msg = $("#msg");
  const say = (text, ok) => { msg.textContent = text; msg.className = ok ? "ok" : "err"; };
  const token = () => sessionStorage.getItem(KEY) || "";
  const showMode = () => { const m = $("#mode"); m.textContent = token() ? "token set" : "read-only"; m.className = token() ? "rw" : ""; };
  $("#auth").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("#token").value.trim();
    if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY);
    $("#token").value = "";
    showMode();
  });
  $("#forget-token").addEventListener("click", () => { sessionStorage.removeItem(KEY); showMode(); });
  showMode();

  // The elements showing each service, found once: the server renders them and sorting only moves them. A lookup
  // per service per event would scan the whole page, a thousand times a second at a thousand services.
  const shown = new Map();
  for (const el of $$("[data-service]:not(button)")) {
    const list = shown.get(el.dataset.service) || [];
    list.push(el); shown.set(el.dataset.service, list);
  }
  const targets = (svc) => shown.get(svc) || [];

  function setState(svc, st) {
    for (const el of targets(svc)) {
      const b = el.matches("tr") ? $(".st .badge", el) : $(".badge", el);
      if (el.matches("tr")) el.dataset.state = st;
      if (!b || b.dataset.state === st) continue;
      b.className = "badge " + st; b.dataset.state = st; b.textContent = st.toUpperCase();
      if (el.matches("tr")) { el.classList.add("flash"); setTimeout(() => el.classList.remove("flash"), 800); }
    }
  }

  function drawSpark(cell, points) {
    const svg = $("svg", cell); if (!svg) return;
    const [, , w, h] = svg.getAttribute("viewBox").split(" ").map(Number);
    const max = Math.max(1, ...points.map((p) => p[0]));
    const step = w / 60;
    let line = "", fails = "";
    points.forEach((p, i) => {
      const x = Math.round(step * i), y = Math.round(h - (p[0] / max) * (h - 2) - 1);
      line += x + "," + y + " ";
      if (p[1]) fails += "M" + x + " " + h + "v-" + h;
    });
    $("polyline", svg).setAttribute("points", line.trim());
    $("path", svg).setAttribute("d", fails);
  }

  function onChecks(d) {
    for (const s of d.services) {
      setState(s.s, s.st);
      for (const el of targets(s.s)) {
        const cells = el.classList.contains("spark-cell") ? [el] : $$(".spark-cell", el);
        for (const cell of cells) {
          const pts = (cell.dataset.lat || "").split(" ").filter(Boolean).map((p) => p.split(":").map(Number)).concat(s.c).slice(-60);
          cell.dataset.lat = pts.map((p) => p.join(":")).join(" ");
          drawSpark(cell, pts);
        }
        const rate = $(".rate", el); if (rate && s.r !== null) rate.textContent = (s.r * 100).toFixed(1) + " %";
        if (el.matches("tr")) el.dataset.rate = s.r === null ? -1 : s.r;
        const t = $(".age time", el); if (t && s.at) t.dataset.at = s.at;
        const o = $(".owner", el); if (o && s.o) { o.textContent = s.o; if (el.matches("tr")) el.dataset.owner = s.o; }
      }
    }
    if ($("#percent")) {
      $("#percent").textContent = d.healthy_percent.toFixed(1);
      $("#healthy").textContent = d.healthy; $("#total").textContent = d.total;
      const st = d.healthy === d.total ? "healthy" : d.healthy === 0 ? "unhealthy" : "degraded";
      $("#status").textContent = st; $("#status").className = "status " + st;
    }
    applyFilter();
  }

  function ages() {
    const now = Date.now();
    for (const t of $$("time[data-at]")) {
      const text = Math.max(0, Math.round((now - Number(t.dataset.at)) / 1000)) + " s ago";
      if (t.textContent !== text) t.textContent = text;
    }
  }
  setInterval(ages, 1000);

  if (window.EventSource) {
    const es = new EventSource("/api/v1/stream");
    es.addEventListener("transition", (e) => { const d = JSON.parse(e.data); setState(d.service, d.to); applyFilter(); });
    es.addEventListener("checks", (e) => onChecks(JSON.parse(e.data)));
    es.addEventListener("alerts", () => { if (location.pathname === "/alerts") location.reload(); });
    es.addEventListener("plugins", () => { if (location.pathname === "/plugins") location.reload(); });
    es.addEventListener("lagged", () => location.reload());
    es.addEventListener("open", () => { document.body.dataset.live = "1"; });
    // A page kept in the back/forward cache would keep its stream's connection, and browsers open six per host: a
    // few cached console pages made the next page wait seconds for one. Close it on the way out; a page that comes
    // back from the cache has missed events, so it reloads.
    window.addEventListener("pagehide", () => es.close());
    window.addEventListener("pageshow", (e) => { if (e.persisted) location.reload(); });
  }

  document.addEventListener("click", async (e) => {
    const b = e.target.closest("button.act"); if (!b) return;
    const svc = b.dataset.service, act = b.dataset.act;
    const what = act === "reset" ? "reset the breaker of " + svc : "force the breaker of " + svc + " to " + act;
    if (!window.confirm("Really " + what + "?")) return;
    const enc = encodeURIComponent(svc);
    const url = act === "reset" ? "/api/v1/circuit-breakers/" + enc + "/reset" : "/api/v1/circuit-breakers/" + enc + "/force-state";
    const headers = { "Content-Type": "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    try {
      const r = await fetch(url, { method: "POST", headers, body: act === "reset" ? "" : JSON.stringify({ state: act }), credentials: "omit" });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) { say("Refused (" + r.status + "): " + (body.error || r.statusText)); return; }
      say("Done: " + svc + " is " + body.state, true);
      if (body.state) { setState(svc, body.state); applyFilter(); }
    } catch (err) { say("Request failed: " + err); }
  });

  // Sorting and filtering of the overview table.
  const table = $("#services");
  let filtered = false;
  function applyFilter() {
    if (!table) return;
    const q = $("#filter").value.toLowerCase(), st = $("#state-filter").value;
    if (!q && !st && !filtered) return;
    for (const tr of $$("tbody tr", table)) tr.hidden = !(tr.dataset.service.toLowerCase().includes(q) && (!st || tr.dataset.state === st));
    filtered = Boolean(q || st);
  }
  if (table) {
    $("#filter").addEventListener("input", applyFilter);
    $("#state-filter").addEventListener("change", applyFilter);
    for (const th of $$("th[data-sort]", table)) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort, desc = th.getAttribute("aria-sort") === "ascending";
        $$("th", table).forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", desc ? "descending" : "ascending");
        const num = key === "rate" || key === "restarts";
        const rows = $$("tbody tr", table).sort((a, b) => {
          const x = a.dataset[key === "name" ? "service" : key], y = b.dataset[key === "name" ? "service" : key];
          const c = num ? Number(x) - Number(y) : x.localeCompare(y);
          return desc ? -c : c;
        });
        const body = $("tbody", table); rows.forEach((r) => body.appendChild(r));
      });
    }
  }
})();
