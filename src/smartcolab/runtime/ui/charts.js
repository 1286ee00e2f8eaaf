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

  window.SmartColabCharts = { draw };
})();
