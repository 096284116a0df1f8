// rq-sched dashboard: a single page over the JSON API under /api. Plain JS, no build step.
//
// Safety rule: everything that comes from the API (queue names, task ids, types, payloads,
// errors) is user data. It is only ever put in the page as text nodes (h() below); nothing here
// parses strings as HTML, and the server's Content-Security-Policy forbids inline script.
"use strict";

(() => {
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
  const PAGE_SIZE = 20;
  const REFRESH_MS = 3000;
  const TOKEN_KEY = "rq-sched-token";

  let config = { read_only: false, auth: false };
  let renderSeq = 0;
  let busy = false;

  // ---- DOM helpers: text only -------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
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

  // ---- formatting -------------------------------------------------------------------------

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

  function when(iso) {
    if (!iso) return "";
    const t = new Date(iso);
    const delta = (t.getTime() - Date.now()) / 1000;
    const rel = Math.abs(delta) < 1 ? "now" : delta > 0 ? "in " + ago(delta) : ago(delta) + " ago";
    return h("span", { title: t.toISOString() }, rel);
  }

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
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
    const resp = await fetch(path, init);
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
    if (result.action !== undefined && result.done !== undefined) {
      return result.action + ": " + result.done + " task(s) done, " + result.skipped + " skipped";
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
    if (parts[0] === "queues" && parts[1] !== undefined) {
      if (parts[2] === "tasks" && parts[3] !== undefined) {
        return { name: "task", queue: parts[1], id: parts.slice(3).join("/") };
      }
      const state = STATES.includes(parts[2]) ? parts[2] : "pending";
      return { name: "queue", queue: parts[1], state, page };
    }
    if (parts[0] === "servers") return { name: "servers" };
    if (parts[0] === "scheduler") return { name: "scheduler", entry: parts[1] };
    if (parts[0] === "redis") return { name: "redis" };
    return { name: "queues" };
  }

  const PAGES = { queues: queuesPage, queue: queuePage, task: taskPage, servers: serversPage,
    scheduler: schedulerPage, redis: redisPage, "bad-link": badLinkPage };

  async function badLinkPage(r) {
    return h("div", { class: "card", id: "bad-link" }, h("h2", {}, "This link is malformed"),
      h("p", {}, "The address after # is not valid percent-encoding: ", h("code", {}, r.hash)),
      h("p", {}, link("#/queues", "Go to the queues")));
  }

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
    document.getElementById("main").replaceChildren(content);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  // ---- pages ------------------------------------------------------------------------------

  async function queuesPage() {
    const [queues, history] = await Promise.all([
      api("GET", "/api/queues"),
      api("GET", "/api/stats/history?days=14"),
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
      return h("tr", { "data-queue": i.queue },
        h("td", {}, link("#/queues/" + seg(i.queue), i.queue), " ",
          i.paused ? h("span", { class: "badge badge-warn" }, "paused") : null),
        STATES.map((s) => h("td", { class: "num" },
          link("#/queues/" + seg(i.queue) + "/" + s, String(i[s])))),
        h("td", { class: "num" }, q.latency ? ago(q.latency) : "0s"),
        h("td", { class: "num" }, String(i.processed_today)),
        h("td", { class: "num" }, String(i.failed_today)),
        config.read_only ? null : h("td", {}, pauseButton(i.queue, i.paused)));
    });
    const table = queues.length
      ? h("table", {}, h("thead", {}, h("tr", {},
          h("th", {}, "Queue"),
          STATES.map((s) => h("th", { class: "num" }, s)),
          h("th", { class: "num" }, "Latency"),
          h("th", { class: "num" }, "Done today"),
          h("th", { class: "num" }, "Failed today"),
          config.read_only ? null : h("th", {}, ""))),
        h("tbody", {}, rows))
      : h("p", { class: "empty" }, "No queues yet. A queue appears when its first task is enqueued.");
    return h("div", {}, tiles,
      h("div", { class: "card" }, h("div", { class: "row spread" },
        h("h2", {}, "Processed and failed, last 14 days"), legend()), chart(history)),
      h("div", { class: "card" }, h("h2", {}, "Queues"), table));
  }

  function tile(label, value) {
    return h("div", { class: "tile" }, h("div", { class: "num" }, String(value)),
      h("div", { class: "label" }, label));
  }

  function pauseButton(queue, paused) {
    const action = paused ? "unpause" : "pause";
    return h("button", {
      "data-action": action,
      onclick: () => act("POST", queueUrl(queue, action)),
    }, paused ? "Resume" : "Pause");
  }

  function legend() {
    return h("div", { class: "legend" },
      h("span", {}, h("span", { class: "swatch processed" }), "processed"),
      h("span", {}, h("span", { class: "swatch failed" }), "failed"));
  }

  function chart(days) {
    const width = 1200, height = 200, left = 40, bottom = 22, top = 10;
    const max = Math.max(1, ...days.map((d) => Math.max(d.processed, d.failed)));
    const slot = (width - left) / Math.max(1, days.length);
    const bar = Math.max(2, slot * 0.35);
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
      "aria-label": "processed and failed per day" });
    root.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom,
      class: "axis" }));
    root.append(svg("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, String(max)));
    root.append(svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, "0"));
    days.forEach((d, i) => {
      const x = left + i * slot + slot * 0.12;
      for (const [kind, value, dx] of [["processed", d.processed, 0], ["failed", d.failed, bar]]) {
        const rect = svg("rect", { x: x + dx, y: y(value), width: bar,
          height: Math.max(0, height - bottom - y(value)), class: kind });
        rect.append(svg("title", {}, `${d.day}: ${value} ${kind}`));
        root.append(rect);
      }
      if (days.length <= 16 || i % 2 === 0) {
        root.append(svg("text", { x: x + bar, y: height - 6, "text-anchor": "middle" },
          d.day.slice(5)));
      }
    });
    return root;
  }

  async function queuePage(r) {
    const [detail, page] = await Promise.all([
      api("GET", queueUrl(r.queue, "", { days: 14 })),
      api("GET", queueUrl(r.queue, "tasks", { state: r.state, page: r.page, size: PAGE_SIZE })),
    ]);
    const stats = detail.stats, info = stats.info;
    const head = h("div", { class: "card" },
      h("div", { class: "row spread" },
        h("div", {},
          h("h1", {}, info.queue, " ",
            info.paused ? h("span", { class: "badge badge-warn" }, "paused")
              : h("span", { class: "badge badge-ok" }, "running")),
          h("div", { class: "muted" },
            `latency ${stats.latency ? ago(stats.latency) : "0s"} · memory ~${bytes(stats.memory_bytes)}`
            + ` · processed ${info.processed_today} today / ${info.processed} total`
            + ` · failed ${info.failed_today} today / ${info.failed} total`)),
        config.read_only ? null : h("div", { class: "actions" },
          pauseButton(info.queue, info.paused),
          h("button", { class: "danger", "data-action": "delete-queue", onclick: () => act(
            "DELETE", queueUrl(info.queue), undefined,
            `Delete queue "${info.queue}" and all its tasks? This cannot be undone.`,
            () => { location.hash = "#/queues"; }) }, "Delete queue"))),
      chart(detail.history));
    const tabs = h("nav", { class: "tabs" }, STATES.map((s) => h("a", {
      href: "#/queues/" + seg(r.queue) + "/" + s,
      class: s === r.state ? "active" : "",
      "data-state": s,
    }, s, h("span", { class: "count" }, String(info[s])))));
    const bulk = config.read_only || !page.total ? null : h("div", { class: "actions" },
      BULK_ACTIONS[r.state].map((action) => h("button", {
        class: action === "delete" ? "danger" : "",
        "data-bulk": action,
        onclick: () => act("POST", queueUrl(r.queue, "bulk"), { state: r.state, action },
          `${BULK_LABEL[action]}: all ${page.total} ${r.state} task(s) in "${info.queue}"?`),
      }, BULK_LABEL[action])));
    return h("div", {}, head, h("div", { class: "card" },
      h("div", { class: "row spread" }, tabs, bulk),
      taskTable(r, page),
      pager(r, page)));
  }

  function taskTable(r, page) {
    if (!page.tasks.length) return h("p", { class: "empty" }, `No ${r.state} tasks.`);
    const rows = page.tasks.map((t) => h("tr", { "data-task": t.id },
      h("td", { class: "mono" }, link("#/queues/" + seg(r.queue) + "/tasks/" + seg(t.id), t.id)),
      h("td", {}, t.type),
      h("td", { class: "mono preview", title: t.payload_preview }, t.payload_preview),
      h("td", { class: "num" }, `${t.retried}/${t.max_retry}`),
      h("td", {}, when(r.state === "pending" ? t.enqueued_at : t.score_at)),
      h("td", { class: "error-text", title: t.last_error || "" }, t.last_error || ""),
      config.read_only ? null : h("td", {}, h("div", { class: "actions" },
        ROW_ACTIONS[r.state].map((action) => actionButton(r.queue, t.id, action))))));
    return h("table", {}, h("thead", {}, h("tr", {},
      h("th", {}, "ID"), h("th", {}, "Type"), h("th", {}, "Payload"),
      h("th", { class: "num" }, "Retried"), h("th", {}, TIME_LABEL[r.state]),
      h("th", {}, "Last error"), config.read_only ? null : h("th", {}, "Actions"))),
    h("tbody", {}, rows));
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
    const href = (n) => `#/queues/${seg(r.queue)}/${r.state}?page=${n}`;
    return h("div", { class: "pager" },
      h("span", { class: "muted" }, `Page ${page.page} of ${page.pages} · ${page.total} task(s)`),
      h("a", { href: href(page.page - 1), class: page.page <= 1 ? "disabled" : "",
        "data-pager": "prev" }, "← Previous"),
      h("a", { href: href(page.page + 1), class: page.page >= page.pages ? "disabled" : "",
        "data-pager": "next" }, "Next →"));
  }

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
      ["ID", t.id], ["Queue", link("#/queues/" + seg(t.queue) + "/" + t.state, t.queue)],
      ["Type", t.type], ["State", h("span", { class: "badge", "data-state": t.state }, t.state)],
      ["Retried", `${t.retry_count} of ${t.max_retry}`], ["Enqueued", when(t.enqueued_at)],
      ["Next run", when(t.next_process_at)], ["Lease ends", when(t.lease_expires_at)],
      ["Kept until", when(t.expires_at)], ["Last failed", when(t.last_failed_at)],
      ["Timeout", t.timeout ? t.timeout + "s" : ""], ["Deadline", when(t.deadline)],
      ["Unique", t.unique ? "yes" : ""], ["Lost leases", t.lost_count || ""],
      ["Headers", Object.keys(t.headers).length ? JSON.stringify(t.headers) : ""],
    ].filter(([, v]) => v !== "" && v !== null && v !== undefined);
    const back = () => { location.hash = "#/queues/" + seg(t.queue) + "/" + t.state; };
    const actions = config.read_only ? null : h("div", { class: "actions" },
      ROW_ACTIONS[t.state].map((a) => actionButton(t.queue, t.id, a, a === "delete" ? back : null)));
    return h("div", {},
      h("div", { class: "card" },
        h("div", { class: "row spread" }, h("h1", { class: "mono" }, t.id), actions),
        h("dl", { class: "fields" }, fields.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      h("div", { class: "card" }, h("h2", {}, "Payload"), h("pre", { id: "payload" }, t.payload_text)),
      t.last_error ? h("div", { class: "card" }, h("h2", {}, "Last error"),
        h("pre", { class: "error", id: "last-error" }, t.last_error)) : null,
      t.result_text !== null ? h("div", { class: "card" }, h("h2", {}, "Result"),
        h("pre", { id: "result" }, t.result_text)) : null);
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
        ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Task"), h("th", {}, "Type"),
            h("th", {}, "Queue"), h("th", {}, "Started"), h("th", {}, "Deadline"))),
          h("tbody", {}, s.workers.map((w) => h("tr", {},
            h("td", { class: "mono" },
              link("#/queues/" + seg(w.queue) + "/tasks/" + seg(w.task_id), w.task_id)),
            h("td", {}, w.task_type), h("td", {}, w.queue),
            h("td", {}, when(w.started_at)), h("td", {}, when(w.deadline))))))
        : h("p", { class: "muted" }, "Idle.");
      return h("div", { class: "card", "data-server": i.id },
        h("div", { class: "row spread" },
          h("h2", {}, i.host, " · pid ", String(i.pid), " ",
            h("span", { class: i.status === "running" ? "badge badge-ok" : "badge badge-warn" },
              i.status)),
          h("span", { class: "muted mono" }, i.id)),
        h("p", { class: "muted" },
          `queues ${queues}${i.strict_priority ? " (strict)" : ""} · ${i.active}/${i.concurrency} busy`
          + ` · processed ${i.processed} · failed ${i.failed} · up `, when(i.started_at)),
        workers);
    }));
  }

  async function schedulerPage(r) {
    const status = await api("GET", "/api/scheduler?history=" + (r.entry ? 100 : 5));
    const entries = r.entry ? status.entries.filter((e) => e.info.id === r.entry) : status.entries;
    const rows = entries.map((e) => h("tr", {},
      h("td", {}, link("#/scheduler/" + seg(e.info.id), e.info.name)),
      h("td", { class: "mono" }, e.info.spec), h("td", {}, e.info.type),
      h("td", {}, link("#/queues/" + seg(e.info.queue), e.info.queue)),
      h("td", {}, when(e.info.next_fire)), h("td", {}, when(e.info.prev_fire)),
      h("td", {}, e.info.timezone), h("td", { class: "mono preview" }, e.info.payload_preview)));
    const table = entries.length
      ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Spec", "Type", "Queue", "Next fire",
          "Previous fire", "Zone", "Payload"].map((c) => h("th", {}, c)))), h("tbody", {}, rows))
      : h("p", { class: "empty" }, r.entry ? "No such entry." : "No periodic entries.");
    const history = entries.length === 1 || r.entry ? entries.map((e) => h("div", { class: "card" },
      h("h2", {}, "Recent fires of ", e.info.name),
      h("table", {}, h("thead", {}, h("tr", {}, ["Fire time", "Enqueued", "Task", "Error"]
        .map((c) => h("th", {}, c)))),
      h("tbody", {}, e.history.map((f) => h("tr", {}, h("td", {}, when(f.fire_time)),
        h("td", {}, when(f.enqueued_at)),
        h("td", { class: "mono" }, link("#/queues/" + seg(f.queue) + "/tasks/" + seg(f.task_id),
          f.task_id)),
        h("td", { class: "error-text" }, f.error || ""))))))) : null;
    return h("div", {}, h("div", { class: "card" },
      h("div", { class: "row spread" }, h("h2", {}, "Periodic entries"),
        h("span", { class: "muted" }, `${status.instances.length} scheduler instance(s) live`)),
      table), history);
  }

  async function redisPage() {
    const nodes = await api("GET", "/api/redis");
    return h("div", {}, nodes.map((n) => h("div", { class: "card" },
      h("h2", {}, "Redis ", n.address),
      h("dl", { class: "fields" },
        Object.entries(n.info).map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, v)])))));
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
    window.addEventListener("hashchange", render);
    setInterval(tick, REFRESH_MS);
    start();
  });
})();
