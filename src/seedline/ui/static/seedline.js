// seedline ui: draws the stored plot data with the bundled plotly.js; no other dependency.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("sl-data").textContent || "null") || {};
  const page = document.body.dataset.page;
  const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };
  const base = { margin: { l: 56, r: 16, t: 36, b: 90 }, font: { size: 12 }, legend: { orientation: "h", y: -0.32 } };
  const letters = "ABCDEFGH";

  function box(area, id, title) {
    const div = document.createElement("div");
    div.className = "plot";
    div.id = id;
    div.dataset.title = title;
    area.appendChild(div);
    return div;
  }
  function draw(div, traces, layout) {
    if (!div || typeof Plotly === "undefined") return;
    Plotly.newPlot(div, traces, Object.assign({}, base, layout), config);
  }

  // one or several runs' plots: several are overlaid, one trace per run
  function drawPlots(area, runs, names) {
    const docs = runs.map((p) => (p && !p.error ? p : null));
    const first = docs.find((d) => d);
    if (!first) return;
    const many = runs.length > 1;
    const label = (i, s) => (many ? names[i] + (s ? " · " + s : "") : s);
    if (first.kind === "classifier") {
      docs.forEach((d, i) => {
        if (!d || !d.confusion_matrix) return;
        const cm = d.confusion_matrix;
        draw(box(area, "confusion-" + i, "confusion matrix"), [{
          type: "heatmap", z: cm.counts, x: cm.labels, y: cm.labels, colorscale: "Blues", reversescale: true, showscale: false,
          text: cm.counts.map((r) => r.map(String)), texttemplate: "%{text}", hovertemplate: "true %{y}<br>predicted %{x}<br>%{z}<extra></extra>",
        }], { title: { text: "Confusion matrix" + (many ? " · " + names[i] : "") }, xaxis: { title: { text: "predicted" }, type: "category" }, yaxis: { title: { text: "true" }, autorange: "reversed", type: "category" } });
      });
      const roc = [], pr = [], cal = [];
      docs.forEach((d, i) => {
        if (!d) return;
        (d.roc || []).forEach((c) => roc.push({ x: c.fpr, y: c.tpr, mode: "lines", name: label(i, c.label + " (AUC " + c.auc.toFixed(3) + ")") }));
        (d.pr || []).forEach((c) => pr.push({ x: c.recall, y: c.precision, mode: "lines", name: label(i, c.label) }));
        if (d.calibration) cal.push({ x: d.calibration.mean_predicted, y: d.calibration.fraction_positive, mode: "lines+markers", name: label(i, d.calibration.of) });
      });
      if (roc.length) draw(box(area, "roc", "ROC"), roc.concat([{ x: [0, 1], y: [0, 1], mode: "lines", line: { dash: "dot", color: "#aaa" }, showlegend: false }]), { title: { text: "ROC (one vs rest)" }, xaxis: { title: { text: "false positive rate" } }, yaxis: { title: { text: "true positive rate" } } });
      if (pr.length) draw(box(area, "pr", "precision-recall"), pr, { title: { text: "Precision-recall" }, xaxis: { title: { text: "recall" } }, yaxis: { title: { text: "precision" } } });
      if (cal.length) draw(box(area, "calibration", "calibration"), cal.concat([{ x: [0, 1], y: [0, 1], mode: "lines", line: { dash: "dot", color: "#aaa" }, showlegend: false }]), { title: { text: "Calibration" }, xaxis: { title: { text: "mean predicted probability" } }, yaxis: { title: { text: "fraction correct" } } });
    } else {
      const pa = [], res = [];
      docs.forEach((d, i) => {
        if (!d || !d.predicted_vs_actual) return;
        pa.push({ x: d.predicted_vs_actual.actual, y: d.predicted_vs_actual.predicted, mode: "markers", marker: { size: 5, opacity: 0.6 }, name: label(i, "predictions") });
        res.push({ x: d.residuals.predicted, y: d.residuals.residual, mode: "markers", marker: { size: 5, opacity: 0.6 }, name: label(i, "residuals") });
      });
      if (pa.length) {
        const all = pa.flatMap((t) => t.x.concat(t.y));
        const lo = Math.min(...all), hi = Math.max(...all);
        draw(box(area, "predicted-vs-actual", "predicted vs actual"), pa.concat([{ x: [lo, hi], y: [lo, hi], mode: "lines", line: { dash: "dot", color: "#aaa" }, showlegend: false }]), { title: { text: "Predicted vs actual" }, xaxis: { title: { text: "actual" } }, yaxis: { title: { text: "predicted" } } });
        draw(box(area, "residuals", "residuals"), res, { title: { text: "Residuals" }, xaxis: { title: { text: "predicted" } }, yaxis: { title: { text: "actual − predicted" } } });
      }
    }
    const imp = [];
    docs.forEach((d, i) => {
      const p = d && d.permutation_importance;
      if (!p || !p.features) return;
      const n = Math.min(15, p.features.length);
      imp.push({ type: "bar", orientation: "h", y: p.features.slice(0, n).reverse(), x: p.mean.slice(0, n).reverse(), error_x: { type: "data", array: p.std.slice(0, n).reverse(), visible: true }, name: label(i, "") || "importance" });
    });
    if (imp.length) {
      const p = docs.find((d) => d && d.permutation_importance).permutation_importance;
      draw(box(area, "importance", "permutation importance"), imp, { title: { text: "Permutation importance" }, barmode: "group", margin: { l: 150, r: 16, t: 36, b: 90 }, xaxis: { title: { text: "drop in " + p.metric + " when shuffled (seed " + p.seed + ")" } } });
    }
  }

  // sklearn's diagram: outline the first divergent step's box
  function markDivergent() {
    document.querySelectorAll(".diagram[data-divergent]").forEach((diagram) => {
      const name = diagram.dataset.divergent;
      if (!name) return;
      // sklearn marks each step's box with its parameter prefix ("clf__"); its label sits just before
      diagram.querySelectorAll(".sk-toggleable__content").forEach((content) => {
        if (content.dataset.paramPrefix !== name + "__") return;
        const label = content.previousElementSibling;
        if (label && label.tagName === "LABEL") {
          label.classList.add("sl-divergent");
          label.setAttribute("data-divergent-step", name);
          label.title = "first divergent step: " + name;
        }
      });
    });
  }

  function runsPage() {
    const boxes = Array.from(document.querySelectorAll("#runs-table input[type=checkbox]"));
    const button = document.getElementById("compare-button");
    const hint = document.getElementById("compare-hint");
    const update = () => {
      const n = boxes.filter((b) => b.checked).length;
      button.disabled = n < 2;
      hint.textContent = n < 2 ? "select two or more runs" : n + " runs selected";
    };
    boxes.forEach((b) => b.addEventListener("change", update));
    update();
  }

  function packageSearch() {
    const input = document.getElementById("package-search");
    if (!input) return;
    input.addEventListener("input", () => {
      const q = input.value.trim().toLowerCase();
      document.querySelectorAll("#packages tr").forEach((tr) => {
        tr.style.display = !q || tr.textContent.toLowerCase().includes(q) ? "" : "none";
      });
    });
  }

  function sweepPage() {
    const trials = data.trials || [];
    const metric = data.metric;
    const ok = trials.filter((t) => t.value !== null && t.value !== undefined);
    const dims = (data.params || []).map((p) => {
      const vals = ok.map((t) => t.values[p]);
      if (vals.every((v) => typeof v === "number")) return { label: p.split(".").pop(), values: vals };
      const cats = Array.from(new Set(vals.map((v) => JSON.stringify(v))));
      return { label: p.split(".").pop(), values: vals.map((v) => cats.indexOf(JSON.stringify(v))), tickvals: cats.map((_, i) => i), ticktext: cats };
    });
    dims.push({ label: metric, values: ok.map((t) => t.value) });
    draw(document.getElementById("parcoords"), [{ type: "parcoords", dimensions: dims, line: { color: ok.map((t) => t.value), colorscale: "Viridis", showscale: false } }], { margin: { l: 60, r: 60, t: 48, b: 24 } });
    const select = document.getElementById("scatter-param");
    const scatter = () => {
      const p = select.value;
      draw(document.getElementById("scatter"), [{ x: ok.map((t) => t.values[p]), y: ok.map((t) => t.value), text: ok.map((t) => t.run_id), mode: "markers", marker: { size: 9, color: ok.map((t) => t.value), colorscale: "Viridis" }, hovertemplate: "%{text}<br>" + p + " %{x}<br>" + metric + " %{y}<extra></extra>" }], { xaxis: { title: { text: p } }, yaxis: { title: { text: metric } } });
    };
    if (select && select.value) { select.addEventListener("change", scatter); scatter(); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    markDivergent();
    const area = document.getElementById("plot-area");
    if (page === "runs") runsPage();
    if (page === "run") { packageSearch(); if (area && data.plots) drawPlots(area, [data.plots], ["run"]); }
    if (page === "compare" && area) drawPlots(area, data.plots || [], (data.plots || []).map((_, i) => letters[i]));
    if (page === "sweep") sweepPage();
    document.body.dataset.ready = "1";
  });
})();
