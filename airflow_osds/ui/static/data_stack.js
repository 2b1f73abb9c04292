// The data-stack page: fetches api/graph and draws it as inline SVG. Vanilla JS, no build step and
// nothing from the internet: the page must work in an air-gapped Airflow.
//
// The server lays the graph out (each node's layer and row, airflow_osds/ui/graph.py), so this file
// only places boxes and draws curves. Every name comes from the YAML or the metadata DB: text is set
// with textContent, never parsed as HTML. Stable attributes (data-node-id, data-kind, data-state,
// data-from, data-to) are the page's contract with its end-to-end test.
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 230, HEIGHT = 74, GAP_X = 56, GAP_Y = 18, PAD = 16, MAX_LABEL = 30;
  const MIN_SCALE = 0.75; // a wide stack shrinks to fit the frame, down to this; beyond it, it scrolls
  const REFRESH_MS = 30000;

  function svg(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function shorten(text) {
    return text.length <= MAX_LABEL ? text : "…" + text.slice(text.length - MAX_LABEL + 1);
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toISOString().replace("T", " ").slice(0, 16) + " UTC";
  }

  // Two lines under the node's kind: [data-field of the first, its text, the second line].
  function detail(node) {
    if (node.kind === "pipeline") {
      const run = node.last_run;
      return ["last-run", run ? `last run: ${run.state || "?"} · ${run.run_type}` : "no run yet",
              run ? when(run.run_after) : ""];
    }
    if (node.asset_id === null || node.asset_id === undefined) return ["last-event", "not registered in Airflow yet", ""];
    const event = node.last_event;
    if (!event) return ["last-event", "no event yet", ""];
    return ["last-event", `last event: ${when(event.timestamp)}`, event.source_dag_id ? `by ${event.source_dag_id}` : ""];
  }

  function position(node) {
    return { x: PAD + node.layer * (WIDTH + GAP_X), y: PAD + node.row * (HEIGHT + GAP_Y) };
  }

  function edgePath(from, to) {
    const a = position(from), b = position(to);
    const x1 = a.x + WIDTH, y1 = a.y + HEIGHT / 2, x2 = b.x, y2 = b.y + HEIGHT / 2;
    if (x2 > x1) {
      const bend = (x2 - x1) / 2;
      return `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
    }
    // An edge closing a cycle runs backwards: loop below both boxes.
    const below = Math.max(a.y, b.y) + HEIGHT + GAP_Y / 2;
    return `M${x1},${y1} C${x1 + 60},${below} ${x2 - 60},${below} ${x2},${y2}`;
  }

  function drawNode(node) {
    const { x, y } = position(node);
    const state = node.kind === "pipeline" ? (node.last_run && node.last_run.state) || "none" : null;
    const group = svg("g", {
      class: "node", "data-node-id": node.id, "data-kind": node.kind, "data-state": state,
      "data-run-id": node.last_run ? node.last_run.run_id : null,
      "data-asset-id": node.asset_id, "data-last-event": node.last_event ? node.last_event.timestamp : null,
      transform: `translate(${x},${y})`,
    });
    const [field, line, more] = detail(node);
    group.appendChild(svg("title", {}, [node.label, line, more].filter(Boolean).join("\n")));
    // target=_top: the page is an iframe of Airflow's UI, and the DAG or Asset page replaces the whole UI.
    const link = svg("a", { href: node.href, target: "_top" });
    link.appendChild(svg("rect", { class: "box", width: WIDTH, height: HEIGHT, rx: node.kind === "pipeline" ? 4 : 16 }));
    let textX = 12;
    if (state !== null) {
      link.appendChild(svg("circle", { class: "state", "data-state": state, cx: 14, cy: 19, r: 5 }));
      textX = 26;
    }
    link.appendChild(svg("text", { class: "title", x: textX, y: 23 }, shorten(node.label)));
    const sub = node.kind === "pipeline" ? node.schedule || "no schedule" : node.kind;
    link.appendChild(svg("text", { class: "detail", x: 12, y: 38, "data-field": "kind" }, sub));
    link.appendChild(svg("text", { class: "detail", x: 12, y: 53, "data-field": field }, line));
    link.appendChild(svg("text", { class: "detail", x: 12, y: 67, "data-field": `${field}-more` }, more));
    group.appendChild(link);
    return group;
  }

  function drawGraph(data, available) {
    const byId = new Map(data.nodes.map((n) => [n.id, n]));
    const layers = Math.max(0, ...data.nodes.map((n) => n.layer + 1));
    const rows = Math.max(0, ...data.nodes.map((n) => n.row + 1));
    const width = PAD * 2 + layers * WIDTH + Math.max(0, layers - 1) * GAP_X;
    const height = PAD * 2 + rows * HEIGHT + Math.max(0, rows - 1) * GAP_Y + GAP_Y;
    const scale = Math.min(1, Math.max(MIN_SCALE, available / width));
    const root = svg("svg", { id: "stack", width: Math.round(width * scale), height: Math.round(height * scale),
                              viewBox: `0 0 ${width} ${height}`, role: "img",
                              "aria-label": "pipelines and the data between them" });
    const defs = svg("defs");
    for (const kind of ["writes", "reads", "triggers"]) {
      const marker = svg("marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
                                     markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse",
                                     orient: "auto-start-reverse" });
      marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: kind === "triggers" ? "#1565c0" : "#7b8794" }));
      defs.appendChild(marker);
    }
    root.appendChild(defs);
    const edges = svg("g", { class: "edges" });
    for (const edge of data.edges) {
      const from = byId.get(edge.from), to = byId.get(edge.to);
      if (!from || !to) continue;
      edges.appendChild(svg("path", { class: "edge", "data-from": edge.from, "data-to": edge.to, "data-kind": edge.kind,
                                      d: edgePath(from, to), "marker-end": `url(#arrow-${edge.kind})` }));
    }
    root.appendChild(edges);
    const nodes = svg("g", { class: "nodes" });
    data.nodes.forEach((node) => nodes.appendChild(drawNode(node)));
    root.appendChild(nodes);
    return root;
  }

  function showErrors(errors) {
    const section = document.getElementById("errors");
    const list = document.getElementById("error-list");
    list.replaceChildren();
    for (const error of errors) {
      const where = error.line ? `${error.file}:${error.line}:${error.column}` : error.file;
      const item = document.createElement("li");
      item.dataset.errorFile = error.file;
      item.textContent = `${where}: ${error.message}`;
      list.appendChild(item);
    }
    section.hidden = errors.length === 0;
  }

  function render(data) {
    const pipelines = data.nodes.filter((n) => n.kind === "pipeline").length;
    const invalid = new Set(data.errors.map((e) => e.file)).size;
    document.getElementById("summary").textContent =
      `${pipelines} pipelines, ${data.nodes.length - pipelines} data nodes, ${data.edges.length} edges` +
      (invalid ? ` · ${invalid} invalid file${invalid === 1 ? "" : "s"}` : "") + ` · ${data.folder}`;
    showErrors(data.errors);
    const main = document.getElementById("graph");
    main.replaceChildren(data.nodes.length ? drawGraph(data, main.clientWidth - 2) : Object.assign(document.createElement("p"), {
      className: "empty", textContent: "No valid pipeline in this folder yet." }));
    document.body.dataset.loaded = "true";
  }

  function load() {
    fetch("api/graph", { credentials: "same-origin", cache: "no-store" })
      .then((response) => {
        if (!response.ok) throw new Error(`api/graph answered ${response.status}`);
        return response.json();
      })
      .then(render)
      .catch((error) => {
        document.getElementById("summary").textContent = `Could not load the data stack: ${error.message}`;
        document.body.dataset.loaded = "error";
      });
  }

  load();
  setInterval(load, REFRESH_MS);
})();
