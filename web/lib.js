// rq-sched dashboard helpers: text-only DOM building, in-place DOM updates, formatting and the
// SVG charts. Plain JS, no build step; app.js uses them through window.rq.
//
// Safety rule: values from the API are only ever added as text nodes or attribute values;
// nothing here parses a string as HTML.
"use strict";

(() => {
  const HANDLERS = ["onclick", "onchange", "oninput", "onsubmit", "ontoggle", "onkeydown"];

  // Event handlers are set as properties (el.onclick = fn), not addEventListener, so that
  // morph() can hand an updated element the new closures.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) el[name] = value;
      else if (name === "class") el.className = value;
      else if (name === "checked") { el.checked = true; el.setAttribute("checked", ""); }
      else if (name === "value") { el.value = String(value); el.setAttribute("value", String(value)); }
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
    for (const child of children) {
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  // ---- in-place updates ---------------------------------------------------------------------
  // morph(old, fresh) makes the live tree `old` look like `fresh` while keeping every node that
  // did not change: text the operator selected, the focused input, scroll positions and open
  // <details> survive an auto-refresh. Children are matched by data-key (or id), else by
  // position.

  function keyOf(node) {
    if (node.nodeType !== 1) return null;
    return node.getAttribute("data-key") || node.id || null;
  }

  function morph(old, fresh) {
    if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName
      || keyOf(old) !== keyOf(fresh)) {
      old.replaceWith(fresh);
      return;
    }
    if (old.nodeType === 3 || old.nodeType === 8) {
      if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
      return;
    }
    const details = old.nodeName === "DETAILS";
    for (const attr of Array.from(old.attributes)) {
      if (details && attr.name === "open") continue; // the operator's choice
      if (!fresh.hasAttribute(attr.name)) old.removeAttribute(attr.name);
    }
    for (const attr of Array.from(fresh.attributes)) {
      if (details && attr.name === "open") continue;
      if (old.getAttribute(attr.name) !== attr.value) old.setAttribute(attr.name, attr.value);
    }
    for (const name of HANDLERS) if (old[name] !== fresh[name]) old[name] = fresh[name];
    if (old.nodeName === "INPUT" || old.nodeName === "TEXTAREA") {
      if (document.activeElement !== old && old.value !== fresh.value) old.value = fresh.value;
      if (old.checked !== fresh.checked) old.checked = fresh.checked;
      return;
    }
    morphChildren(old, fresh);
    if (old.nodeName === "SELECT" && document.activeElement !== old) old.value = fresh.value;
  }

  function morphChildren(old, fresh) {
    const wanted = Array.from(fresh.childNodes);
    const byKey = new Map();
    for (const child of old.childNodes) {
      const key = keyOf(child);
      if (key) byKey.set(key, child);
    }
    wanted.forEach((next, i) => {
      const here = old.childNodes[i];
      const key = keyOf(next);
      if (key && (!here || keyOf(here) !== key)) {
        const found = byKey.get(key);
        if (found) {
          old.insertBefore(found, here || null);
          morph(found, next);
        } else {
          old.insertBefore(next, here || null);
        }
        return;
      }
      if (!here) old.append(next);
      else morph(here, next);
    });
    while (old.childNodes.length > wanted.length) old.lastChild.remove();
  }

  // ---- formatting -----------------------------------------------------------------------------

  function ago(seconds) {
    const s = Math.abs(seconds);
    if (s < 1) return "now";
    const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
    const parts = [];
    let rest = s;
    for (const [unit, size] of units) {
      if (rest >= size && parts.length < 2) {
        parts.push(Math.floor(rest / size) + unit);
        rest %= size;
      }
    }
    return parts.join("");
  }

  function utc(t) {
    return t.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function relative(iso) {
    const delta = (new Date(iso).getTime() - Date.now()) / 1000;
    return Math.abs(delta) < 1 ? "now" : delta > 0 ? "in " + ago(delta) : ago(delta) + " ago";
  }

  // A relative time with the absolute UTC time as its tooltip (tables).
  function when(iso) {
    if (!iso) return "";
    return h("span", { title: utc(new Date(iso)) }, relative(iso));
  }

  // A relative time next to the absolute one (detail pages).
  function whenFull(iso) {
    if (!iso) return "";
    return h("span", {}, relative(iso), " ", h("span", { class: "muted abs" }, "(" + utc(new Date(iso)) + ")"));
  }

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function count(n) {
    return Number(n).toLocaleString("en-US");
  }

  // ---- charts -----------------------------------------------------------------------------------

  // Paired bars per slot: rows = [{label, a, b}], kinds = [classA, classB].
  function bars(rows, kinds, opts) {
    const width = 1200, height = opts.height || 200, left = 44, bottom = 22, top = 10;
    const max = Math.max(1, ...rows.map((r) => Math.max(r.a || 0, r.b || 0)));
    const slot = (width - left) / Math.max(1, rows.length);
    const bar = Math.max(1, slot * 0.4);
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart " + (opts.class || ""),
      role: "img", "aria-label": opts.label, preserveAspectRatio: "none" });
    root.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
    root.append(svg("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, count(max)));
    root.append(svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, "0"));
    const every = Math.max(1, Math.ceil(rows.length / (opts.ticks || 12)));
    rows.forEach((r, i) => {
      const x = left + i * slot + slot * 0.1;
      [[kinds[0], r.a, 0], [kinds[1], r.b, bar]].forEach(([kind, value, dx]) => {
        if (value === null || value === undefined) return;
        const rect = svg("rect", { x: x + dx, y: y(value), width: bar,
          height: Math.max(0, height - bottom - y(value)), class: kind });
        rect.append(svg("title", {}, `${r.label}: ${value} ${kind}`));
        root.append(rect);
      });
      if (i % every === 0) {
        root.append(svg("text", { x: x + bar, y: height - 6, "text-anchor": "middle" }, r.label));
      }
    });
    return root;
  }

  // One line per series over the same slots: series = [{name, cls, values: [n|null]}].
  function lines(labels, series, opts) {
    const width = 1200, height = opts.height || 140, left = 44, bottom = 22, top = 10;
    const slot = (width - left) / Math.max(1, labels.length - 1);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart " + (opts.class || ""),
      role: "img", "aria-label": opts.label, preserveAspectRatio: "none" });
    root.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
    series.forEach((s, n) => {
      const max = Math.max(1, ...s.values.filter((v) => v !== null));
      const y = (v) => top + (height - top - bottom) * (1 - v / max);
      let path = "";
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const prev = s.values[i - 1];
        path += (prev === null || prev === undefined || i === 0 ? "M" : "L") + (left + i * slot).toFixed(1)
          + " " + y(v).toFixed(1) + " ";
      });
      root.append(svg("path", { d: path.trim() || "M0 0", class: "line " + s.cls }));
      root.append(svg("text", { x: left - 6, y: top + 10 + n * 12, "text-anchor": "end", class: s.cls },
        s.format ? s.format(max) : count(max)));
    });
    const every = Math.max(1, Math.ceil(labels.length / (opts.ticks || 12)));
    labels.forEach((label, i) => {
      if (i % every === 0) {
        root.append(svg("text", { x: left + i * slot, y: height - 6, "text-anchor": "middle" }, label));
      }
    });
    return root;
  }

  window.rq = { h, svg, append, morph, ago, when, whenFull, utc, bytes, count, bars, lines };
})();
