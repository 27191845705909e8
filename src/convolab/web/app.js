// convolab serve: the page. Plain JavaScript, no library, nothing loaded from the network.
// Every string that comes from data (run names, class names, specs) is put in the page with textContent, never as HTML.
"use strict";

// --- token, requests -----------------------------------------------------------------------------------------------

const TOKEN = (() => {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given) {   // keep it for this tab, and out of the address bar (and of screenshots and history)
    sessionStorage.setItem("convolab-token", given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return given || sessionStorage.getItem("convolab-token") || "";
})();

async function api(path, options = {}) {
  const headers = Object.assign({"X-Convolab-Token": TOKEN}, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, {headers}));
  const data = await response.json();
  if (!response.ok) {
    throw new Error(data.error + (data.fix ? "\nfix: " + data.fix : ""));
  }
  return data;
}

function say(text, ok = false) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = ok ? "ok" : "";
}

function guard(promise) {
  return promise.catch((error) => say(String(error.message || error)));
}

// --- DOM helpers -----------------------------------------------------------------------------------------------------

function el(tag, properties = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(properties)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const fmt = (value, digits = 4) => (value === null || value === undefined || Number.isNaN(value)) ? "–" : Number(value).toFixed(digits);

// --- pictures ----------------------------------------------------------------------------------------------------------

// viridis, 9 stops: dark blue for low, yellow for high (matplotlib's default, as the lab's pictures)
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                 [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

function colour(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

function drawMap(canvas, values, low, high) {
  const h = values.length, w = values[0].length;
  canvas.width = w; canvas.height = h;
  if (low === undefined) {
    low = Infinity; high = -Infinity;
    for (const row of values) for (const v of row) { if (v < low) low = v; if (v > high) high = v; }
  }
  const span = high > low ? high - low : 1;
  const context = canvas.getContext("2d");
  const image = context.createImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const [r, g, b] = colour((values[y][x] - low) / span);
    const o = 4 * (y * w + x);
    image.data[o] = r; image.data[o + 1] = g; image.data[o + 2] = b; image.data[o + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  canvas.dataset.rows = h; canvas.dataset.columns = w;
}

function drawPixels(canvas, pixels) {   // (H, W) gray or (H, W, 3) RGB, 0..255
  const h = pixels.length, w = pixels[0].length;
  canvas.width = w; canvas.height = h;
  const context = canvas.getContext("2d");
  const image = context.createImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const p = pixels[y][x];
    const [r, g, b] = Array.isArray(p) ? p : [p, p, p];
    const o = 4 * (y * w + x);
    image.data[o] = r; image.data[o + 1] = g; image.data[o + 2] = b; image.data[o + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

// series: [{name, colour, points: [[x, y]], dashed, dots}]
function lineChart(canvas, series, yLabel, xLabel) {
  const context = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, left = 64, right = 12, top = 12, bottom = 34;
  context.clearRect(0, 0, W, H);
  context.fillStyle = "#fff"; context.fillRect(0, 0, W, H);
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
  context.fillStyle = "#333"; context.font = "11px sans-serif";
  if (!all.length) { context.fillText("no data yet", W / 2 - 30, H / 2); return; }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const X = (x) => left + (x - x0) / (x1 - x0) * (W - left - right);
  const Y = (y) => top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom);
  context.strokeStyle = "#999"; context.lineWidth = 1;
  context.beginPath(); context.moveTo(left, top); context.lineTo(left, H - bottom); context.lineTo(W - right, H - bottom); context.stroke();
  context.textAlign = "right";
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    context.fillText(y.toPrecision(3), left - 5, Y(y) + 4);
  }
  context.textAlign = "center";
  const stepX = Math.max(1, Math.ceil((x1 - x0) / 6));   // whole epochs and steps
  for (let x = Math.ceil(x0); x <= x1; x += stepX) context.fillText(String(x), X(x), H - bottom + 14);
  context.fillText(xLabel, (left + W - right) / 2, H - 4);
  context.save(); context.translate(11, (top + H - bottom) / 2); context.rotate(-Math.PI / 2); context.fillText(yLabel, 0, 0); context.restore();
  context.textAlign = "left";
  series.forEach((s, n) => {
    context.strokeStyle = s.colour; context.fillStyle = s.colour; context.lineWidth = s.width || 1.6;
    context.setLineDash(s.dashed ? [6, 4] : []);
    const points = s.points.filter((p) => Number.isFinite(p[1]));
    if (s.dots) {
      for (const [x, y] of points) { context.beginPath(); context.arc(X(x), Y(y), 3.5, 0, 2 * Math.PI); context.fill(); }
    } else {
      context.beginPath();
      points.forEach(([x, y], i) => (i ? context.lineTo(X(x), Y(y)) : context.moveTo(X(x), Y(y))));
      context.stroke();
    }
    context.setLineDash([]);
    if (s.name) {   // the legend on a white patch, readable over the curves
      context.fillStyle = "rgba(255, 255, 255, 0.85)";
      context.fillRect(W - right - 163, top + 2 + 13 * n, 160, 13);
      context.fillStyle = s.colour;
      context.fillText(s.name.length > 26 ? s.name.slice(0, 25) + "…" : s.name, W - right - 160, top + 12 + 13 * n);
    }
  });
}

// --- navigation, the run chooser ----------------------------------------------------------------------------------

const state = {page: "runs", run: "", runs: [], info: null, filter: 1, selected: new Set(), sort: {key: "name", up: true}};
const renderers = {};

function showPage(page) {
  state.page = page;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.page === page);
  for (const section of document.querySelectorAll(".page")) section.classList.toggle("active", section.id === "page-" + page);
  if (location.hash !== "#" + page) history.replaceState(null, "", "#" + page);
  if (renderers[page]) guard(renderers[page]());
}

async function loadRuns() {
  const data = await api("/api/runs");
  state.runs = data.runs;
  $("runs-dir").textContent = data.runs_dir;
  const chooser = $("run");
  const previous = state.run || chooser.value;
  chooser.replaceChildren(...data.runs.filter((r) => !r.error).map((r) => el("option", {value: r.id, textContent: r.id + " · " + r.name})));
  const ids = data.runs.map((r) => r.id);
  state.run = ids.includes(previous) ? previous : (ids.includes("lab/cnn") ? "lab/cnn" : (ids.find((id) => id.endsWith("cnn")) || ids[0] || ""));
  chooser.value = state.run;
  const resumable = data.runs.filter((r) => ["interrupted", "running"].includes(r.status));
  $("resume-run").replaceChildren(...resumable.map((r) => el("option", {value: r.id, textContent: r.id + " (" + r.epochs + " epochs done)"})));
  return data.runs;
}

function requireRun() {
  if (!state.run) throw new Error("no run yet: train one on the Train live page (or run ./dev lab)");
  return encodeURIComponent(state.run);
}

// --- Runs ------------------------------------------------------------------------------------------------------------

const RUN_COLUMNS = [["", null], ["name", "name"], ["spec", "spec"], ["data", "dataset"], ["epochs", "epochs"], ["status", "status"],
  ["test accuracy", "test_accuracy"], ["test loss", "test_loss"], ["s / epoch", "seconds_per_epoch"]];

renderers.runs = async () => {
  await loadRuns();
  if (state.selected.size === 0 && state.runs.length) state.runs.slice(0, 2).forEach((r) => state.selected.add(r.id));
  renderRunsTable();
};

function renderRunsTable() {
  const table = $("runs-table");
  const head = el("tr");
  for (const [title, key] of RUN_COLUMNS) {
    const th = el("th", {textContent: title});
    if (key) {
      if (state.sort.key === key) th.className = "sorted" + (state.sort.up ? " up" : "");
      th.addEventListener("click", () => { state.sort = {key, up: state.sort.key === key ? !state.sort.up : true}; renderRunsTable(); });
    }
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  const {key, up} = state.sort;
  const rows = [...state.runs].sort((a, b) => {
    const [x, y] = [a[key], b[key]];
    const order = (x === null || x === undefined) ? 1 : (y === null || y === undefined) ? -1 : (x < y ? -1 : x > y ? 1 : 0);
    return up ? order : -order;
  });
  table.tBodies[0].replaceChildren(...rows.map((run) => {
    const box = el("input", {type: "checkbox", checked: state.selected.has(run.id)});
    box.addEventListener("change", () => { box.checked ? state.selected.add(run.id) : state.selected.delete(run.id); drawRunCurves(); });
    const name = el("a", {href: "#runs", textContent: run.name});
    name.addEventListener("click", (event) => { event.preventDefault(); showRunDetail(run); });
    return el("tr", {dataset: {run: run.id}}, el("td", {}, box), el("td", {}, name), el("td", {textContent: run.spec || run.error || ""}),
      el("td", {textContent: run.dataset || ""}), el("td", {className: "number", textContent: run.epochs ?? ""}),
      el("td", {textContent: run.status || ""}), el("td", {className: "number", textContent: fmt(run.test_accuracy)}),
      el("td", {className: "number", textContent: fmt(run.test_loss)}), el("td", {className: "number", textContent: fmt(run.seconds_per_epoch, 1)}));
  }));
  drawRunCurves();
}

function drawRunCurves() {
  const chosen = state.runs.filter((r) => state.selected.has(r.id) && r.history);
  const series = (key, dashed) => chosen.map((run, i) => ({name: dashed ? null : run.name, colour: PALETTE[i % PALETTE.length], dashed,
    points: run.history.filter((row) => row[key] !== undefined).map((row) => [row.epoch, row[key]])}));
  lineChart($("runs-accuracy"), [...series("accuracy", false), ...series("val_accuracy", true)], "accuracy", "epoch");
  lineChart($("runs-loss"), [...series("loss", false), ...series("val_loss", true)], "loss", "epoch");
}

async function showRunDetail(run) {
  const detail = await api("/api/run?run=" + encodeURIComponent(run.id));
  const train = detail.train || {};
  const rows = [["run", detail.id], ["name", detail.name], ["spec", detail.spec], ["data", detail.dataset], ["status", detail.status],
    ["epochs", `${detail.epochs} of ${detail.planned_epochs ?? "?"}`], ["batch size", train.batch_size], ["learning rate", train.learning_rate],
    ["optimizer", train.optimizer], ["test accuracy", fmt(detail.test_accuracy)], ["test loss", fmt(detail.test_loss)], ["created", detail.created]];
  const perClass = detail.per_class_accuracy ? Object.entries(detail.per_class_accuracy) : [];
  const use = el("button", {textContent: "explore this run"});
  use.addEventListener("click", () => { state.run = detail.id; $("run").value = detail.id; showPage("explorer"); });
  $("run-detail").replaceChildren(el("h3", {textContent: detail.name}), use,
    el("table", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", {textContent: k}), el("td", {textContent: v ?? ""})))),
    perClass.length ? el("table", {}, el("tr", {}, el("th", {textContent: "class"}), el("th", {textContent: "test accuracy"})),
      ...perClass.map(([name, value]) => el("tr", {}, el("td", {textContent: name}), el("td", {className: "number", textContent: fmt(value)})))) : null);
}

// --- the maps grid (Explorer, Evaluation's pairs, Train live) ------------------------------------------------------

function mapsGrid(data, onClick) {
  const head = el("tr", {}, el("th", {textContent: "image"}), ...data.layers.map((layer) =>
    el("th", {textContent: `${layer.name} · filter ${layer.filter}`})));
  const rows = data.images.map((image, position) => {
    const picture = el("canvas", {className: "image"});
    drawPixels(picture, image.pixels);
    const wrong = image.label !== image.predicted;
    const caption = el("div", {className: "caption" + (wrong ? " wrong" : "")},
      `#${image.index} ${image.label_name}`, el("br"), `predicted ${image.predicted_name}`);
    const cells = data.layers.map((layer) => {
      const canvas = el("canvas", {title: "click a value to see where it came from"});
      drawMap(canvas, layer.maps[position]);
      canvas.dataset.layer = layer.index; canvas.dataset.image = image.index; canvas.dataset.filter = layer.filter;
      if (onClick) canvas.addEventListener("click", (event) => onClick(event, canvas));
      return el("td", {}, canvas);
    });
    return el("tr", {}, el("td", {}, picture, caption), ...cells);
  });
  return el("table", {className: "grid"}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function clickedCell(event, canvas) {
  const rect = canvas.getBoundingClientRect();
  const rows = Number(canvas.dataset.rows), columns = Number(canvas.dataset.columns);
  return [Math.min(rows - 1, Math.floor((event.clientY - rect.top) / rect.height * rows)),
          Math.min(columns - 1, Math.floor((event.clientX - rect.left) / rect.width * columns))];
}

// --- Explorer ------------------------------------------------------------------------------------------------------

let mapsInFlight = false, mapsAgain = false;

renderers.explorer = async () => {
  const model = await api(`/api/model?run=${requireRun()}`);
  const choice = $("explorer-class");
  if (choice.dataset.run !== state.run) {
    choice.replaceChildren(el("option", {value: "", textContent: "any"}), ...model.class_names.map((name, i) => el("option", {value: i, textContent: `${i} ${name}`})));
    choice.dataset.run = state.run;
  }
  const layers = $("filters-layer");
  layers.replaceChildren(...model.summary.layers.map((l, position) => ({...l, position}))
    .filter((l) => ["Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D"].includes(l.type))
    .map((l) => el("option", {value: l.position, textContent: `layer ${l.position}: ${l.name} (${l.type})`})));
  await refreshMaps();
};

async function refreshMaps() {
  if (mapsInFlight) { mapsAgain = true; return; }
  mapsInFlight = true;
  try {
    const started = performance.now();
    const images = encodeURIComponent($("explorer-images").value);
    const data = await api(`/api/maps?run=${requireRun()}&images=${images}&filter=${state.filter}`);
    const slider = $("explorer-filter");
    slider.max = data.max_filter;
    $("explorer-grid").replaceChildren(mapsGrid(data, showOrigin));
    $("explorer-grid").dataset.filter = state.filter;
    $("explorer-grid").dataset.milliseconds = (performance.now() - started).toFixed(1);
    if (!data.layers.length) say("this model has no conv or pool layer: nothing to draw (try a CNN run)");
  } finally {
    mapsInFlight = false;
    if (mapsAgain) { mapsAgain = false; await refreshMaps(); }
  }
}

function numberTable(values, caption, highlight) {   // values: (rows, columns)
  return el("table", {}, el("caption", {textContent: caption}), ...values.map((row, y) => el("tr", {}, ...row.map((v, x) =>
    el("td", {className: highlight && highlight[0] === y && highlight[1] === x ? "max" : "", textContent: v === null ? "pad" : fmt(v, 3)})))));
}

const channel = (grid, c) => grid.map((row) => row.map((cell) => cell[c]));

async function showOrigin(event, canvas) {
  const [row, column] = clickedCell(event, canvas);
  const o = await api(`/api/origin?run=${requireRun()}&image=${canvas.dataset.image}&layer=${canvas.dataset.layer}` +
    `&filter=${canvas.dataset.filter}&row=${row}&column=${column}`);
  const box = $("origin");
  const below = o.layer === 0 ? "the input image" : `layer ${o.layer - 1}'s output`;
  const where = `rows ${o.top}…${o.top + o.size[0] - 1}, columns ${o.left}…${o.left + o.size[1] - 1} of ${below}`;
  const title = el("h3", {textContent: `layer ${o.layer} (${o.kind}), filter ${o.filter}, row ${o.row}, column ${o.column} of image #${canvas.dataset.image}: ${fmt(o.value)}`});
  if (["Conv2D", "DepthwiseConv2D", "SeparableConv2D"].includes(o.kind)) {
    // One entry per window read: input channels (Conv2D), the one channel (DepthwiseConv2D), depthwise channels
    // (SeparableConv2D, whose entry is that channel's value times the filter's 1×1 weight).
    const separable = o.kind === "SeparableConv2D";
    const channels = o.channel_sums.length;
    const order = o.channel_sums.map((v, c) => c).sort((a, b) => Math.abs(o.channel_sums[b]) - Math.abs(o.channel_sums[a]));
    const top = order[0];
    const name = (c) => separable ? `depthwise channel ${c} (input ${o.input_channels[c]})` : `channel ${o.input_channels[c]}`;
    const how = {
      Conv2D: `the ${o.size[0]}×${o.size[1]} window at ${where}, times the filter's weights, summed` +
        (channels > 1 ? ` over ${channels} input channels (shown: channel ${top}, the largest contribution)` : ""),
      DepthwiseConv2D: `the ${o.size[0]}×${o.size[1]} window at ${where}, input channel ${o.input_channels[0]} only ` +
        `(a depthwise filter reads one channel), times the filter's weights, summed`,
      SeparableConv2D: `each input channel's ${o.size[0]}×${o.size[1]} window at ${where}, times its depthwise weights, ` +
        `summed into ${channels} depthwise values; then each value times the filter's 1×1 weight, summed ` +
        `(shown: ${name(top)}, the largest contribution)`,
    }[o.kind];
    const parts = [title, el("p", {textContent: how}),
      numberTable(channel(o.window, top), "window (input)"), numberTable(channel(o.weights, top), separable ? "depthwise weights" : "weights"),
      numberTable(channel(o.products, top), "products")];
    if (separable) {
      parts.push(el("p", {className: "formula", textContent: `${name(top)}: sum of the products = ${fmt(o.depthwise_values[top])}; ` +
        `× 1×1 weight ${fmt(o.pointwise_weights[top])} = ${fmt(o.channel_sums[top])}`}));
    }
    if (channels > 1) {
      parts.push(el("table", {}, el("caption", {textContent: separable ? "depthwise value × 1×1 weight, per depthwise channel" : "sum of the products, per input channel"}),
        ...order.slice(0, 8).map((c) => el("tr", {}, el("td", {textContent: name(c)}), el("td", {textContent: fmt(o.channel_sums[c])}))),
        channels > 8 ? el("tr", {}, el("td", {textContent: `${channels - 8} more`}), el("td", {textContent: fmt(order.slice(8).reduce((s, c) => s + o.channel_sums[c], 0))})) : null));
    }
    const activation = o.activation && o.activation !== "linear" ? `${o.activation}(${fmt(o.pre_activation)}) = ${fmt(o.value)}` : `no activation: ${fmt(o.value)}`;
    parts.push(el("p", {className: "formula"}, separable ? "sum of the contributions = " : "sum of products = ", el("span", {id: "origin-sum", textContent: fmt(o.sum)}),
      `;  + bias ${fmt(o.bias)} = ${fmt(o.pre_activation)};  ${activation}`));
    box.replaceChildren(...parts);
  } else if (o.kind === "MaxPooling2D") {
    box.replaceChildren(title, el("p", {textContent: `the ${o.size[0]}×${o.size[1]} window at ${where} (filter ${o.filter}); the largest value wins`}),
      numberTable(o.window, "window", o.argmax),
      el("p", {className: "formula"}, "max of the window = ", el("span", {id: "origin-sum", textContent: fmt(o.max)})));
  } else {
    box.replaceChildren(title, el("p", {textContent: `the ${o.size[0]}×${o.size[1]} window at ${where}`}), numberTable(o.window, "window"),
      el("p", {className: "formula"}, "mean of the window = ", el("span", {id: "origin-sum", textContent: fmt(o.mean)})));
  }
}

async function showAllFilters() {
  const layer = $("filters-layer").value;
  const image = encodeURIComponent($("filters-image").value);
  const data = await api(`/api/filters?run=${requireRun()}&image=${image}&layer=${layer}`);
  let order = data.maps.map((m, i) => i);
  if ($("filters-order").value === "activity") order.sort((a, b) => data.activity[b] - data.activity[a]);
  $("filters-grid").replaceChildren(...order.map((k) => {
    const canvas = el("canvas", {title: `filter ${k}: show it in the grid above`});
    drawMap(canvas, data.maps[k]);
    canvas.addEventListener("click", () => { setFilter(k); });
    return el("figure", {}, canvas, el("figcaption", {textContent: `filter ${k} · activity ${data.activity[k].toPrecision(3)}`}));
  }));
}

function setFilter(k) {
  state.filter = Number(k);
  $("explorer-filter").value = k;
  $("explorer-filter-value").textContent = k;
  guard(refreshMaps());
}

async function chooseImages(by) {
  const cls = $("explorer-class").value;
  say("finding the images (the first time, the model predicts the whole test set)…", true);
  const data = await api(`/api/images?run=${requireRun()}&by=${by}&limit=6` + (cls !== "" ? `&class=${cls}` : ""));
  if (!data.images.length) { say("no such images in this run's test set"); return; }
  say("");
  $("explorer-images").value = data.images.map((i) => i.index).join(",");
  await refreshMaps();
}

// --- Draw or upload ----------------------------------------------------------------------------------------------------

let drawing = false, lastSent = 0, sendTimer = null, predictInFlight = false;

function setupDrawing() {
  const canvas = $("draw-canvas");
  const context = canvas.getContext("2d");
  const clear = () => { context.fillStyle = "#000"; context.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  const point = (event) => { const r = canvas.getBoundingClientRect(); return [(event.clientX - r.left) * canvas.width / r.width, (event.clientY - r.top) * canvas.height / r.height]; };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true; canvas.setPointerCapture(event.pointerId);
    const [x, y] = point(event); context.beginPath(); context.moveTo(x, y);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    context.strokeStyle = "#fff"; context.lineWidth = 22; context.lineCap = "round"; context.lineJoin = "round";
    context.lineTo(x, y); context.stroke();
    schedulePrediction(250);
  });
  const end = () => { if (drawing) { drawing = false; schedulePrediction(0); } };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointerleave", end);
  $("draw-clear").addEventListener("click", () => { clear(); $("draw-top").replaceChildren(); $("draw-maps").replaceChildren(); });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => { event.preventDefault(); zone.classList.remove("over"); if (event.dataTransfer.files[0]) guard(predict(event.dataTransfer.files[0])); });
  $("draw-file").addEventListener("change", (event) => { if (event.target.files[0]) guard(predict(event.target.files[0])); });
}

function schedulePrediction(delay) {   // while drawing: at most one request every 250 ms, and one at the end
  clearTimeout(sendTimer);
  const wait = Math.max(delay, 250 - (performance.now() - lastSent));
  sendTimer = setTimeout(() => $("draw-canvas").toBlob((blob) => guard(predict(blob)), "image/png"), delay === 0 ? 0 : wait);
}

async function predict(blob) {
  if (predictInFlight) { schedulePrediction(250); return; }
  predictInFlight = true; lastSent = performance.now();
  try {
    const filter = Number($("draw-filter").value) || 0;
    const data = await api(`/api/predict?run=${requireRun()}&invert=${$("draw-invert").value}&filter=${filter}`,
      {method: "POST", body: blob, headers: {"Content-Type": blob.type || "application/octet-stream"}});
    drawPixels($("draw-input"), data.input);
    $("draw-top").replaceChildren(...data.top.map((t) => el("li", {textContent: `${t.class}: ${(100 * t.probability).toFixed(1)}%`})));
    const grid = el("div", {className: "controls"}, ...data.layers.map((layer) => {
      const canvas = el("canvas", {className: "pixelated", style: "width:112px;height:112px"});
      drawMap(canvas, layer.maps[0]);
      return el("figure", {}, canvas, el("figcaption", {textContent: `${layer.name} · filter ${layer.filter}`}));
    }));
    $("draw-maps").replaceChildren(grid);
    say("");
  } finally { predictInFlight = false; }
}

// --- Evaluation ----------------------------------------------------------------------------------------------------

renderers.evaluation = async () => {
  say("evaluating (the first time, the model predicts the whole test set)…", true);
  const data = await api(`/api/evaluation?run=${requireRun()}`);
  say("");
  $("evaluation-summary").textContent = `· ${data.run}: ${data.test_count} test images, accuracy ${fmt(data.test_accuracy)}, loss ${fmt(data.test_loss)}`;
  const names = data.class_names, matrix = data.confusion_matrix;
  const largest = Math.max(1, ...matrix.flatMap((row, t) => row.filter((v, p) => p !== t)));
  const head = el("tr", {}, el("th", {textContent: "true \\ predicted"}), ...names.map((n, i) => el("th", {title: n, textContent: String(i)})));
  const rows = matrix.map((row, t) => el("tr", {}, el("th", {textContent: `${t} ${names[t]}`}), ...row.map((count, p) => {
    const button = el("button", {textContent: String(count), title: `true ${names[t]}, predicted ${names[p]}`});
    const strength = t === p ? 0.35 : Math.min(1, count / largest);
    button.style.background = t === p ? "#d5ead5" : `rgba(214, 39, 40, ${strength * 0.8})`;
    button.dataset.true = t; button.dataset.predicted = p;
    button.addEventListener("click", () => guard(showPair(t, p, names)));
    return el("td", {}, button);
  })));
  $("confusion").replaceChildren(head, ...rows);
  $("per-class").replaceChildren(el("tr", {}, el("th", {textContent: "class"}), el("th", {textContent: "accuracy"}), el("th", {textContent: ""})),
    ...Object.entries(data.per_class_accuracy).map(([name, value]) => el("tr", {}, el("td", {textContent: name}),
      el("td", {className: "number", textContent: fmt(value)}), el("td", {}, el("span", {className: "bar", style: `width:${Math.round(200 * (value || 0))}px`})))));
  $("top-losses").replaceChildren(...data.top_losses.map((item) => {
    const canvas = el("canvas"); drawPixels(canvas, item.pixels);
    return el("figure", {}, canvas, el("figcaption", {textContent: `#${item.index} loss ${fmt(item.loss, 2)}: true ${item.true} (${fmt(item.true_probability, 2)}), predicted ${item.predicted} (${fmt(item.predicted_probability, 2)})`}));
  }));
};

async function showPair(t, p, names) {
  const pair = await api(`/api/pair?run=${requireRun()}&true=${t}&predicted=${p}&limit=6`);
  if (!pair.images.length) { $("pair-grid").replaceChildren(el("p", {textContent: `no test image of ${names[t]} was predicted ${names[p]}`})); return; }
  const indices = pair.images.map((i) => i.index).join(",");
  const data = await api(`/api/maps?run=${requireRun()}&images=${indices}&filter=${state.filter}`);
  $("pair-grid").replaceChildren(el("h3", {textContent: `${pair.count} ${pair.count === 1 ? "image" : "images"} of ${names[t]} predicted ${names[p]}` +
    (pair.count > pair.images.length ? ` (the first ${pair.images.length})` : "") + `, filter ${state.filter}`}),
    mapsGrid(data, null));
}

// --- Model ---------------------------------------------------------------------------------------------------------

renderers.model = async () => {
  const data = await api(`/api/model?run=${requireRun()}`);
  $("model-spec").textContent = `· ${data.run}: ${data.spec}`;
  const svg = new DOMParser().parseFromString(data.svg, "image/svg+xml").documentElement;   // parsed as XML: no script runs
  $("diagram").replaceChildren(document.importNode(svg, true));
  const canvas = $("receptive");
  drawPixels(canvas, data.image);
  const layers = data.summary.layers.map((layer, position) => ({...layer, position}));   // position: as model.layers[i]
  const head = el("tr", {}, ...["Layer (type)", "Output shape", "Param #", "Mult-adds", "Receptive field"].map((t) => el("th", {textContent: t})));
  const rows = layers.flatMap((layer) => {
    const rf = layer.receptive_field;
    const row = el("tr", {className: "layer-row", dataset: {index: layer.position}},
      el("td", {textContent: `${layer.name} (${layer.type})`}), el("td", {textContent: `(${layer.output_shape.join(", ")})`}),
      el("td", {className: "number", textContent: layer.params.toLocaleString("en")}), el("td", {className: "number", textContent: layer.macs.toLocaleString("en")}),
      el("td", {textContent: rf.whole_input ? "whole input" : `${rf.size[0]}×${rf.size[1]}, jump ${rf.jump[0]}`}));
    const explained = el("tr", {className: "layer-row", dataset: {index: layer.position}}, el("td", {colSpan: 5, className: "explained", textContent: layer.explained.join("\n")}));
    for (const r of [row, explained]) {
      r.addEventListener("mouseenter", () => highlightLayer(layer, data));
    }
    return [row, explained];
  });
  $("summary").replaceChildren(head, ...rows);
  $("summary-totals").textContent = data.totals_text.join("\n");
};

function highlightLayer(layer, data) {
  for (const g of document.querySelectorAll("#diagram g.layer")) g.classList.remove("hl");
  const groups = document.querySelectorAll("#diagram g.layer");
  if (groups[layer.position + 1]) groups[layer.position + 1].classList.add("hl");   // group 0 is the input
  for (const r of document.querySelectorAll("#summary tr.layer-row")) r.classList.toggle("hl", Number(r.dataset.index) === layer.position);
  const canvas = $("receptive");
  drawPixels(canvas, data.image);
  const context = canvas.getContext("2d");
  const [H, W] = [data.image.length, data.image[0].length];
  const rf = layer.receptive_field;
  context.strokeStyle = "#ff3b30"; context.lineWidth = 1;
  if (rf.whole_input) {
    context.strokeRect(0.5, 0.5, W - 1, H - 1);
    $("receptive-text").textContent = `${layer.name}: every value may see the whole input`;
    return;
  }
  const [outH, outW] = layer.output_shape;
  const [cy, cx] = [Math.floor((outH - 1) / 2), Math.floor((outW - 1) / 2)];
  // The field of output (cy, cx) starts at start + (cy, cx) × jump; 'same' padding can put part of it off the image
  // (start < 0, or past the last row), where the layer saw padding zeros: the box shows the part on the image.
  const top = rf.start[0] + cy * rf.jump[0], left = rf.start[1] + cx * rf.jump[1];
  const [y0, x0] = [Math.max(0, top), Math.max(0, left)];
  const [y1, x1] = [Math.min(H, top + rf.size[0]), Math.min(W, left + rf.size[1])];
  context.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);
  const onImage = (y1 - y0) * (x1 - x0), all = rf.size[0] * rf.size[1];
  $("receptive-text").textContent = `${layer.name}: the value at row ${cy}, column ${cx} sees ${rf.size[0]}×${rf.size[1]} input pixels (red): ` +
    `rows ${top}…${top + rf.size[0] - 1}, columns ${left}…${left + rf.size[1] - 1}` +
    (onImage < all ? `; ${all - onImage} of them lie in the padding around the image (zeros)` : "");
}

// --- Train live ------------------------------------------------------------------------------------------------------

const live = {points: [], epochs: [], timer: null, mapsStep: null, stepsPerEpoch: 0};

renderers.train = async () => {
  if (!state.info) state.info = await api("/api/info");
  const select = $("train-model");
  if (!select.options.length) {
    const presets = el("optgroup", {label: "presets"}, ...Object.entries(state.info.presets).map(([name, line]) => el("option", {value: name, textContent: `${name}: ${line}`})));
    const exercises = el("optgroup", {label: "the lab's exercises"}, ...Object.entries(state.info.exercises).map(([name, e]) => el("option", {value: name, textContent: `${name}: ${e.what}`})));
    select.replaceChildren(presets, exercises);
    select.value = "cnn";
  }
  await loadRuns();
  await pollTraining();
};

function trainForm() {
  const spec = $("train-spec").value.trim();
  return {model: spec || $("train-model").value, name: $("train-name").value, epochs: $("train-epochs").value,
    batch_size: $("train-batch").value, learning_rate: $("train-lr").value,
    validation_split: $("train-validation").value, stop_at: $("train-stop-at").value, train_limit: $("train-limit").value, images: $("train-images").value, filter: $("train-filter").value};
}

async function startTraining(path, body) {
  live.points = []; live.epochs = []; live.mapsStep = null;
  await api(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  say("training started", true);
  await pollTraining();
}

async function pollTraining() {
  clearTimeout(live.timer);
  const status = await api(`/api/train?since=${live.points.length}`);
  live.points.push(...status.points);
  live.epochs = status.epochs || [];
  live.stepsPerEpoch = (status.plan && status.plan.steps) || 0;
  const plan = status.plan && status.plan.epoch ? ` · epoch ${status.plan.epoch} of ${status.plan.epochs}, ${status.plan.steps} steps each` : "";
  $("train-status").textContent = `${status.state}${status.run_name ? " · " + status.run_name : ""}${plan} · ${live.points.length} batches · ${status.message}`;
  $("train-status").dataset.state = status.state;
  drawTrainingCharts();
  if (status.maps_step !== null && status.maps_step !== undefined && status.maps_step !== live.mapsStep) {
    live.mapsStep = status.maps_step;
    const maps = (await api("/api/train/maps")).maps;
    if (maps) renderLiveMaps(maps);
  }
  if (status.running || status.state === "starting") {
    live.wasRunning = true;
    live.timer = setTimeout(() => guard(pollTraining()), 700);
  } else if (live.wasRunning) {   // it just ended: its run is now listed (and resumable when it was stopped)
    live.wasRunning = false;
    say("");
    await loadRuns();
  }
}

function drawTrainingCharts() {
  const per = (k) => live.points.map((p) => [p[0], p[k]]);
  const dots = (key) => live.epochs.map((row) => [row.epoch * live.stepsPerEpoch, row[key]]);
  lineChart($("train-loss"), [{name: "batch loss", colour: "#1f77b4", width: 1, points: per(1)},
    {name: "epoch loss", colour: "#d62728", dots: true, points: dots("loss")}], "loss", "step");
  lineChart($("train-accuracy"), [{name: "batch accuracy", colour: "#2ca02c", width: 1, points: per(2)},
    {name: "epoch accuracy", colour: "#d62728", dots: true, points: dots("accuracy")}], "accuracy", "step");
  $("train-loss").dataset.points = live.points.length;
  $("train-epochs-table").tBodies[0].replaceChildren(...live.epochs.map((row) => el("tr", {},
    ...["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"].map((k) => el("td", {className: "number", textContent: k === "epoch" ? row[k] : fmt(row[k], k === "seconds" ? 1 : 4)})))));
}

function renderLiveMaps(maps) {
  $("train-maps-step").textContent = `(step ${maps.step})`;
  const data = {layers: maps.layers.map((l) => ({...l, name: `${l.index} ${l.kind}`})),
    images: maps.images.map((index, i) => ({index, label: maps.labels[i], predicted: maps.predictions[i], pixels: maps.pixels[i],
      label_name: maps.class_names[maps.labels[i]], predicted_name: maps.class_names[maps.predictions[i]]}))};
  $("train-maps").replaceChildren(mapsGrid(data, null));
}

// --- start ---------------------------------------------------------------------------------------------------------

function start() {
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showPage(button.dataset.page));
  $("run").addEventListener("change", () => { state.run = $("run").value; showPage(state.page); });
  $("explorer-filter").addEventListener("input", () => setFilter($("explorer-filter").value));
  $("explorer-show").addEventListener("click", () => guard(refreshMaps()));
  $("explorer-by-class").addEventListener("click", () => guard(chooseImages("class")));
  $("explorer-misclassified").addEventListener("click", () => guard(chooseImages("misclassified")));
  $("filters-show").addEventListener("click", () => guard(showAllFilters()));
  $("train-form").addEventListener("submit", (event) => { event.preventDefault(); guard(startTraining("/api/train/start", trainForm())); });
  $("train-stop").addEventListener("click", () => guard(api("/api/train/stop", {method: "POST"}).then(() => say("stopping after this step; a resumable checkpoint is being saved", true))));
  $("resume-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guard(startTraining("/api/train/resume", {run: $("resume-run").value, epochs: $("resume-epochs").value, images: $("train-images").value, filter: $("train-filter").value}));
  });
  setupDrawing();
  const page = location.hash.slice(1);
  guard(loadRuns().then(() => showPage(renderers[page] || page === "draw" ? page : "runs")));
}

document.addEventListener("DOMContentLoaded", start);
