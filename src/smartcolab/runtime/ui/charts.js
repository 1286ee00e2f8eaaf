// Small line charts as inline SVG (no library): one chart per metric, several series.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 300, H = 60;

  function svgEl(name, attrs) {
    const el = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    return el;
  }

  /**
   * Draw (or redraw) a chart inside `box`.
   * series: [{color, points: [[t, value], ...]}]; values are drawn on 0..max over
   * [t1 - windowS, t1]; `label` is the text shown for the latest value.
   */
  function draw(box, title, series, opts) {
    box.replaceChildren();
    box.className = "chart";
    const head = document.createElement("div");
    head.className = "title";
    const name = document.createElement("span");
    name.textContent = title;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = opts.label || "";
    head.append(name, value);
    box.appendChild(head);
    if (opts.empty) {
      const none = document.createElement("div");
      none.className = "none";
      none.textContent = opts.empty;
      box.appendChild(none);
      return;
    }
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
                               role: "img", "aria-label": title });
    for (const frac of [0.25, 0.5, 0.75]) {
      svg.appendChild(svgEl("line", { x1: 0, x2: W, y1: H * frac, y2: H * frac,
                                      stroke: "#eaeef2", "stroke-width": 1 }));
    }
    const t1 = opts.t1, t0 = t1 - opts.windowS, max = opts.max || 1;
    for (const s of series) {
      const pts = s.points
        .filter(([t]) => t >= t0)
        .map(([t, v]) => {
          const x = ((t - t0) / (t1 - t0)) * W;
          const y = H - Math.max(0, Math.min(1, v / max)) * (H - 2) - 1;
          return `${x.toFixed(1)},${y.toFixed(1)}`;
        });
      if (pts.length === 0) continue;
      if (pts.length === 1) pts.push(pts[0]);
      const first = pts[0].split(",")[0], last = pts[pts.length - 1].split(",")[0];
      svg.appendChild(svgEl("polygon", { points: `${first},${H} ${pts.join(" ")} ${last},${H}`,
        fill: s.color, "fill-opacity": 0.12, stroke: "none" }));
      svg.appendChild(svgEl("polyline", { points: pts.join(" "), fill: "none",
        stroke: s.color, "stroke-width": 1.6, "vector-effect": "non-scaling-stroke" }));
    }
    box.appendChild(svg);
  }

  const GIB = 1024 ** 3;
  const COLORS = ["#0969da", "#bf3989", "#1a7f37", "#9a6700"];
  const byId = (id) => document.getElementById(id);

  /** The resource panel: CPU, RAM, GPU memory and GPU utilisation charts. */
  function drawResources(box, note, samples, resInfo, t1) {
    const names = ["cpu", "ram", "gpu-mem", "gpu-util"];
    if (box.children.length !== names.length) {
      box.replaceChildren(...names.map((n) => { const d = document.createElement("div"); d.id = "chart-" + n; return d; }));
    }
    const last = samples[samples.length - 1];
    const opts = { t1, windowS: resInfo.window_s };
    draw(byId("chart-cpu"), "CPU", [{ color: COLORS[0], points: samples.map((s) => [s.t, s.cpu_percent]) }],
           { ...opts, max: 100, label: last ? last.cpu_percent.toFixed(0) + " %" : "" });
    draw(byId("chart-ram"), "RAM", [{ color: COLORS[1], points: samples.map((s) => [s.t, s.ram_used_bytes]) }],
           { ...opts, max: last ? last.ram_total_bytes : 1,
             label: last ? `${(last.ram_used_bytes / GIB).toFixed(1)} / ${(last.ram_total_bytes / GIB).toFixed(1)} GiB` : "" });
    const gpus = last ? last.gpus : [];
    if (gpus.length === 0) {
      draw(byId("chart-gpu-mem"), "GPU memory", [], { ...opts, empty: "no GPU on this runtime" });
      draw(byId("chart-gpu-util"), "GPU utilisation", [], { ...opts, empty: "no GPU on this runtime" });
    } else {
      const per = (f) => gpus.map((g, i) => ({ color: COLORS[i % COLORS.length],
        points: samples.map((s) => { const x = s.gpus.find((y) => y.index === g.index); return [s.t, x ? f(x) : 0]; }) }));
      draw(byId("chart-gpu-mem"), "GPU memory", per((g) => g.memory_used_mb / Math.max(1, g.memory_total_mb) * 100),
             { ...opts, max: 100, label: gpus.map((g) => `${(g.memory_used_mb / 1024).toFixed(1)}/${(g.memory_total_mb / 1024).toFixed(0)} GiB`).join(", ") });
      draw(byId("chart-gpu-util"), "GPU utilisation", per((g) => g.utilization_pct || 0),
             { ...opts, max: 100, label: gpus.map((g) => (g.utilization_pct ?? 0).toFixed(0) + " %").join(", ") });
    }
    note.textContent = `last ${Math.round(resInfo.window_s / 60)} min, every ${resInfo.interval_s} s` +
      (resInfo.gpu_names.length ? " · " + resInfo.gpu_names.join(", ") : "");
  }

  window.SmartColabCharts = { draw, drawResources };
})();
