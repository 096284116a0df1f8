// rq-sched dashboard: a single page over the JSON API under /api. Plain JS, no build step;
// DOM helpers, in-place updates and charts come from lib.js (window.rq).
//
// Safety rule: everything that comes from the API (queue names, task ids, types, payloads,
// errors) is user data. It is only ever put in the page as text nodes (h() in lib.js); nothing
// here parses strings as HTML, and the server's Content-Security-Policy forbids inline script.
"use strict";

(() => {
  const { h, morph, ago, when, whenFull, bytes, count, bars, lines } = window.rq;
  const STATES = ["pending", "active", "scheduled", "retry", "archived", "completed"];
  const ROW_ACTIONS = {
    pending: ["archive", "delete"],
    active: ["cancel"],
    scheduled: ["run", "archive", "delete"],
    retry: ["run", "archive", "delete"],
    archived: ["run", "delete"],
    completed: ["delete"],
  };
  const BULK_ACTIONS = {
    pending: ["archive", "delete"],
    active: [],
    scheduled: ["run", "archive", "delete"],
    retry: ["run", "archive", "delete"],
    archived: ["run", "delete"],
    completed: ["delete"],
  };
  const TIME_LABEL = {
    pending: "Enqueued",
    active: "Lease ends",
    scheduled: "Due",
    retry: "Next attempt",
    archived: "Archived",
    completed: "Kept until",
  };
  const ACTION_LABEL = { run: "Run now", archive: "Archive", delete: "Delete", cancel: "Cancel" };
  const BULK_LABEL = { run: "Run all", archive: "Archive all", delete: "Delete all" };
  const PAGE_SIZES = [20, 50, 100, 200, 500];
  const BULK_STEP = 2000; // tasks per bulk request: each stays well under a second at 200k
  const REFRESH_MS = 3000;
  const TOKEN_KEY = "rq-sched-token";

  let config = { read_only: false, auth: false };
  let renderSeq = 0;
  let busy = false;
  // UI state that outlives a render: the selection (per queue/state/type), the chart window,
  // whether the type breakdown is open, and a running bulk action.
  const ui = { selected: new Set(), selectionKey: "", window: "hour", typesOpen: false, bulk: null };

  function link(hash, ...children) {
    return h("a", { href: hash }, ...children);
  }

  // A value inside the #hash (never sent to the server, so dot segments are harmless there).
  function seg(value) {
    return encodeURIComponent(value);
  }

  // API URLs carry queue names and task ids in the query string, never as path segments: a
  // browser removes "." and ".." segments (even "%2E%2E") before sending, which once turned
  // "delete task .." into "delete the queue".
  function apiUrl(path, params) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
    }
    const text = query.toString();
    return text ? path + "?" + text : path;
  }

  function queueUrl(queue, sub, params) {
    return apiUrl("/api/queue" + (sub ? "/" + sub : ""), { queue, ...(params || {}) });
  }

  function taskUrl(queue, id, action) {
    return apiUrl("/api/task" + (action ? "/" + action : ""), { queue, id });
  }

  function taskHash(queue, id) {
    return "#/queues/" + seg(queue) + "/tasks/" + seg(id);
  }

  // A table cell that carries its column name, shown as a label when tables collapse to cards.
  function cell(label, attrs, ...children) {
    return h("td", { ...(attrs || {}), "data-label": label }, ...children);
  }

  // ---- API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json", "X-Requested-With": "rq-sched" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    // Relative to the page ("api/queues", not "/api/queues"), so the dashboard also works
    // mounted under a prefix of another app (served at "/prefix/").
    const resp = await fetch(path.replace(/^\//, ""), init);
    let data = null;
    try { data = await resp.json(); } catch (_) { data = { error: resp.statusText }; }
    if (resp.status === 401) {
      showLogin(Boolean(token));
      throw new ApiError("sign in required", 401);
    }
    if (!resp.ok) throw new ApiError((data && data.error) || resp.statusText, resp.status);
    return data;
  }

  // Runs an action, reports the outcome, re-renders; resolves to true when it succeeded.
  // after: what to do on success instead of re-rendering (e.g. leave a deleted task's page).
  async function act(method, path, body, question, after) {
    if (question && !window.confirm(question)) return false;
    busy = true;
    let ok = false;
    try {
      notice(describe(await api(method, path, body)), "ok");
      ok = true;
    } catch (err) {
      if (err.status !== 401) notice(err.message, "bad");
    } finally {
      busy = false;
    }
    if (ok && after) after();
    else await render();
    return ok;
  }

  // A one-line report of an action's JSON result.
  function describe(result) {
    if (!result) return "done";
    if (result.action !== undefined && Array.isArray(result.done)) {
      const failed = Object.entries(result.failed);
      return `${result.action}: ${result.done.length} done` + (failed.length
        ? `, ${failed.length} not: ` + failed.slice(0, 3).map(([id, why]) => `${id} (${why})`).join("; ")
        : "");
    }
    if (result.action !== undefined && result.done !== undefined) {
      return result.action + ": " + result.done + " task(s) done, " + result.skipped + " skipped";
    }
    if (result.entry && result.task) return `ran ${result.entry} now: task ${result.task.id}`;
    if (result.entry !== undefined && result.paused !== undefined) {
      return "entry " + result.entry + (result.paused ? " paused: its ticks are skipped" : " resumed");
    }
    if (result.cancelled) return "cancel of " + result.cancelled + " sent to "
      + result.servers_notified + " server(s)";
    if (result.run) return "moved to pending: " + result.run;
    if (result.archive) return "archived: " + result.archive;
    if (result.deleted) return "deleted: " + result.deleted;
    if (result.deleted_keys !== undefined) return "deleted queue " + result.queue;
    if (result.paused !== undefined) {
      return "queue " + result.queue + (result.paused ? " paused" : " resumed");
    }
    return "done";
  }

  function notice(text, kind) {
    const el = document.getElementById("notice");
    el.textContent = text;
    el.className = kind;
    el.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  // ---- routing ----------------------------------------------------------------------------

  function route() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, query] = hash.split("?");
    let parts;
    try {
      parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    } catch (_) {
      return { name: "bad-link", hash }; // a malformed %-escape in a hand-typed link
    }
    const params = new URLSearchParams(query || "");
    const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
    const size = PAGE_SIZES.includes(Number(params.get("size"))) ? Number(params.get("size")) : 20;
    if (parts[0] === "queues" && parts[1] !== undefined) {
      if (parts[2] === "tasks" && parts[3] !== undefined) {
        return { name: "task", queue: parts[1], id: parts.slice(3).join("/") };
      }
      const state = STATES.includes(parts[2]) ? parts[2] : "pending";
      return { name: "queue", queue: parts[1], state, page, size, type: params.get("type") || "" };
    }
    if (parts[0] === "search") return { name: "search", id: params.get("id") || "" };
    if (parts[0] === "servers") return { name: "servers" };
    if (parts[0] === "scheduler") return { name: "scheduler", entry: parts[1] };
    if (parts[0] === "redis") return { name: "redis" };
    return { name: "queues" };
  }

  function queueHash(r, changes) {
    const next = { ...r, ...changes };
    const params = new URLSearchParams();
    if (next.page > 1) params.set("page", next.page);
    if (next.size !== 20) params.set("size", next.size);
    if (next.type) params.set("type", next.type);
    const text = params.toString();
    return `#/queues/${seg(next.queue)}/${next.state}` + (text ? "?" + text : "");
  }

  const PAGES = { queues: queuesPage, queue: queuePage, task: taskPage, servers: serversPage,
    scheduler: schedulerPage, redis: redisPage, search: searchPage, "bad-link": badLinkPage };

  async function render() {
    const r = route();
    const seq = ++renderSeq;
    for (const a of document.querySelectorAll("#nav a")) {
      const section = r.name === "queue" || r.name === "task" ? "queues" : r.name;
      a.classList.toggle("active", a.dataset.page === section);
    }
    let content;
    try {
      content = await PAGES[r.name](r);
    } catch (err) {
      if (err.status === 401) return;
      content = h("div", { class: "card" }, h("h2", {}, "Could not load this page"),
        h("pre", { class: "error" }, err.message));
    }
    if (seq !== renderSeq) return; // a newer render started meanwhile
    const main = document.getElementById("main");
    const pageKey = JSON.stringify([r.name, r.queue, r.state, r.id, r.entry, r.type]);
    const wrapper = h("div", { "data-key": pageKey, class: "page" }, content);
    if (main.firstElementChild && main.firstElementChild.getAttribute("data-key") === pageKey) {
      morph(main.firstElementChild, wrapper); // a refresh: update in place
    } else {
      main.replaceChildren(wrapper);
    }
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  // ---- charts -----------------------------------------------------------------------------

  function minuteCharts(points, title) {
    const label = (p) => p.minute.slice(11, 16);
    const rows = points.map((p) => ({ label: label(p), a: p.processed, b: p.failed }));
    const sampled = points.filter((p) => p.size !== null).length;
    const toggle = h("div", { class: "actions" }, ["hour", "day"].map((w) => h("button", {
      "data-window": w, class: ui.window === w ? "primary" : "",
      onclick: () => { ui.window = w; render(); },
    }, w === "hour" ? "Last hour" : "Last day")));
    return h("div", { class: "card", id: "minutes" },
      h("div", { class: "row spread" }, h("h2", {}, title + " per minute"), toggle),
      h("div", { class: "row spread" }, legend([["processed", "processed"], ["failed", "failed"]]),
        h("span", { class: "muted small" }, `${sampled} of ${points.length} minutes sampled`)),
      bars(rows, ["processed", "failed"], { label: "processed and failed per minute",
        class: "minutes", height: 160, ticks: 12 }),
      legend([["size", "queue size"], ["latency", "latency"]]),
      lines(points.map(label), [
        { name: "size", cls: "size", values: points.map((p) => p.size) },
        { name: "latency", cls: "latency", values: points.map((p) => p.latency),
          format: (v) => ago(v) || "0s" },
      ], { label: "queue size and latency per minute", class: "minutes-lines", height: 120 }));
  }

  function dayChart(days) {
    return bars(days.map((d) => ({ label: d.day.slice(5), a: d.processed, b: d.failed })),
      ["processed", "failed"], { label: "processed and failed per day", class: "days", ticks: 16 });
  }

  function legend(items) {
    return h("div", { class: "legend" }, items.map(([cls, text]) =>
      h("span", {}, h("span", { class: "swatch " + cls }), text)));
  }

  // ---- overview -----------------------------------------------------------------------------

  async function queuesPage() {
    const [queues, history, minutes] = await Promise.all([
      api("GET", "/api/queues"),
      api("GET", "/api/stats/history?days=14"),
      api("GET", apiUrl("/api/stats/minutes", { window: ui.window })),
    ]);
    const total = (field) => queues.reduce((sum, q) => sum + q.info[field], 0);
    const tiles = h("div", { class: "tiles" },
      tile("Queues", queues.length),
      tile("Pending", total("pending")),
      tile("Active", total("active")),
      tile("Scheduled", total("scheduled")),
      tile("Retry", total("retry")),
      tile("Archived", total("archived")),
      tile("Processed today", total("processed_today")),
      tile("Failed today", total("failed_today")));
    const rows = queues.map((q) => {
      const i = q.info;
      const hash = "#/queues/" + seg(i.queue);
      return h("tr", { "data-queue": i.queue, "data-key": "q:" + i.queue },
        cell("Queue", { class: "name" }, link(hash, i.queue), " ",
          i.paused ? h("span", { class: "badge badge-warn" }, "paused") : null),
        STATES.map((s) => cell(s, { class: "num" }, link(hash + "/" + s, String(i[s])))),
        cell("Latency", { class: "num" }, q.latency ? ago(q.latency) : "0s"),
        cell("Done today", { class: "num" }, String(i.processed_today)),
        cell("Failed today", { class: "num" }, String(i.failed_today)),
        config.read_only ? null : cell("", { class: "act" }, pauseButton(i.queue, i.paused)));
    });
    const table = queues.length
      ? h("table", { class: "cards" }, h("thead", {}, h("tr", {},
          h("th", {}, "Queue"),
          STATES.map((s) => h("th", { class: "num" }, s)),
          h("th", { class: "num" }, "Latency"),
          h("th", { class: "num" }, "Done today"),
          h("th", { class: "num" }, "Failed today"),
          config.read_only ? null : h("th", {}, ""))),
        h("tbody", {}, rows))
      : h("p", { class: "empty" }, "No queues yet. A queue appears when its first task is enqueued.");
    return h("div", {}, tiles,
      h("div", { class: "card" }, h("h2", {}, "Queues"), table),
      minuteCharts(minutes, "All queues"),
      h("div", { class: "card" }, h("div", { class: "row spread" },
        h("h2", {}, "Processed and failed, last 14 days"),
        legend([["processed", "processed"], ["failed", "failed"]])), dayChart(history)));
  }

  function tile(label, value) {
    return h("div", { class: "tile" }, h("div", { class: "num" }, count(value)),
      h("div", { class: "label" }, label));
  }

  function pauseButton(queue, paused) {
    const action = paused ? "unpause" : "pause";
    return h("button", {
      "data-action": action,
      onclick: () => act("POST", queueUrl(queue, action)),
    }, paused ? "Resume" : "Pause");
  }

  // ---- one queue ----------------------------------------------------------------------------

  async function queuePage(r) {
    const key = [r.queue, r.state, r.type].join("\n");
    if (ui.selectionKey !== key) { ui.selected.clear(); ui.selectionKey = key; }
    const [detail, page, minutes, types] = await Promise.all([
      api("GET", queueUrl(r.queue, "", { days: 14 })),
      api("GET", queueUrl(r.queue, "tasks", { state: r.state, page: r.page, size: r.size, type: r.type })),
      api("GET", apiUrl("/api/stats/minutes", { window: ui.window, queue: r.queue })),
      ui.typesOpen ? api("GET", queueUrl(r.queue, "types")) : null,
    ]);
    const stats = detail.stats, info = stats.info;
    const head = h("div", { class: "card" },
      h("div", { class: "row spread" },
        h("div", { class: "grow" },
          h("h1", {}, info.queue, " ",
            info.paused ? h("span", { class: "badge badge-warn" }, "paused")
              : h("span", { class: "badge badge-ok" }, "running")),
          h("div", { class: "muted" },
            `latency ${stats.latency ? ago(stats.latency) : "0s"} · memory ~${bytes(stats.memory_bytes)}`
            + ` · processed ${info.processed_today} today / ${info.processed} total`
            + ` · failed ${info.failed_today} today / ${info.failed} total`),
          flowLine(detail.flow), keysLine(detail.keys)),
        config.read_only ? null : h("div", { class: "actions" },
          pauseButton(info.queue, info.paused),
          h("button", { class: "danger", "data-action": "delete-queue", onclick: () => act(
            "DELETE", queueUrl(info.queue), undefined,
            `Delete queue "${info.queue}" and all its tasks? This cannot be undone.`,
            () => { location.hash = "#/queues"; }) }, "Delete queue"))));
    const tabs = h("nav", { class: "tabs" }, STATES.map((s) => h("a", {
      href: queueHash(r, { state: s, page: 1 }),
      class: s === r.state ? "active" : "",
      "data-state": s,
    }, s, h("span", { class: "count" }, String(info[s])))));
    const bulk = config.read_only || !page.total || r.type ? null : h("div", { class: "actions" },
      BULK_ACTIONS[r.state].map((action) => h("button", {
        class: action === "delete" ? "danger" : "",
        "data-bulk": action,
        disabled: ui.bulk ? true : null,
        onclick: () => runBulk(r, info.queue, action, page.total),
      }, BULK_LABEL[action])));
    return h("div", {}, head, h("div", { class: "card" },
      h("div", { class: "row spread" }, tabs, bulk),
      listTools(r, page),
      selectionBar(r, page),
      taskTable(r, page),
      pager(r, page)),
      flowTypesCard(r, detail.flow),
      flowKeysCard(detail.flow),
      shardsCard(stats),
      typesCard(r, types),
      minuteCharts(minutes, info.queue),
      h("div", { class: "card" }, h("div", { class: "row spread" },
        h("h2", {}, "Processed and failed per day"),
        legend([["processed", "processed"], ["failed", "failed"]])), dayChart(detail.history)));
  }

  // A sharded queue's counts per shard (its sub-queues, then its base queue); null if unsharded.
  function shardsCard(stats) {
    if (!stats.shards || !stats.shards.length) return null;
    const base = stats.info.queue;
    const rows = stats.shards.map((part) => {
      const i = part.info;
      return h("tr", { "data-shard": i.queue },
        cell("Shard", { class: "name" }, i.queue === base ? i.queue + " (base)"
          : link("#/queues/" + seg(i.queue), i.queue), " ",
          i.paused ? h("span", { class: "badge badge-warn" }, "paused") : null),
        STATES.map((s) => cell(s, { class: "num" }, String(i[s]))),
        cell("Processed", { class: "num" }, String(i.processed)));
    });
    return h("div", { class: "card", id: "shards" },
      h("h2", {}, `Shards (${stats.shards.length - 1} and the base queue)`),
      h("table", { class: "cards" }, h("thead", {}, h("tr", {},
        h("th", {}, "Shard"),
        STATES.map((s) => h("th", { class: "num" }, s)),
        h("th", { class: "num" }, "Processed"))),
      h("tbody", {}, rows)));
  }

  // The queue's flow limits (rate limit, concurrency cap) and where they stand; null if none.
  function flowLine(flow) {
    const keyed = flow && (flow.key_rate !== null || flow.key_concurrency !== null);
    const typed = flow && flow.types.length > 0;
    const owned = flow && flow.keys ? Object.keys(flow.keys).length : 0;
    if (!flow || (flow.rate === null && flow.concurrency === null && !keyed && !typed && !owned)) {
      return null;
    }
    const parts = [];
    if (flow.rate !== null) {
      parts.push(`rate ${flow.rate} (burst ${flow.burst}), ${flow.tokens} token(s) now`);
    }
    if (flow.concurrency !== null) {
      parts.push(`cap ${flow.concurrency}, ${flow.active} running`
        + (flow.held ? ", tasks waiting for a slot" : ""));
    }
    if (keyed) {
      const each = [];
      if (flow.key_rate !== null) each.push(`rate ${flow.key_rate} (burst ${flow.key_burst})`);
      if (flow.key_concurrency !== null) {
        each.push(`cap ${flow.key_concurrency}` + (flow.key_hold_on_retry ? " held through retries" : ""));
      }
      parts.push(`per key ${each.join(", ")}, ${flow.keys_waiting} key(s) waiting for a token`);
    }
    if (typed) parts.push(`${flow.types.length} task type(s) limited`);
    if (owned) parts.push(`${owned} key(s) with limits of their own`);
    return h("div", { class: "muted", "data-flow": "" }, "flow: " + parts.join(" · "));
  }

  // The queue's limited task types (FlowLimits.types): each one's limits and its lane now;
  // null if it limits none.
  function flowTypesCard(r, flow) {
    if (!flow || !flow.types.length) return null;
    const heads = ["Type", "Rate", "Cap", "Weight", "In lane", "Running", "Tokens", "State",
      "Next token"];
    const rows = flow.types.map((t) => h("tr", { "data-key": "ft:" + t.type, "data-flow-type": t.type },
      cell("Type", { class: "type" }, link(queueHash(r, { type: t.type, page: 1 }), t.type)),
      cell("Rate", {}, t.rate === null ? "none" : `${t.rate} (burst ${t.burst})`),
      cell("Cap", { class: "num" }, t.concurrency === null ? "none" : String(t.concurrency)),
      cell("Weight", { class: "num" }, String(t.weight)),
      cell("In lane", { class: "num" }, String(t.pending)),
      cell("Running", { class: "num" }, String(t.running)),
      cell("Tokens", { class: "num" }, t.tokens === null ? "" : String(t.tokens)),
      cell("State", {}, h("span", { class: t.state === "capped" || t.state === "rate"
        ? "badge badge-warn" : "badge" }, t.state)),
      cell("Next token", {}, when(t.next_token_at))));
    return h("div", { class: "card", id: "flow-types" },
      h("h2", {}, "Task type limits"),
      h("table", { class: "cards" }, h("thead", {}, h("tr", {}, heads.map((name) => h("th", {
        class: ["Cap", "Weight", "In lane", "Running", "Tokens"].includes(name) ? "num" : null },
      name)))),
      h("tbody", {}, rows)),
      h("p", { class: "muted small" }, "A limited type's ready tasks wait in a lane of their "
        + "own (in lane), taking turns with the queue's other tasks. Change the limits with "
        + "rq-sched flow QUEUE --type TYPE --type-rate ... or POST /api/queue/flow."));
  }

  // The keys with limits of their own (FlowLimits.keys) instead of the per-key defaults, with
  // their weights; null if the queue gives none.
  function flowKeysCard(flow) {
    if (!flow || !flow.keys || !Object.keys(flow.keys).length) return null;
    const heads = ["Key", "Rate", "Cap", "Weight"];
    const rows = Object.entries(flow.keys).map(([key, k]) => h("tr", {
      "data-key": "fk:" + key, "data-flow-key": key },
      cell("Key", { class: "name" }, key),
      cell("Rate", {}, k.rate === null ? "none" : `${k.rate} (burst ${k.burst})`),
      cell("Cap", { class: "num" }, k.concurrency === null ? "none" : String(k.concurrency)),
      cell("Weight", { class: "num" }, String(k.weight))));
    return h("div", { class: "card", id: "flow-keys" },
      h("h2", {}, "Keys with limits of their own"),
      h("table", { class: "cards" }, h("thead", {}, h("tr", {}, heads.map((name) => h("th", {
        class: name === "Key" || name === "Rate" ? null : "num" }, name)))),
      h("tbody", {}, rows)),
      h("p", { class: "muted small" }, "These keys have these limits instead of the per-key "
        + "defaults (none: no such limit), and take weight turns of the round robin per turn "
        + "of a weight-1 key. Change them with rq-sched flow QUEUE --for-key KEY "
        + "--for-key-weight N ... or POST /api/queue/flow."));
  }

  // Per-key limits and the busiest fairness keys (enqueue(key=...)); null if the queue has none.
  function keysLine(keys) {
    if (!keys || keys.total === 0) return null;
    const shown = keys.keys.map((k) => `${k.key}: ${k.pending} pending, ${k.running} running`
      + (k.tokens === null ? "" : `, ${k.tokens} token(s)`)
      + (k.state === "ready" ? "" : ` (${k.state})`));
    return h("div", { class: "muted", "data-keys": "" },
      `keys: ${keys.total} with tasks · ` + shown.join(" · "));
  }

  function listTools(r, page) {
    const filter = h("form", { class: "row tools", id: "type-form", onsubmit: (e) => {
      e.preventDefault();
      location.hash = queueHash(r, { type: e.target.elements.type.value.trim(), page: 1 });
    } },
    h("label", { for: "type-filter" }, "Type"),
    h("input", { id: "type-filter", name: "type", value: r.type, placeholder: "any type",
      autocomplete: "off" }),
    h("button", { type: "submit" }, "Filter"),
    r.type ? h("a", { href: queueHash(r, { type: "", page: 1 }) }, "clear") : null);
    const size = h("label", { class: "row tools" }, "Per page ",
      h("select", { id: "page-size", value: r.size,
        onchange: (e) => { location.hash = queueHash(r, { size: Number(e.target.value), page: 1 }); } },
      PAGE_SIZES.map((n) => h("option", { value: n, selected: n === r.size ? true : null }, String(n)))));
    const note = r.type && !page.complete
      ? h("span", { class: "muted small", id: "filter-note" },
        `${page.total} match(es) among the first ${count(page.scanned)} tasks`) : null;
    return h("div", { class: "row spread list-tools" }, filter, note, size);
  }

  function selectionBar(r, page) {
    const ids = page.tasks.map((t) => t.id);
    const chosen = ids.filter((id) => ui.selected.has(id));
    if (config.read_only || !chosen.length) return h("div", { id: "selection", hidden: true });
    return h("div", { id: "selection", class: "row selection" },
      h("strong", { id: "selected-count" }, `${chosen.length} selected`),
      h("div", { class: "actions" }, ROW_ACTIONS[r.state].map((action) => h("button", {
        "data-selection": action,
        class: action === "delete" || action === "cancel" ? "danger" : "",
        onclick: () => actOnSelection(r, action, chosen),
      }, ACTION_LABEL[action] + " selected")),
      h("button", { onclick: () => { ui.selected.clear(); render(); } }, "Clear")));
  }

  async function actOnSelection(r, action, ids) {
    const question = action === "delete" ? `Delete ${ids.length} selected task(s)?`
      : action === "cancel" ? `Cancel ${ids.length} running task(s)? Cancelled tasks are not retried.`
        : null;
    const done = await act("POST", queueUrl(r.queue, "selection"), { action, ids }, question);
    if (done) ids.forEach((id) => ui.selected.delete(id));
  }

  function taskTable(r, page) {
    if (!page.tasks.length) {
      return h("p", { class: "empty" }, r.type ? `No ${r.state} tasks of type ${r.type}.` : `No ${r.state} tasks.`);
    }
    const selectable = !config.read_only;
    const allOn = page.tasks.every((t) => ui.selected.has(t.id));
    const rows = page.tasks.map((t) => h("tr", { "data-task": t.id, "data-key": "t:" + t.id,
      class: ui.selected.has(t.id) ? "selected" : "" },
      selectable ? cell("", { class: "pick" }, h("input", { type: "checkbox", "data-select": t.id,
        "aria-label": "select " + t.id, checked: ui.selected.has(t.id) ? true : null,
        onchange: (e) => { toggle(t.id, e.target.checked); } })) : null,
      cell("ID", { class: "mono id" }, link(taskHash(r.queue, t.id), t.id)),
      cell("Type", { class: "type" }, t.type),
      cell("Payload", { class: "mono preview", title: t.payload_preview }, t.payload_preview),
      cell("Retried", { class: "num" }, `${t.retried}/${t.max_retry}`),
      cell(TIME_LABEL[r.state], {}, when(r.state === "pending" ? t.enqueued_at : t.score_at)),
      cell("Last error", { class: "error-text", title: t.last_error || "" }, t.last_error || ""),
      config.read_only ? null : cell("", { class: "act" }, h("div", { class: "actions" },
        ROW_ACTIONS[r.state].map((action) => actionButton(r.queue, t.id, action))))));
    return h("table", { class: "cards tasks" }, h("thead", {}, h("tr", {},
      selectable ? h("th", {}, h("input", { type: "checkbox", id: "select-page",
        "aria-label": "select every task on this page", checked: allOn ? true : null,
        onchange: (e) => { page.tasks.forEach((t) => toggle(t.id, e.target.checked, true)); render(); } }))
        : null,
      h("th", {}, "ID"), h("th", {}, "Type"), h("th", {}, "Payload"),
      h("th", { class: "num" }, "Retried"), h("th", {}, TIME_LABEL[r.state]),
      h("th", {}, "Last error"), config.read_only ? null : h("th", {}, "Actions"))),
    h("tbody", {}, rows));
  }

  function toggle(id, on, quiet) {
    if (on) ui.selected.add(id); else ui.selected.delete(id);
    if (!quiet) render();
  }

  function actionButton(queue, id, action, after) {
    const method = action === "delete" ? "DELETE" : "POST";
    const url = taskUrl(queue, id, action === "delete" ? "" : action);
    const question = action === "delete" ? `Delete task ${id}?`
      : action === "cancel" ? `Cancel task ${id}? A cancelled task is not retried.` : null;
    return h("button", {
      class: action === "delete" || action === "cancel" ? "danger" : "",
      "data-action": action,
      onclick: () => act(method, url, undefined, question, after),
    }, ACTION_LABEL[action]);
  }

  function pager(r, page) {
    const jump = h("form", { class: "row tools", id: "jump-form", onsubmit: (e) => {
      e.preventDefault();
      const n = Math.min(page.pages, Math.max(1, parseInt(e.target.elements.page.value, 10) || 1));
      location.hash = queueHash(r, { page: n });
    } }, h("label", { for: "jump" }, "Page"),
    h("input", { id: "jump", name: "page", type: "number", min: 1, max: page.pages, value: page.page,
      class: "narrow" }),
    h("button", { type: "submit" }, "Go"));
    return h("div", { class: "pager" },
      h("span", { class: "muted" }, `Page ${page.page} of ${count(page.pages)} · ${count(page.total)} task(s)`),
      jump,
      h("a", { href: queueHash(r, { page: page.page - 1 }), class: page.page <= 1 ? "disabled" : "",
        "data-pager": "prev" }, "← Previous"),
      h("a", { href: queueHash(r, { page: page.page + 1 }), class: page.page >= page.pages ? "disabled" : "",
        "data-pager": "next" }, "Next →"));
  }

  // A bulk action as a series of bounded requests, with progress and a Stop button; the page
  // keeps refreshing meanwhile.
  async function runBulk(r, queue, action, total) {
    if (!window.confirm(`${BULK_LABEL[action]}: all ${total} ${r.state} task(s) in "${queue}"?`)) return;
    const run = { done: 0, skipped: 0, stop: false };
    ui.bulk = run;
    const box = document.getElementById("progress");
    const bar = h("progress", { max: total, value: 0 });
    const text = h("span", {}, "starting…");
    box.replaceChildren(h("strong", {}, BULK_LABEL[action], ` (${r.state}, ${queue}) `), bar, text,
      h("button", { id: "bulk-stop", onclick: () => { run.stop = true; } }, "Stop"));
    box.hidden = false;
    render();
    try {
      for (;;) {
        const step = await api("POST", queueUrl(queue, "bulk"), { state: r.state, action, limit: BULK_STEP });
        run.done += step.done;
        run.skipped += step.skipped;
        bar.value = Math.min(total, run.done + run.skipped);
        text.textContent = ` ${count(run.done)} done · ${count(step.remaining)} left`;
        if (!step.remaining || !step.done || run.stop) break;
      }
      notice(`${action}: ${run.done} task(s) done, ${run.skipped} skipped` + (run.stop ? " (stopped)" : ""), "ok");
    } catch (err) {
      if (err.status !== 401) notice(`${action} stopped after ${run.done} task(s): ${err.message}`, "bad");
    } finally {
      ui.bulk = null;
      box.hidden = true;
      await render();
    }
  }

  function typesCard(r, types) {
    const body = !types ? h("p", { class: "muted" }, "Open to count tasks per type.")
      : h("table", { class: "cards", id: "types-table" }, h("thead", {}, h("tr", {},
          h("th", {}, "Type"), STATES.map((s) => h("th", { class: "num" }, s)),
          h("th", { class: "num" }, "Failing"))),
        h("tbody", {}, Object.entries(types.types).sort().map(([type, by]) => {
          const all = STATES.reduce((n, s) => n + (by[s] || 0), 0);
          const failing = (by.retry || 0) + (by.archived || 0);
          return h("tr", { "data-key": "ty:" + type, "data-type": type },
            cell("Type", { class: "type" }, link(queueHash(r, { type, page: 1 }), type)),
            STATES.map((s) => cell(s, { class: "num" }, String(by[s] || 0))),
            cell("Failing", { class: "num" }, all ? Math.round((100 * failing) / all) + "%" : ""));
        })));
    const partial = types && STATES.some((s) => types.sampled[s] < types.totals[s])
      ? h("p", { class: "muted small" }, "Counted over the first "
        + STATES.map((s) => `${count(types.sampled[s])} of ${count(types.totals[s])} ${s}`).join(", ")
        + ". Failing = retry + archived.") : null;
    return h("details", { class: "card", id: "types", open: ui.typesOpen ? true : null,
      ontoggle: (e) => { if (ui.typesOpen !== e.target.open) { ui.typesOpen = e.target.open; render(); } } },
    h("summary", {}, h("h2", { class: "inline" }, "Task types")), body, partial);
  }

  // ---- one task -----------------------------------------------------------------------------

  async function taskPage(r) {
    let t;
    try {
      t = await api("GET", taskUrl(r.queue, r.id));
    } catch (err) {
      if (err.status !== 404) throw err;
      return h("div", { class: "card" }, h("h2", {}, "Task not found"),
        h("p", {}, err.message, " ", link("#/queues/" + seg(r.queue), "Back to the queue")));
    }
    const fields = [
      ["ID", h("span", { class: "mono" }, t.id)],
      ["Queue", link("#/queues/" + seg(t.queue) + "/" + t.state, t.queue)],
      ["Type", t.type], ["State", h("span", { class: "badge", "data-state": t.state }, t.state)],
      ["Attempts", `${t.retry_count + (t.state === "active" ? 1 : 0)} so far; retried ${t.retry_count} of ${t.max_retry}`],
      ["Enqueued", whenFull(t.enqueued_at)],
      ["Next run", whenFull(t.next_process_at)], ["Lease ends", whenFull(t.lease_expires_at)],
      ["Progress", t.progress ? h("span", { id: "task-progress" },
        JSON.stringify(t.progress.value) + (t.progress.message ? " · " + t.progress.message : ""),
        " (", whenFull(t.progress.reported_at), ")") : ""],
      ["Kept until", whenFull(t.expires_at)], ["Last failed", whenFull(t.last_failed_at)],
      ["Timeout", t.timeout ? t.timeout + "s" : ""], ["Deadline", whenFull(t.deadline)],
      ["Unique", t.unique ? "yes" : ""], ["Lost leases", t.lost_count || ""],
      ["Headers", t.headers && Object.keys(t.headers).length ? JSON.stringify(t.headers) : ""],
    ].filter(([, v]) => v !== "" && v !== null && v !== undefined);
    const back = () => { location.hash = "#/queues/" + seg(t.queue) + "/" + t.state; };
    const actions = config.read_only ? null : h("div", { class: "actions" },
      ROW_ACTIONS[t.state].map((a) => actionButton(t.queue, t.id, a, a === "delete" ? back : null)));
    return h("div", {},
      h("div", { class: "card" },
        h("div", { class: "row spread" }, h("h1", { class: "mono" }, t.id), actions),
        h("dl", { class: "fields" }, fields.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      h("div", { class: "card" }, h("h2", {}, "Payload"), h("pre", { id: "payload" }, t.payload_text)),
      t.last_error ? h("div", { class: "card", id: "errors" },
        h("h2", {}, `Error of attempt ${t.retry_count}`, t.last_failed_at ? [" · ", whenFull(t.last_failed_at)] : ""),
        h("pre", { class: "error", id: "last-error" }, t.last_error),
        earlierErrors(t)) : null,
      t.result_text !== null ? h("div", { class: "card" }, h("h2", {}, "Result"),
        h("pre", { id: "result" }, t.result_text)) : null,
      parentsCard(t));
  }

  function parentsCard(t) {
    // Workflow links: the tasks this one waited for (a chain's previous link, a group's members).
    if (!t.parents || !t.parents.length) return null;
    return h("div", { class: "card", id: "parents" },
      h("h2", {}, `Waited for ${t.parents.length} task(s)`),
      h("ol", {}, t.parents.map((p) => h("li", { class: "parent", "data-outcome": p.outcome },
        link(taskHash(p.queue, p.id), h("span", { class: "mono" }, p.queue + "/" + p.id)),
        " · ", h("span", { class: "badge", "data-state": p.outcome === "completed" ? "completed" : "archived" }, p.outcome),
        p.error ? h("pre", { class: "error" }, p.error) : null))));
  }

  function earlierErrors(t) {
    // Every attempt error kept with the task (the last one is shown above in full).
    const earlier = (t.errors || []).slice(0, -1).reverse();
    if (!earlier.length) return null;
    const dropped = t.retry_count - (t.errors || []).length;
    return h("div", { id: "earlier-errors" },
      h("h3", {}, "Earlier attempts"),
      earlier.map((e) => h("div", { class: "attempt-error", "data-attempt": e.attempt },
        h("p", { class: "muted small" }, `Attempt ${e.attempt}`, e.failed_at ? [" · ", whenFull(e.failed_at)] : ""),
        h("pre", { class: "error" }, e.error))),
      dropped > 0 ? h("p", { class: "muted small" },
        `${dropped} older attempt error(s) not kept (a task keeps its last ${t.errors.length}).`) : null);
  }

  // ---- search, servers, scheduler, redis -------------------------------------------------------

  async function searchPage(r) {
    if (!r.id) return h("div", { class: "card" }, h("p", { class: "muted" }, "Type a task id in the search box."));
    const found = await api("GET", apiUrl("/api/search", { id: r.id }));
    if (found.length === 1) {
      location.replace(taskHash(found[0].queue, found[0].id));
      return h("div", {});
    }
    return h("div", { class: "card", id: "search-results" },
      h("h2", {}, `Tasks with id "${r.id}"`),
      found.length ? h("table", { class: "cards" }, h("thead", {}, h("tr", {},
        ["Queue", "State", "Type", "Task"].map((c) => h("th", {}, c)))),
      h("tbody", {}, found.map((t) => h("tr", { "data-key": "s:" + t.queue },
        cell("Queue", {}, link("#/queues/" + seg(t.queue), t.queue)),
        cell("State", {}, h("span", { class: "badge" }, t.state)), cell("Type", {}, t.type),
        cell("Task", { class: "mono id" }, link(taskHash(t.queue, t.id), t.id))))))
        : h("p", { class: "empty" }, "No queue holds a task with this id (it may have been deleted or trimmed)."));
  }

  async function serversPage() {
    const servers = await api("GET", "/api/servers");
    if (!servers.length) {
      return h("div", { class: "card" }, h("h2", {}, "Servers"),
        h("p", { class: "empty" }, "No live worker servers."));
    }
    return h("div", {}, servers.map((s) => {
      const i = s.info;
      const queues = Object.entries(i.queues).map(([q, w]) => `${q} (${w})`).join(", ");
      const workers = s.workers.length
        ? h("table", { class: "cards" }, h("thead", {}, h("tr", {}, h("th", {}, "Task"), h("th", {}, "Type"),
            h("th", {}, "Queue"), h("th", {}, "Started"), h("th", {}, "Deadline"))),
          h("tbody", {}, s.workers.map((w) => h("tr", { "data-key": "w:" + w.queue + "\n" + w.task_id },
            cell("Task", { class: "mono id" }, link(taskHash(w.queue, w.task_id), w.task_id)),
            cell("Type", {}, w.task_type), cell("Queue", {}, w.queue),
            cell("Started", {}, when(w.started_at)), cell("Deadline", {}, when(w.deadline))))))
        : h("p", { class: "muted" }, "Idle.");
      return h("div", { class: "card", "data-server": i.id, "data-key": "srv:" + i.id },
        h("div", { class: "row spread" },
          h("h2", {}, i.host, " · pid ", String(i.pid), " ",
            h("span", { class: i.status === "running" ? "badge badge-ok" : "badge badge-warn" },
              i.status)),
          h("span", { class: "muted mono id" }, i.id)),
        h("p", { class: "muted" },
          `queues ${queues}${i.strict_priority ? " (strict)" : ""} · ${i.active}/${i.concurrency} busy`
          + ` · processed ${i.processed} · failed ${i.failed} · up `, when(i.started_at)),
        workers);
    }));
  }

  function outcomeBadge(outcome) {
    const cls = outcome === "completed" ? "badge badge-ok"
      : outcome === "archived" || outcome === "error" ? "badge badge-bad"
        : outcome === "retry" || outcome === "gone" || outcome === "skipped" ? "badge badge-warn" : "badge";
    return h("span", { class: cls, "data-outcome": outcome }, outcome);
  }

  async function schedulerPage(r) {
    const status = await api("GET", "/api/scheduler?history=" + (r.entry ? 100 : 5));
    const entries = r.entry ? status.entries.filter((e) => e.info.id === r.entry) : status.entries;
    const rows = entries.map((e) => h("tr", { "data-key": "e:" + e.info.id },
      cell("Name", {}, link("#/scheduler/" + seg(e.info.id), e.info.name),
        e.paused ? [" ", h("span", { class: "badge badge-warn", "data-paused": "" }, "paused")] : null),
      cell("Spec", { class: "mono" }, e.info.spec), cell("Type", { class: "type" }, e.info.type),
      cell("Queue", {}, link("#/queues/" + seg(e.info.queue), e.info.queue)),
      cell("Next fire", {}, when(e.info.next_fire)), cell("Previous fire", {}, when(e.info.prev_fire)),
      cell("Last outcomes", {}, (e.outcomes || []).slice(0, 5).map(outcomeBadge)),
      cell("Zone", {}, e.info.timezone),
      cell("Payload", { class: "mono preview" }, e.info.payload_preview),
      config.read_only ? null : cell("", { class: "act" }, h("button", { "data-run-entry": e.info.id,
        onclick: () => act("POST", apiUrl("/api/scheduler/run", { entry: e.info.id })) }, "Run now"),
        " ", h("button", { "data-pause-entry": e.info.id,
          onclick: () => act("POST", apiUrl(e.paused ? "/api/scheduler/resume" : "/api/scheduler/pause",
            { entry: e.info.id })) }, e.paused ? "Resume" : "Pause"))));
    const table = entries.length
      ? h("table", { class: "cards" }, h("thead", {}, h("tr", {}, ["Name", "Spec", "Type", "Queue",
          "Next fire", "Previous fire", "Last outcomes", "Zone", "Payload"].map((c) => h("th", {}, c)),
          config.read_only ? null : h("th", {}, ""))),
        h("tbody", {}, rows))
      : h("p", { class: "empty" }, r.entry ? "No such entry." : "No periodic entries.");
    const history = entries.length === 1 || r.entry ? entries.map((e) => h("div", { class: "card" },
      h("h2", {}, "Recent fires of ", e.info.name),
      h("table", { class: "cards", id: "fires" }, h("thead", {}, h("tr", {}, ["Fire time", "Enqueued",
        "Task", "Outcome", "Error"].map((c) => h("th", {}, c)))),
      h("tbody", {}, e.history.map((f, n) => h("tr", { "data-key": "f:" + f.fire_time + f.task_id },
        cell("Fire time", {}, whenFull(f.fire_time)),
        cell("Enqueued", {}, when(f.enqueued_at)),
        cell("Task", { class: "mono id" }, f.task_id ? link(taskHash(f.queue, f.task_id), f.task_id) : ""),
        cell("Outcome", {}, outcomeBadge((e.outcomes || [])[n] || "unknown")),
        cell("Error", { class: "error-text" }, f.error || (f.skipped ? "entry paused: nothing enqueued" : "")))))))) : null;
    return h("div", {}, h("div", { class: "card" },
      h("div", { class: "row spread" }, h("h2", {}, "Periodic entries"),
        h("span", { class: "muted" }, `${status.instances.length} scheduler instance(s) live`)),
      table), history);
  }

  async function redisPage() {
    const nodes = await api("GET", "/api/redis");
    return h("div", {}, nodes.map((n) => h("div", { class: "card", "data-key": "n:" + n.address },
      h("h2", {}, "Redis ", n.address),
      h("dl", { class: "fields" },
        Object.entries(n.info).map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, v)])))));
  }

  async function badLinkPage(r) {
    return h("div", { class: "card", id: "bad-link" }, h("h2", {}, "This link is malformed"),
      h("p", {}, "The address after # is not valid percent-encoding: ", h("code", {}, r.hash)),
      h("p", {}, link("#/queues", "Go to the queues")));
  }

  // ---- sign-in, start-up, auto-refresh ----------------------------------------------------

  // rejected: a token was sent and refused (else none was sent yet).
  function showLogin(rejected) {
    sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("main").hidden = true;
    document.getElementById("login").hidden = false;
    const reason = document.getElementById("login-reason");
    reason.textContent = rejected
      ? "That token was not accepted. Check it (it is the --auth-token the server was started"
        + " with) and try again."
      : "This dashboard requires an access token.";
    reason.className = rejected ? "error-text" : "muted";
    document.getElementById("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    await start();
  }

  function search(event) {
    event.preventDefault();
    const id = document.getElementById("search-id").value.trim();
    if (id) location.hash = "#/search?id=" + encodeURIComponent(id);
  }

  async function start() {
    try {
      config = await api("GET", "/api/config");
    } catch (err) {
      if (err.status !== 401) notice(err.message, "bad");
      return;
    }
    document.getElementById("mode").hidden = !config.read_only;
    await render();
  }

  function tick() {
    const auto = document.getElementById("auto-refresh");
    const loginOpen = !document.getElementById("login").hidden;
    if (auto.checked && !busy && !loginOpen && document.visibilityState === "visible") render();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("login-form").addEventListener("submit", signIn);
    document.getElementById("search").addEventListener("submit", search);
    window.addEventListener("hashchange", render);
    setInterval(tick, REFRESH_MS);
    start();
  });
})();
