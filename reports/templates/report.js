(function () {
  "use strict";
  function setAll(open) {
    document.querySelectorAll("details.docs").forEach(function (d) { d.open = open; });
  }
  var expand = document.getElementById("expand-docs");
  var collapse = document.getElementById("collapse-docs");
  if (expand) { expand.addEventListener("click", function () { setAll(true); }); }
  if (collapse) { collapse.addEventListener("click", function () { setAll(false); }); }
  var copy = document.getElementById("copy-command");
  var command = document.getElementById("command");
  if (copy && command) {
    copy.addEventListener("click", function () {
      var range = document.createRange();
      range.selectNodeContents(command);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { document.execCommand("copy"); copy.textContent = "copied"; } catch (e) { copy.textContent = "select and copy"; }
    });
  }
  var holder = document.getElementById("graph-data");
  if (holder) { graphExplorer(JSON.parse(holder.textContent)); }
  document.documentElement.setAttribute("data-ready", "1");

  /* The model graph: the module tree of reports/graph_view.py (see reports/graph_explorer.py for
     the data), opened on its top level. Only the boxes in view are laid out and drawn: an open
     box is a frame around its children, laid out in layers top to bottom (a box's layer is one
     below the latest box it reads from, in execution order), each layer in execution order. */
  function graphExplorer(D) {
    var svg = document.getElementById("graph-svg"), SVG = svg.namespaceURI;
    var BOX_W = 196, BOX_H = 42, NODE_W = 124, NODE_H = 28, GAP_X = 18, GAP_Y = 28, PAD = 10, HEAD = 24, MARGIN = 12;
    var M = D.kind.length, N = D.inputs.length, ROOT = M;
    var first = function (k) { return k < N ? k : D.first[k - N]; };
    var count = function (k) { return k < N ? 1 : D.nodes[k - N]; };
    var label = function (k) { return D.strings[D.label[k]]; };
    var type = function (k) { return k < N ? "" : D.strings[D.type[k - N]]; };
    var names = D.name.slice();
    var outer = function (k) {
      for (var p = D.parent[k]; p >= 0; p = D.parent[p]) { if (D.kind[p] === "m") { return p; } }
      return -1;
    };
    var section = document.getElementById("graph");
    var select = document.getElementById("graph-colour");
    var kids = [], i;
    for (i = 0; i <= M; i++) { kids.push([]); }
    for (i = 0; i < M; i++) { kids[D.parent[i] < 0 ? ROOT : D.parent[i]].push(i); }
    kids.forEach(function (k) { k.sort(function (a, b) { return first(a) - first(b); }); });
    for (i = N; i < M; i++) { fillName(i); }  // each module after its parent, before the ops inside it
    for (i = 0; i < N; i++) { fillName(i); }
    function fillName(k) {  // reports/graph_explorer.py: derived_name
      if (names[k] !== "") { return; }
      var o = outer(k), path = o >= 0 ? names[o] : "";
      if (D.kind[k] === "m") { names[k] = path ? path + "." + label(k) : label(k); }
      else { names[k] = path.split(".").join("_"); }
    }
    var open = new Uint8Array(M + 1);
    open[ROOT] = 1;
    var mode = select ? select.value : D["default"];
    var W = new Float64Array(M + 1), H = new Float64Array(M + 1), X = new Float64Array(M + 1), Y = new Float64Array(M + 1);
    var vis = new Int32Array(M), depth = new Int32Array(M + 1);

    function openable(k) {
      var c = kids[k];
      return c.length > 1 || (c.length === 1 && kids[c[0]].length > 0);
    }
    function isOpen(k) { return open[k] === 1 && openable(k); }
    function moduleOf(k) { var o = outer(k); return o >= 0 ? names[o] : "<root>"; }
    function ratio(v) {
      if (v === null) { return "not compared"; }
      if (v >= 1e300) { return "inf"; }
      if (v > 1 && v < 1.0001) { return "above 1"; }
      if (v === 0) { return "0"; }
      return (v >= 1e-3 && v < 1e4) ? String(Number(v.toPrecision(3))) : v.toExponential(1);
    }
    function bin(v) {
      if (v === null) { return "rn"; }
      return v <= 0.01 ? "r0" : v <= 0.1 ? "r1" : v <= 1 ? "r2" : v <= 10 ? "r3" : "r4";
    }

    /* which box holds each item: an item inside a closed box is drawn as that box */
    function assign(k, box) {
      vis[k] = box;
      var c = kids[k];
      for (var j = 0; j < c.length; j++) { assign(c[j], box); }
    }
    function walk(k, d) {
      var c = kids[k];
      for (var j = 0; j < c.length; j++) {
        depth[c[j]] = d;
        if (isOpen(c[j])) { vis[c[j]] = c[j]; walk(c[j], d + 1); } else { assign(c[j], c[j]); }
      }
    }

    function edges() {
      var map = {}, list = [], onPath = pathSet();
      for (var v = 0; v < N; v++) {
        var ins = D.inputs[v], b = vis[v];
        for (var j = 0; j < ins.length; j++) {
          var u = v - ins[j], a = vis[u];
          if (a === b) { continue; }
          var key = a + "," + b, e = map[key];
          if (!e) { e = map[key] = {a: a, b: b, count: 0, path: false}; list.push(e); }
          e.count++;
          if (onPath && onPath[u] && onPath[v]) { e.path = true; }
        }
      }
      return list;
    }
    function colouring() { return mode.charAt(0) === "c" ? D.colourings[Number(mode.slice(1))] : null; }
    function pathSet() {
      var c = colouring();
      if (!c || !c.path.length) { return null; }
      var s = new Uint8Array(M);
      c.path.forEach(function (v) { s[v] = 1; });
      return s;
    }
    function pathItems() {
      var c = colouring(), s = new Uint8Array(M);
      if (c) {
        c.path.forEach(function (v) {
          for (var k = v; k >= 0 && !s[k]; k = D.parent[k]) { s[k] = 1; }
        });
      }
      return s;
    }

    /* the two children of the deepest open box that hold a and b: where an edge ranks boxes */
    function siblings(a, b) {
      while (depth[a] > depth[b]) { a = D.parent[a]; }
      while (depth[b] > depth[a]) { b = D.parent[b]; }
      while (D.parent[a] !== D.parent[b]) { a = D.parent[a]; b = D.parent[b]; }
      return [a, b, D.parent[a] < 0 ? ROOT : D.parent[a]];
    }

    function layout(k, preds) {
      var c = kids[k], rank = {}, rows = [], j;
      for (j = 0; j < c.length; j++) {
        if (isOpen(c[j])) { layout(c[j], preds); } else if (c[j] < N) { W[c[j]] = NODE_W; H[c[j]] = NODE_H; }
        else { W[c[j]] = BOX_W; H[c[j]] = BOX_H; }
        var r = 0, p = preds[c[j]] || [];
        for (var q = 0; q < p.length; q++) { if (rank[p[q]] !== undefined) { r = Math.max(r, rank[p[q]] + 1); } }
        rank[c[j]] = r;
        (rows[r] = rows[r] || []).push(c[j]);
      }
      var top = k === ROOT ? MARGIN : HEAD + PAD, side = k === ROOT ? MARGIN : PAD, width = 0, y = top;
      rows.forEach(function (row) {
        var w = (row.length - 1) * GAP_X, h = 0;
        row.forEach(function (m) { w += W[m]; h = Math.max(h, H[m]); });
        row.w = w; row.h = h; width = Math.max(width, w);
      });
      W[k] = Math.max(width + 2 * side, k === ROOT ? 0 : Math.min(headText(k).length * 7.4 + 24, 2 * BOX_W));
      rows.forEach(function (row) {
        var x = (W[k] - row.w) / 2;
        row.forEach(function (m) { X[m] = x; Y[m] = y + (row.h - H[m]) / 2; x += W[m] + GAP_X; });
        y += row.h + GAP_Y;
      });
      H[k] = rows.length ? y - GAP_Y + (k === ROOT ? MARGIN : PAD) : top + PAD;
    }
    function el(name, attrs, parent) {
      var e = document.createElementNS(SVG, name);
      for (var a in attrs) { e.setAttribute(a, attrs[a]); }
      if (parent) { parent.appendChild(e); }
      return e;
    }
    function fit(text, width) {
      var max = Math.max(4, Math.floor((width - 16) / 6.9));
      return text.length > max ? text.slice(0, max - 1) + "\u2026" : text;
    }
    function subLabel(k) {  // of a module, a run of ops or a range
      var kind = D.kind[k];
      if (kind === "g" || kind === "r") { return type(k); }
      return (type(k) ? type(k) + " \u00b7 " : "") + nodes(k);
    }
    function headText(k) { return "\u2212 " + label(k) + (type(k) ? " \u00b7 " + type(k) : ""); }
    function nodes(k) { return count(k) === 1 ? "1 node" : count(k).toLocaleString("en-US") + " nodes"; }
    function title(k, marks) {
      var kind = D.kind[k], lines = [];
      if (kind === "m") { lines.push(names[k] + (type(k) ? " (" + type(k) + ")" : "")); }
      else if (kind === "o") { lines.push("node " + names[k] + ": " + label(k) + ", in " + moduleOf(k)); }
      else if (kind === "i") { lines.push("input " + names[k]); }
      else if (kind === "x") { lines.push("output"); }
      else { lines.push(names[k] + (type(k) ? ": " + type(k) : "")); }
      if (kind === "m" || kind === "g" || kind === "r") { lines.push(nodes(k)); }
      if (kind === "m" && !openable(k) && kids[k].length === 1) {
        var only = kids[k][0];
        lines.push("node " + names[only] + ": " + label(only));
      }
      var c = colouring();
      if (c) {
        lines.push("worst local error / tolerance (" + c.name + "): " + ratio(c.worst[k]));
        if (marks.fd === k) {
          lines.push((c.expected ? "holds the first difference (expected): node " : "holds the first divergence: node ") + c.divergenceName);
        } else if (marks.path[k]) {
          lines.push("on the path from the inputs to the first " + (c.expected ? "difference" : "divergence") + " (node " + c.divergenceName + ")");
        }
      } else if (mode === "findings" && D.findings[k]) {
        lines.push("findings: " + D.findings[k][1].split(" ").join(", "));
      }
      if (isOpen(k)) { lines.push("click the title bar to close"); }
      else if (openable(k)) { lines.push("click to open"); }
      return lines.join("\n");
    }
    function colourClass(k) {
      var c = colouring();
      if (c) { return bin(c.worst[k]); }
      return mode === "findings" ? "s" + (D.findings[k] ? D.findings[k][0] : 0) : "";
    }

    function render() {
      walk(ROOT, 0);
      var list = edges(), preds = {}, j;
      for (j = 0; j < list.length; j++) {
        var e = list[j], s = siblings(e.a, e.b);
        if (first(s[0]) < first(s[1])) { (preds[s[1]] = preds[s[1]] || []).push(s[0]); }
      }
      layout(ROOT, preds);
      X[ROOT] = 0; Y[ROOT] = 0;
      absolute(ROOT, 0, 0);
      var c = colouring(), marks = {path: pathItems(), fd: c && c.divergence !== null ? vis[c.divergence] : -1};
      section.className = c ? "mode-error" : mode === "findings" ? "mode-findings" : "mode-none";
      var frag = document.createDocumentFragment(), groups = el("g", {}, frag), lines = el("g", {}, frag), boxes = el("g", {}, frag);
      drawChildren(ROOT, groups, boxes, marks);
      list.forEach(function (e) {
        var x1 = X[e.a] + W[e.a] / 2, y1 = Y[e.a] + H[e.a], x2 = X[e.b] + W[e.b] / 2, y2 = Y[e.b];
        var back = y2 < y1, mid = back ? Math.max(y1, y2) + 20 : (y1 + y2) / 2;
        var d = back ? "M" + x1 + "," + y1 + " C" + x1 + "," + (y1 + 30) + " " + x2 + "," + (y2 - 30) + " " + x2 + "," + y2
                     : "M" + x1 + "," + y1 + " C" + x1 + "," + mid + " " + x2 + "," + mid + " " + x2 + "," + y2;
        el("path", {d: d, "class": "edge" + (e.path ? " path" : "") + (back ? " back" : ""),
                    "stroke-width": e.path ? 3 : Math.min(1 + e.count / 4, 4)}, lines);
      });
      while (svg.firstChild) { svg.removeChild(svg.firstChild); }
      svg.appendChild(frag);
      svg.setAttribute("width", W[ROOT]);
      svg.setAttribute("height", H[ROOT]);
      svg.setAttribute("viewBox", "0 0 " + W[ROOT] + " " + H[ROOT]);
    }
    function absolute(k, x, y) {
      var c = kids[k];
      if (!isOpen(k) && k !== ROOT) { return; }
      for (var j = 0; j < c.length; j++) {
        X[c[j]] += x; Y[c[j]] += y;
        absolute(c[j], X[c[j]], Y[c[j]]);
      }
    }
    function drawChildren(k, groups, boxes, marks) {
      var c = kids[k];
      for (var j = 0; j < c.length; j++) {
        var m = c[j], cls = (marks.path[m] ? " path" : "") + (marks.fd === m ? " fd" + (colouring().expected ? " expected" : "") : "");
        if (isOpen(m)) {
          var g = el("g", {"class": "group" + cls, "data-group": m}, groups);
          el("rect", {"class": "body", x: X[m], y: Y[m], width: W[m], height: H[m], rx: 8}, g);
          var head = el("g", {"class": "head " + colourClass(m), "data-item": m, tabindex: 0, role: "button"}, g);
          el("title", {}, head).textContent = title(m, marks);
          el("rect", {x: X[m], y: Y[m], width: W[m], height: HEAD, rx: 8}, head);
          el("text", {x: X[m] + 8, y: Y[m] + 16}, head).textContent = fit(headText(m), W[m] - 12);
          drawChildren(m, groups, boxes, marks);
        } else {
          var b = el("g", {"class": "box " + colourClass(m) + cls + (openable(m) ? " open-able" : ""), "data-item": m,
                           tabindex: 0, role: "button"}, boxes);
          el("title", {}, b).textContent = title(m, marks);
          el("rect", {x: X[m], y: Y[m], width: W[m], height: H[m], rx: m < N ? 14 : 6}, b);
          if (m < N) {  // one graph node: a small box with its op (an input's name), its kind in the title
            el("text", {x: X[m] + 8, y: Y[m] + 18}, b).textContent = fit(label(m), W[m]);
          } else {
            el("text", {x: X[m] + 8, y: Y[m] + 17}, b).textContent = fit(label(m), W[m] - (openable(m) ? 14 : 0));
            el("text", {"class": "sub", x: X[m] + 8, y: Y[m] + 33}, b).textContent = fit(subLabel(m), W[m]);
          }
          if (openable(m)) { el("text", {"class": "pm", x: X[m] + W[m] - 16, y: Y[m] + 17}, b).textContent = "+"; }
        }
      }
    }

    function toggle(k) {
      if (!openable(k)) { return; }
      open[k] = open[k] ? 0 : 1;
      if (!open[k]) { closeAll(k); }
      render();
      var again = svg.querySelector('[data-item="' + k + '"]');
      if (again) { again.focus(); }
    }
    function closeAll(k) {
      open[k] = 0;
      kids[k].forEach(closeAll);
    }
    svg.addEventListener("click", function (ev) {
      var g = ev.target.closest("[data-item]");
      if (g) { toggle(Number(g.getAttribute("data-item"))); }
    });
    svg.addEventListener("keydown", function (ev) {
      var g = ev.target.closest("[data-item]");
      if (g && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); toggle(Number(g.getAttribute("data-item"))); }
    });
    if (select) { select.addEventListener("change", function () { mode = select.value; render(); }); }
    var reset = document.getElementById("graph-collapse");
    if (reset) { reset.addEventListener("click", function () { closeAll(ROOT); open[ROOT] = 1; render(); }); }
    render();
  }
})();
