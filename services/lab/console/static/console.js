/* The live console: one page per design, talking to the console's API on the same origin.
   No library and no network beyond that origin, so the page works offline in front of a class.
   Charts are plain SVG drawn here; every chart shares one time axis: seconds of the run. */
"use strict";

(() => {
  // The report's colours (loadtests/engine/charts.py), so a target looks the same on the page and in the report.
  const TARGET_COLORS = { naive: "#d62728", hardened: "#2ca02c", mine: "#1f77b4" };
  const OTHER_COLORS = ["#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"];
  const ACTIVE_STATES = new Set(["starting", "running", "auditing"]);
  const TOKEN_KEY = "lab-console-token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const DASHED = "10 7";
  const MIN_SECONDS_SHOWN = 10;
  // Per chart, each target draws two lines: a solid and a dashed one (the figure's caption says which).
  const CHARTS = [
    { id: "chart-throughput", unit: "requests/s", floor: 10, solid: "ok", dashed: "offered" },
    { id: "chart-errors", unit: "per second", floor: 5, solid: "failed", dashed: "timeouts" },
    { id: "chart-latency", unit: "ms", floor: 10, solid: "p99_ms", dashed: "p50_ms" },
  ];

  const page = {
    design: null, // this page's design, from /api/designs
    preset: null, // the preset selected for the next start
    run: null, // the run on screen (run JSON, kept current from its events)
    source: null, // the EventSource of that run
    lastSeq: -1, // the last event's sequence number: a reconnect replays from the start
    samples: [],
    faults: [],
    invariants: {}, // target -> invariant name -> latest value
    drawPending: false,
  };
  const otherColors = new Map();

  class ApiError extends Error {}

  /* ---------- small DOM helpers ---------- */

  const $ = (selector) => document.querySelector(selector);
  const $$ = (selector) => Array.from(document.querySelectorAll(selector));

  function setAttributes(node, attributes) {
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    return node;
  }

  function el(tag, attributes = {}, ...children) {
    const node = setAttributes(document.createElement(tag), attributes);
    node.append(...children);
    return node;
  }

  function svg(tag, attributes = {}, ...children) {
    const node = setAttributes(document.createElementNS(SVG_NS, tag), attributes);
    node.append(...children);
    return node;
  }

  function colorOf(target) {
    if (TARGET_COLORS[target]) return TARGET_COLORS[target];
    if (!otherColors.has(target)) otherColors.set(target, OTHER_COLORS[otherColors.size % OTHER_COLORS.length]);
    return otherColors.get(target);
  }

  function swatch(target) {
    return el("span", { class: "swatch", style: `background:${colorOf(target)}`, "aria-hidden": "true" });
  }

  function capitalize(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function formatNumber(value) {
    if (Math.abs(value) >= 10_000) return `${Number((value / 1000).toPrecision(3))}k`;
    return String(Number(value.toPrecision(4)));
  }

  function formatValue(value) {
    if (typeof value === "number") return formatNumber(value);
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  function formatWhen(startedAt) {
    if (startedAt === null || startedAt === undefined) return "";
    const date = new Date(typeof startedAt === "number" ? startedAt * 1000 : startedAt);
    return Number.isNaN(date.getTime()) ? String(startedAt) : date.toLocaleString();
  }

  /* ---------- messages and the API ---------- */

  function showMessage(content, kind = "error") {
    const box = $("#message");
    box.replaceChildren(content);
    box.className = `message ${kind}`;
    box.hidden = content === "";
  }

  // Runs one user action; what went wrong goes on the page, where the room can read it.
  async function attempt(action) {
    try {
      return await action();
    } catch (error) {
      if (!(error instanceof ApiError)) console.error(error); // a defect of this page: let it be seen
      showMessage(error instanceof ApiError ? error.message : `The console failed: ${error.message}`);
      return undefined;
    }
  }

  function readToken() {
    const url = new URL(location.href);
    const given = url.searchParams.get("token");
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given);
      url.searchParams.delete("token");
      // Keeps the token out of the address bar, the history and a screenshot of the page.
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json, application/problem+json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token && method !== "GET") headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const payload = await readPayload(response);
    if (!response.ok) throw new ApiError(problemText(response, payload));
    return payload;
  }

  async function readPayload(response) {
    const text = await response.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      return { detail: text };
    }
  }

  function problemText(response, payload) {
    let detail = payload && (payload.detail ?? payload.title);
    // A validation error that skipped the problem handler carries a list of {msg} as its detail.
    if (Array.isArray(detail)) detail = detail.map((item) => item.msg ?? JSON.stringify(item)).join("; ");
    const text = detail ? String(detail) : response.statusText;
    if (response.status === 401) {
      return `Not allowed (401): ${text}. Open the console with ?token=<the lab's admin token> in its address.`;
    }
    return `${response.status}: ${text}`;
  }

  /* ---------- design: navigation, presets, targets ---------- */

  function designFromPath() {
    const match = location.pathname.match(/^\/designs\/([^/]+)\/?$/);
    return match ? decodeURIComponent(match[1]) : "orders";
  }

  function renderNav(designs, current) {
    const links = designs.map((design) =>
      el("a", {
        href: `/designs/${encodeURIComponent(design.name)}`,
        "aria-current": design.name === current ? "page" : null,
        text: design.title,
      }),
    );
    $("#designs").replaceChildren(...links);
  }

  function renderPresets() {
    const buttons = page.design.presets.map((preset) =>
      el(
        "button",
        { type: "button", class: "preset", "data-preset": preset.name, "aria-pressed": "false", onclick: () => selectPreset(preset) },
        el("strong", { text: preset.title }),
        el("span", { text: preset.lesson }),
      ),
    );
    $("#presets").replaceChildren(...buttons);
    if (page.design.presets.length) selectPreset(page.design.presets[0]);
  }

  function selectPreset(preset) {
    page.preset = preset;
    for (const button of $$("#presets .preset")) {
      button.setAttribute("aria-pressed", String(button.dataset.preset === preset.name));
    }
    renderTargets(preset);
    onSelectionChanged();
  }

  function renderTargets(preset) {
    const boxes = preset.targets.map((target) =>
      el(
        "label",
        {},
        el("input", {
          type: "checkbox",
          name: "target",
          value: target,
          checked: preset.default_targets.includes(target),
          onchange: onSelectionChanged,
        }),
        swatch(target),
        target,
      ),
    );
    $("#targets").replaceChildren(el("legend", { text: "Variants" }), ...boxes);
  }

  function selectedTargets() {
    return $$("#targets input:checked").map((input) => input.value);
  }

  // Before any run, the counters show the columns the next start will fill.
  function onSelectionChanged() {
    if (page.run === null) renderInvariantTable(selectedTargets());
    updateControls();
  }

  /* ---------- run state and controls ---------- */

  function isActive() {
    return page.run !== null && ACTIVE_STATES.has(page.run.state);
  }

  function updateControls() {
    const active = isActive();
    $("#start").disabled = active || page.preset === null || selectedTargets().length === 0;
    $("#stop").disabled = !active;
    for (const button of $$("#faults .fault")) button.disabled = !(page.run && page.run.state === "running");
    for (const control of $$("#presets button, #targets input, #settings button")) control.disabled = active;
    const stateName = page.run ? page.run.state : "idle";
    setAttributes($("#run-state"), { class: `state state-${stateName}`, "data-state": stateName, text: stateName });
    if (page.run) document.body.dataset.run = page.run.id;
  }

  function updateClock() {
    const last = page.samples.at(-1);
    const total = page.run ? page.run.duration_s : null;
    const seconds = last ? Math.round(last.t) : 0;
    const clock = $("#run-clock");
    clock.dataset.t = String(seconds);
    clock.textContent = total ? `t = ${seconds} s / ${total} s` : `t = ${seconds} s`;
  }

  async function startRun() {
    if ($("#start").disabled) return;
    const body = { design: page.design.name, preset: page.preset.name, targets: selectedTargets() };
    const run = await api("POST", "/api/runs", body);
    showMessage("");
    follow(run);
    await Promise.all([refreshRuns(), refreshSettings()]);
  }

  async function stopRun() {
    if ($("#stop").disabled) return;
    await api("POST", `/api/runs/${encodeURIComponent(page.run.id)}/stop`);
    showMessage("Stopping the run…", "info");
  }

  /* ---------- the live event stream ---------- */

  function follow(run) {
    if (page.source) page.source.close();
    Object.assign(page, { run: { ...run }, lastSeq: -1, samples: [], faults: [], invariants: {} });
    renderInvariantTable(run.targets);
    renderLegend(run.targets);
    if (run.verdict) renderVerdict();
    else $("#verdict-panel").hidden = true;
    updateControls();
    updateClock();
    scheduleDraw();
    const source = new EventSource(`/api/runs/${encodeURIComponent(run.id)}/events`);
    for (const [name, handle] of Object.entries(EVENT_HANDLERS)) {
      source.addEventListener(name, (event) => receive(source, event, handle));
    }
    page.source = source;
  }

  function receive(source, event, handle) {
    if (source !== page.source) return; // a stream of a run no longer on screen
    const seq = Number(event.lastEventId);
    if (event.lastEventId !== "" && Number.isFinite(seq)) {
      if (seq <= page.lastSeq) return; // already seen before the stream reconnected
      page.lastSeq = seq;
    }
    handle(JSON.parse(event.data));
  }

  const EVENT_HANDLERS = {
    state(data) {
      page.run.state = data.state;
      page.run.error = data.error;
      if (data.error) showMessage(`The run ${data.state}: ${data.error}`);
      updateControls();
      attempt(refreshRuns); // the past runs list this one too, in its new state
    },
    sample(data) {
      page.samples.push(data);
      updateClock();
      scheduleDraw();
    },
    invariants(data) {
      for (const [target, values] of Object.entries(data.targets)) {
        page.invariants[target] = { ...page.invariants[target], ...values };
      }
      paintInvariants();
    },
    fault(data) {
      page.faults.push(data);
      if (data.error) showMessage(`${faultTitle(data.component, data.action)} failed: ${data.error}`);
      scheduleDraw();
    },
    verdict(data) {
      page.run.verdict = data.verdict;
      page.run.report = data.report;
      renderVerdict();
    },
    end() {
      page.source.close();
      page.source = null;
      attempt(finishRun);
    },
  };

  // The stream has ended: the run's own record is the last word on its state.
  async function finishRun() {
    const run = await api("GET", `/api/runs/${encodeURIComponent(page.run.id)}`);
    Object.assign(page.run, run);
    updateControls();
    if (run.verdict) renderVerdict();
    await refreshRuns();
    await refreshSettings();
  }

  // A preset brings settings of its own (the flash sale's stalled gateway): show them as they now stand.
  async function refreshSettings() {
    const { designs } = await api("GET", "/api/designs");
    const fresh = designs.find((design) => design.name === page.design.name);
    if (!fresh) return;
    page.design.settings = fresh.settings;
    renderSettings();
    updateControls();
  }

  /* ---------- invariants: large counters, red the moment one is above 0 ---------- */

  function invariantLabel(name) {
    const known = page.design.invariants.find((invariant) => invariant.name === name);
    return known ? known.label : name.replaceAll("_", " ");
  }

  function renderInvariantTable(targets) {
    const head = el("tr", {}, el("th", { scope: "col", text: "" }));
    for (const target of targets) head.append(el("th", { scope: "col" }, swatch(target), ` ${target}`));
    const rows = page.design.invariants.map((invariant) => invariantRow(invariant.name, targets));
    $("#invariants").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
    paintInvariants();
  }

  function invariantRow(name, targets) {
    const row = el("tr", { "data-invariant": name }, el("th", { scope: "row", text: invariantLabel(name) }));
    for (const target of targets) {
      row.append(
        el(
          "td",
          { class: "counter", "data-invariant": name, "data-target": target },
          el("span", { class: "value", text: "–" }),
          el("span", { class: "word", text: "waiting" }),
        ),
      );
    }
    return row;
  }

  function paintInvariants() {
    for (const [target, values] of Object.entries(page.invariants)) {
      for (const [name, value] of Object.entries(values)) paintCounter(counterCell(name, target), value);
    }
  }

  // An invariant the design did not list still gets its row: a counter nobody sees cannot turn red.
  function counterCell(name, target) {
    if (page.run && !$(`#invariants tr[data-invariant="${CSS.escape(name)}"]`)) {
      $("#invariants tbody").append(invariantRow(name, page.run.targets));
    }
    return $(`td.counter[data-invariant="${CSS.escape(name)}"][data-target="${CSS.escape(target)}"]`);
  }

  function paintCounter(cell, value) {
    if (!cell) return;
    const measured = typeof value === "number";
    const outcome = !measured ? "unknown" : value > 0 ? "broken" : "holds";
    cell.className = `counter ${outcome}`;
    cell.dataset.value = measured ? String(value) : "";
    cell.querySelector(".value").textContent = measured ? formatNumber(value) : "–";
    cell.querySelector(".word").textContent = { broken: "broken", holds: "holds", unknown: "waiting" }[outcome];
  }

  /* ---------- charts ---------- */

  function renderLegend(targets) {
    const entries = targets.map((target) => el("span", { "data-target": target }, swatch(target), target));
    $("#legend").replaceChildren(...entries);
  }

  function scheduleDraw() {
    if (page.drawPending) return;
    page.drawPending = true;
    // A page that catches up receives many samples in one go: draw once for all of them.
    setTimeout(drawCharts, 50);
  }

  function drawCharts() {
    page.drawPending = false;
    const seconds = secondsShown();
    for (const chart of CHARTS) drawChart(chart, seconds);
  }

  // The x axis spans the whole run from the start, so lines grow left to right instead of rescaling.
  function secondsShown() {
    const lastSample = page.samples.length ? page.samples.at(-1).t : 0;
    const lastFault = Math.max(0, ...page.faults.map((fault) => fault.at_s));
    const planned = page.run ? page.run.duration_s || 0 : 0;
    return Math.max(MIN_SECONDS_SHOWN, planned, lastSample, lastFault);
  }

  function sampleValue(sample, target, field) {
    const value = sample.targets?.[target]?.[field];
    return typeof value === "number" && Number.isFinite(value) ? value : null;
  }

  function chartSeries(chart) {
    const targets = page.run ? page.run.targets : [];
    const lines = [
      { field: chart.dashed, dash: DASHED },
      { field: chart.solid, dash: null },
    ];
    return targets.flatMap((target) =>
      lines.map((line) => ({
        target,
        line,
        points: page.samples.map((sample) => [sample.t, sampleValue(sample, target, line.field)]),
      })),
    );
  }

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const power = 10 ** Math.floor(Math.log10(raw));
    const scaled = raw / power;
    return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
  }

  function ticks(max, count) {
    const step = niceStep(max, count);
    const values = [];
    for (let index = 0; index * step <= max * (1 + 1e-9); index += 1) values.push(Number((index * step).toPrecision(12)));
    return values;
  }

  function niceMax(value, floor) {
    const top = Math.max(value, floor);
    const step = niceStep(top, 4);
    return Math.ceil(top / step) * step;
  }

  function drawChart(chart, seconds) {
    const node = document.getElementById(chart.id);
    const size = node.getBoundingClientRect();
    const width = Math.max(320, Math.round(size.width));
    const height = Math.max(200, Math.round(size.height));
    node.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const box = { left: 74, right: width - 18, top: 34, bottom: height - 54 };
    const series = chartSeries(chart);
    const values = series.flatMap((one) => one.points.map((point) => point[1]).filter((value) => value !== null));
    const yMax = niceMax(Math.max(0, ...values), chart.floor);
    const scale = {
      x: (t) => box.left + (t / seconds) * (box.right - box.left),
      y: (value) => box.bottom - (value / yMax) * (box.bottom - box.top),
    };
    node.replaceChildren(
      ...yAxis(box, scale, yMax, chart.unit),
      ...xAxis(box, scale, seconds, width),
      ...series.map((one) => seriesPath(one, scale)),
      ...page.faults.map((fault, index) => faultMarker(fault, index, box, scale)),
      ...(page.samples.length ? [] : [emptyNote(box)]),
    );
  }

  function yAxis(box, scale, yMax, unit) {
    const parts = [];
    for (const value of ticks(yMax, 4)) {
      const y = scale.y(value);
      parts.push(svg("g", { class: "grid" }, svg("line", { x1: box.left, x2: box.right, y1: y, y2: y })));
      parts.push(svg("text", { x: box.left - 8, y: y + 6, "text-anchor": "end", text: formatNumber(value) }));
    }
    parts.push(svg("text", { class: "axis-label", x: box.left - 64, y: box.top - 12, text: unit }));
    parts.push(svg("g", { class: "axis" }, svg("line", { x1: box.left, x2: box.left, y1: box.top, y2: box.bottom })));
    return parts;
  }

  function xAxis(box, scale, seconds, width) {
    const parts = [svg("g", { class: "axis" }, svg("line", { x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom }))];
    for (const t of ticks(seconds, Math.max(3, Math.floor(width / 110)))) {
      const x = scale.x(t);
      parts.push(svg("g", { class: "axis" }, svg("line", { x1: x, x2: x, y1: box.bottom, y2: box.bottom + 7 })));
      parts.push(svg("text", { x, y: box.bottom + 27, "text-anchor": "middle", text: formatNumber(t) }));
    }
    const middle = (box.left + box.right) / 2;
    parts.push(svg("text", { class: "axis-label", x: middle, y: box.bottom + 50, "text-anchor": "middle", text: "seconds of the run" }));
    return parts;
  }

  // A second without a value (no successful answer, so no latency) is a gap, not a zero; a value
  // alone between two gaps is a dot (a zero-length stroke with round caps).
  function pathData(points, scale) {
    let data = "";
    let run = 0;
    for (const [t, value] of points) {
      if (value === null) {
        if (run === 1) data += "h0.01";
        run = 0;
        continue;
      }
      data += `${run ? "L" : "M"}${scale.x(t).toFixed(1)},${scale.y(value).toFixed(1)}`;
      run += 1;
    }
    return run === 1 ? `${data}h0.01` : data;
  }

  function seriesPath(one, scale) {
    return svg("path", {
      class: "series",
      "data-target": one.target,
      "data-field": one.line.field,
      d: pathData(one.points, scale) || "M0,0",
      stroke: colorOf(one.target),
      "stroke-dasharray": one.line.dash,
      visibility: one.points.some((point) => point[1] !== null) ? null : "hidden",
    });
  }

  // Presses a second apart would print their names over each other: each label gets the next of
  // three rows inside the chart.
  function faultMarker(fault, index, box, scale) {
    const x = scale.x(Math.max(0, fault.at_s)); // a press while the load was starting sits at 0
    const onRight = x > (box.left + box.right) / 2;
    const labelY = box.top + 18 + (index % 3) * 20;
    const title = `${faultTitle(fault.component, fault.action)} at ${fault.at_s.toFixed(1)} s`;
    return svg(
      "g",
      { class: "fault-marker", "data-component": fault.component, "data-action": fault.action, "data-at": fault.at_s },
      svg("title", { text: fault.error ? `${title} (failed: ${fault.error})` : title }),
      svg("line", { x1: x, x2: x, y1: box.top, y2: box.bottom }),
      svg("text", { x: onRight ? x - 6 : x + 6, y: labelY, "text-anchor": onRight ? "end" : "start", text: faultTitle(fault.component, fault.action) }),
    );
  }

  function emptyNote(box) {
    const text = page.run ? "waiting for the first second of load…" : "press a preset, then Start";
    return svg("text", { class: "empty", x: (box.left + box.right) / 2, y: (box.top + box.bottom) / 2, "text-anchor": "middle", text });
  }

  /* ---------- faults ---------- */

  function faultLabel(component) {
    const known = page.design.faults.find((fault) => fault.component === component);
    return known ? known.label : component;
  }

  function faultTitle(component, action) {
    return `${capitalize(action)} ${faultLabel(component)}`;
  }

  function faultPresses() {
    return page.design.faults.flatMap((fault) => fault.actions.map((action) => ({ component: fault.component, action })));
  }

  function renderFaults() {
    const buttons = faultPresses().map((press, index) =>
      el(
        "button",
        {
          type: "button",
          class: "fault",
          "data-component": press.component,
          "data-action": press.action,
          disabled: true,
          onclick: () => attempt(() => pressFault(press)),
        },
        index < 9 ? el("kbd", { text: String(index + 1) }) : "",
        faultTitle(press.component, press.action),
      ),
    );
    $("#faults").replaceChildren(...(buttons.length ? buttons : [el("p", { text: "This design has no faults to inject." })]));
  }

  async function pressFault(press) {
    const result = await api("POST", "/api/faults", press);
    const at = typeof result?.at_s === "number" ? ` at ${result.at_s.toFixed(1)} s` : "";
    if (result?.error) showMessage(`${faultTitle(press.component, press.action)} failed: ${result.error}`);
    else showMessage(`${faultTitle(press.component, press.action)}${at}`, "info");
  }

  /* ---------- verdict and past runs ---------- */

  // The audit counts what the live reads could not yet (orders still in flight when the load ended):
  // the counters end on the audited numbers, the ones the verdict and the report give.
  function settleCounters(verdict) {
    const live = new Set(page.design.invariants.map((invariant) => invariant.name));
    for (const [target, result] of Object.entries(verdict)) {
      const audited = Object.entries(result.invariants || {}).filter(([name]) => live.has(name));
      page.invariants[target] = { ...page.invariants[target], ...Object.fromEntries(audited) };
    }
    paintInvariants();
  }

  function renderVerdict() {
    settleCounters(page.run.verdict || {});
    const cards = Object.entries(page.run.verdict || {}).map(([target, result]) => verdictCard(target, result));
    $("#verdict").replaceChildren(...cards);
    const link = $("#report-link");
    link.hidden = !page.run.report;
    if (page.run.report) link.href = page.run.report;
    $("#verdict-panel").hidden = false;
  }

  function verdictCard(target, result) {
    const outcome = result.holds === true ? "holds" : result.holds === false ? "broken" : "unknown";
    const facts = Object.entries(result.invariants || {}).flatMap(([name, value]) => [
      el("dt", { text: invariantLabel(name) }),
      el("dd", { text: formatValue(value) }),
    ]);
    return el(
      "div",
      { class: `verdict-target ${outcome}`, "data-target": target, "data-outcome": outcome },
      el("h3", {}, swatch(target), ` ${target} `, el("span", { class: "outcome", text: OUTCOME_WORDS[outcome] })),
      el("p", { text: result.explanation || "" }),
      el("dl", {}, ...facts),
    );
  }

  const OUTCOME_WORDS = { holds: "holds", broken: "breaks", unknown: "no verdict" };

  function verdictSummary(verdict) {
    return Object.entries(verdict || {})
      .map(([target, result]) => `${target} ${OUTCOME_WORDS[result.holds === true ? "holds" : result.holds === false ? "broken" : "unknown"]}`)
      .join(", ");
  }

  function runItem(run) {
    const summary = verdictSummary(run.verdict);
    return el(
      "li",
      { "data-run": run.id, "data-state": run.state },
      el("strong", { text: run.title || run.preset }),
      ` · ${run.design} · ${run.targets.join(" vs ")} · ${run.state}${run.stopped_early ? " (stopped early)" : ""}`,
      summary ? ` · ${summary} ` : " ",
      el("span", { class: "when", text: formatWhen(run.started_at) }),
      ...(run.report ? [" ", el("a", { href: run.report, text: "report" })] : []),
    );
  }

  async function refreshRuns() {
    const { runs } = await api("GET", "/api/runs");
    $("#runs").replaceChildren(...(runs.length ? runs.map(runItem) : [el("li", { text: "No runs yet." })]));
    return runs;
  }

  // A page opened (or reloaded) mid-run catches up with the run; a run of another design is named.
  function followActiveRun(runs) {
    const active = runs.find((run) => ACTIVE_STATES.has(run.state));
    if (!active) return;
    if (active.design === page.design.name) follow(active);
    else {
      const link = el("a", { href: `/designs/${encodeURIComponent(active.design)}`, text: `the ${active.design} page` });
      showMessage(el("span", {}, `A ${active.design} run (${active.title}) is going: watch it on `, link, "."), "info");
    }
  }

  /* ---------- settings ---------- */

  function renderSettings() {
    const rows = page.design.settings.map(settingRow);
    $("#settings").replaceChildren(...(rows.length ? rows : [el("p", { text: "This design has no live settings." })]));
  }

  function settingRow(setting) {
    const id = `setting-${setting.name}`;
    const input = settingInput(setting, id);
    const restarts = setting.restarts && setting.restarts.length ? `Applying restarts ${setting.restarts.join(", ")}.` : "";
    const note = el("span", { class: "restarted", "aria-live": "polite", text: restarts });
    const apply = el("button", {
      type: "button",
      "data-setting": setting.name,
      text: "Apply",
      onclick: () => attempt(() => applySetting(setting, input, note)),
    });
    const label = el("label", { for: id, text: setting.label });
    return el("div", { class: "setting", "data-setting": setting.name }, label, input, apply, note);
  }

  function settingInput(setting, id) {
    if (setting.choices) {
      const options = setting.choices.map((choice) =>
        el("option", { value: String(choice), selected: String(choice) === String(setting.value), text: String(choice) }),
      );
      return el("select", { id, name: setting.name }, ...options);
    }
    const numeric = Number.isFinite(setting.min) || Number.isFinite(setting.max);
    return el("input", {
      id,
      name: setting.name,
      type: numeric ? "number" : "text",
      value: setting.value ?? "",
      min: setting.min,
      max: setting.max,
      step: numeric ? "any" : null,
    });
  }

  async function applySetting(setting, input, note) {
    // Sent as typed: the server checks it against what the design accepts (a 422 says what).
    const result = await api("POST", "/api/settings", { name: setting.name, value: input.value });
    setting.value = result.value;
    const restarted = result.restarted && result.restarted.length ? `restarted ${result.restarted.join(", ")}` : "nothing needed a restart";
    note.textContent = `${setting.label} is ${formatValue(result.value)}: ${restarted}.`;
  }

  /* ---------- keyboard shortcuts ---------- */

  function shortcuts() {
    const faultKeys = $$("#faults .fault")
      .slice(0, 9)
      .map((button, index) => ({
        key: String(index + 1),
        label: faultTitle(button.dataset.component, button.dataset.action),
        act: () => pressButton(button),
      }));
    return [
      { key: "s", label: "Start the selected preset", act: startRun },
      { key: "x", label: "Stop the run", act: stopRun },
      ...faultKeys,
      { key: "?", label: "Show or hide this list", act: toggleShortcuts },
    ];
  }

  function pressButton(button) {
    if (!button.disabled) button.click();
  }

  function toggleShortcuts() {
    const dialog = $("#shortcuts");
    if (dialog.open) dialog.close();
    else {
      const entries = shortcuts().flatMap((shortcut) => [el("dt", {}, el("kbd", { text: shortcut.key })), el("dd", { text: shortcut.label })]);
      $("#shortcut-list").replaceChildren(...entries);
      dialog.showModal();
    }
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    // Typing into a setting is not a command.
    if (event.target instanceof Element && event.target.closest("input, select, textarea")) return;
    const shortcut = shortcuts().find((candidate) => candidate.key === event.key);
    if (!shortcut) return;
    event.preventDefault();
    attempt(shortcut.act);
  }

  /* ---------- start ---------- */

  async function boot() {
    readToken();
    $("#start").addEventListener("click", () => attempt(startRun));
    $("#stop").addEventListener("click", () => attempt(stopRun));
    document.addEventListener("keydown", onKey);
    window.addEventListener("resize", scheduleDraw);
    const name = designFromPath();
    const { designs } = await api("GET", "/api/designs");
    renderNav(designs, name);
    page.design = designs.find((design) => design.name === name) || null;
    if (!page.design) throw new ApiError(`There is no design called "${name}".`);
    document.title = `${page.design.title} · System Design Lab console`;
    $("#design-title").textContent = page.design.title;
    renderFaults();
    renderSettings();
    renderPresets();
    followActiveRun(await refreshRuns());
    drawCharts();
    document.body.dataset.ready = "true"; // the page has what it needs: tests wait for this
  }

  attempt(boot);
})();
