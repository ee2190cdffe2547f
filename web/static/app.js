// tracebox UI: small, hand-written, no dependencies. User data is only ever inserted as text
// (textContent / attribute values), never as HTML; page data arrives in JSON islands.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // ---- formatting (mirrors web/format.py) ----
  function duration(us) {
    if (us === null || us === undefined) return "–";
    if (us < 1000) return Math.round(us) + "µs";
    if (us < 1e6) { const ms = us / 1000; return (ms < 100 ? +ms.toPrecision(3) : Math.round(ms)) + "ms"; }
    if (us < 6e7) return +(us / 1e6).toPrecision(3) + "s";
    const s = Math.floor(us / 1e6); return Math.floor(s / 60) + "m " + (s % 60) + "s";
  }
  function usd(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "$0";
    if (v < 0.0001) return "$" + v.toPrecision(2);
    if (v < 0.01) return "$" + v.toFixed(4);
    return "$" + v.toFixed(2);
  }
  function num(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"); }
  function show(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  const HEX = /^[0-9a-f]{1,32}$/;

  // ---- waterfall ----
  function initTrace() {
    const island = $("#trace-data");
    const container = $("#rows");
    if (!island || !container) return;
    const data = JSON.parse(island.textContent);
    const rows = Array.from(container.children);
    const depth = rows.map((r) => +r.dataset.d);
    const detail = $("#detail");
    let selected = null;

    function collapse(i) {
      rows[i].classList.add("col");
      for (let j = i + 1; j < rows.length && depth[j] > depth[i]; j++) rows[j].classList.add("hid");
    }
    function expand(i) {
      rows[i].classList.remove("col");
      let skip = Infinity;
      for (let j = i + 1; j < rows.length && depth[j] > depth[i]; j++) {
        if (depth[j] > skip) { rows[j].classList.add("hid"); continue; }
        skip = Infinity;
        rows[j].classList.remove("hid");
        if (rows[j].classList.contains("col")) skip = depth[j];
      }
    }
    function reveal(i) {
      // expand every collapsed ancestor of row i
      let d = depth[i];
      const ancestors = [];
      for (let j = i - 1; j >= 0 && d > 0; j--) if (depth[j] < d) { ancestors.push(j); d = depth[j]; }
      for (const j of ancestors.reverse()) if (rows[j].classList.contains("col")) expand(j);
    }

    container.addEventListener("click", (event) => {
      const row = event.target.closest(".row");
      if (!row) return;
      const i = +row.dataset.i;
      if (event.target.closest("button.tg")) {
        if (row.classList.contains("col")) expand(i); else collapse(i);
        return;
      }
      select(i, true);
    });
    document.addEventListener("click", (event) => {
      const action = event.target.closest("[data-action]");
      if (!action) return;
      if (action.dataset.action === "expand-all") rows.forEach((r) => r.classList.remove("col", "hid"));
      if (action.dataset.action === "collapse-all") {
        rows.forEach((r, i) => {
          if (r.querySelector("button.tg")) r.classList.add("col");
          if (depth[i] > 0) r.classList.add("hid");
        });
      }
      if (action.dataset.action === "close-detail") unselect();
      if (action.dataset.action === "highlight") highlight(action);
    });

    // a finding of the insights panel: light up its spans, open their subtrees, scroll to the first
    function highlight(button) {
      const on = !button.classList.contains("on");
      document.querySelectorAll("[data-action=highlight].on").forEach((b) => b.classList.remove("on"));
      rows.forEach((r) => r.classList.remove("hl"));
      if (!on) return;
      button.classList.add("on");
      const picked = (button.dataset.rows || "").split(" ").filter(Boolean).map(Number);
      for (const i of picked) { reveal(i); rows[i].classList.add("hl"); }
      if (picked.length) rows[picked[0]].scrollIntoView({ block: "center" });
    }

    function unselect() {
      if (selected !== null) rows[selected].classList.remove("sel");
      selected = null;
      detail.replaceChildren(el("p", { class: "muted" }, "Select a span to see its tags, events, resource and links."));
      history.replaceState(null, "", location.pathname + location.search);
    }

    function select(i, updateHash) {
      if (selected !== null) rows[selected].classList.remove("sel");
      selected = i;
      rows[i].classList.add("sel");
      renderDetail(data.rows[i], i);
      if (updateHash) history.replaceState(null, "", "#span-" + data.rows[i].spans[0].id);
    }

    function table(entries, valueClass) {
      const body = el("tbody");
      for (const [k, v] of entries) body.append(el("tr", {}, el("td", {}, k), el("td", { class: valueClass || "v" }, v)));
      return el("table", {}, body);
    }

    function renderDetail(row, i) {
      const first = row.spans[0];
      const last = row.spans[row.spans.length - 1];
      const service = (s) => (s.localEndpoint && s.localEndpoint.serviceName) || "unknown";
      const parts = [
        el("button", { type: "button", class: "close", "data-action": "close-detail", "aria-label": "Close" }, "×"),
        el("h2", {}, service(last) + ": " + (last.name || first.name || "")),
      ];
      const facts = [
        ["Span id", first.id],
        ["Parent id", first.parentId || "none (root)"],
        ["Kind", row.spans.map((s) => s.kind || (s.otel && s.otel.kind) || "local").join(" + ")],
        ["Start", "+" + duration(row.start)],
        ["Duration", duration(first.duration !== undefined ? first.duration : last.duration)],
      ];
      if (first.remoteEndpoint) facts.push(["Remote", endpoint(first.remoteEndpoint)]);
      if (first.localEndpoint) facts.push(["Local", endpoint(first.localEndpoint)]);
      parts.push(table(facts));
      if (row.critical) parts.push(el("p", { class: "crit-note" }, "On the critical path"));

      if (row.llm) {
        const l = row.llm;
        const llmRows = [
          ["Model", l.response_model || l.request_model || "–"],
          ["Provider", l.provider || "–"],
          ["Input tokens", num(l.input_tokens)],
          ["Output tokens", num(l.output_tokens)],
        ];
        if (l.cache_read_tokens) llmRows.push(["Cache read tokens", num(l.cache_read_tokens)]);
        if (l.cache_write_tokens) llmRows.push(["Cache write tokens", num(l.cache_write_tokens)]);
        if (l.reasoning_tokens) llmRows.push(["Reasoning tokens", num(l.reasoning_tokens)]);
        llmRows.push(["Cost", usd(l.cost_usd) + (l.cost_source ? " (" + l.cost_source + ")" : "")]);
        llmRows.push(["Finish reason", (l.finish_reasons || []).join(", ") || "–"]);
        llmRows.push(["Time to first token", l.ttft_us === null || l.ttft_us === undefined ? "–" : duration(l.ttft_us)]);
        if (l.conversation_id) llmRows.push(["Conversation", l.conversation_id]);
        parts.push(el("h3", {}, "LLM call"), el("div", { class: "llm-box", "data-testid": "llm-detail" }, table(llmRows, "")));
      }

      row.spans.forEach((span, n) => {
        const label = row.spans.length > 1 ? (n === 0 ? " (client)" : " (server)") : "";
        const tags = Object.entries(span.tags || {}).sort((a, b) => (a[0] < b[0] ? -1 : 1));
        if (tags.length) parts.push(el("h3", {}, "Tags" + label), table(tags));
        const otel = span.otel || {};
        const events = (otel.events || []).map((e) => [
          "+" + duration(Math.round(e.timeUnixNano / 1000) - data.start),
          e.name + (e.attributes ? " " + JSON.stringify(e.attributes) : ""),
        ]);
        const annotations = events.length
          ? events
          : (span.annotations || []).map((a) => ["+" + duration(a.timestamp - (first.timestamp || 0) + row.start), a.value]);
        if (annotations.length) parts.push(el("h3", {}, (events.length ? "Events" : "Annotations") + label), table(annotations));
        if (otel.status) parts.push(el("h3", {}, "Status" + label), table([["code", otel.status.code], ["message", otel.status.message || ""]]));
        const resource = (otel.resource && otel.resource.attributes) || {};
        const resourceRows = Object.entries(resource).map(([k, v]) => [k, show(v)]);
        if (resourceRows.length) parts.push(el("h3", {}, "Resource" + label), table(resourceRows));
        if (otel.scope && (otel.scope.name || otel.scope.version)) {
          parts.push(el("h3", {}, "Instrumentation scope" + label), table([["name", otel.scope.name || ""], ["version", otel.scope.version || ""]]));
        }
        const links = otel.links || [];
        if (links.length) {
          const list = el("ul", { class: "links" });
          for (const link of links) {
            const text = link.traceId + " / " + link.spanId;
            const item = HEX.test(link.traceId || "")
              ? el("a", { href: "/traces/" + link.traceId + "#span-" + link.spanId }, text)
              : document.createTextNode(text);
            list.append(el("li", {}, item, link.attributes ? " " + JSON.stringify(link.attributes) : ""));
          }
          parts.push(el("h3", {}, "Links" + label), list);
        }
      });
      detail.replaceChildren(...parts);
    }

    function endpoint(ep) {
      let text = ep.serviceName || "";
      const addr = ep.ipv4 || ep.ipv6;
      if (addr) text += (text ? " " : "") + addr + (ep.port ? ":" + ep.port : "");
      return text;
    }

    // the page's start in absolute microseconds, for OTLP event times
    data.start = 0;
    for (const r of data.rows) {
      const ts = r.spans[0].timestamp;
      if (ts) { data.start = ts - r.start; break; }
    }

    const match = /^#span-([0-9a-f]{16})$/.exec(location.hash);
    if (match) {
      const i = data.rows.findIndex((r) => r.spans.some((s) => s.id === match[1]));
      if (i >= 0) { reveal(i); select(i, false); rows[i].scrollIntoView({ block: "center" }); }
    }
  }

  // ---- search form ----
  function fillList(list, values) {
    list.replaceChildren(...values.map((v) => el("option", { value: v })));
  }
  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) return [];
    return response.json();
  }

  function initLookback() {
    for (const select of document.querySelectorAll("select[data-role=lookback]")) {
      select.addEventListener("change", () => {
        if (!select.selectedOptions[0] || !select.selectedOptions[0].hasAttribute("data-custom")) return;
        const input = el("input", { name: "lookback", placeholder: "e.g. 90m, 3h, 2d", value: "" });
        select.replaceWith(input);
        input.focus();
      });
    }
  }

  function initSearch() {
    const form = $("#search-form");
    if (!form) return;
    const service = form.querySelector("[data-role=service]");
    async function loadNames() {
      const name = service.value.trim();
      if (!name) { fillList($("#dl-spans"), []); fillList($("#dl-remotes"), []); return; }
      const q = encodeURIComponent(name);
      const [spans, remotes] = await Promise.all([
        getJSON("/api/v2/spans?serviceName=" + q),
        getJSON("/api/v2/remoteServices?serviceName=" + q),
      ]);
      fillList($("#dl-spans"), spans);
      fillList($("#dl-remotes"), remotes);
    }
    service.addEventListener("change", loadNames);
    loadNames();

    // tag autocomplete: "key=value" suggestions from the autocomplete keys the server indexes
    const tags = form.querySelector("[data-role=tags]");
    let loaded = false;
    tags.addEventListener("focus", async () => {
      if (loaded) return;
      loaded = true;
      const keys = await getJSON("/api/v2/autocompleteKeys");
      const options = [];
      for (const key of keys.slice(0, 20)) {
        const values = await getJSON("/api/v2/autocompleteValues?key=" + encodeURIComponent(key));
        options.push(key);
        for (const value of values.slice(0, 50)) options.push(key + "=" + value);
      }
      fillList($("#dl-tags"), options);
    });
    // drop empty fields so that shared URLs stay short
    form.addEventListener("submit", () => {
      for (const input of form.querySelectorAll("input[name], select[name]")) {
        if (!input.value && input.type !== "checkbox") input.disabled = true;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    initTrace();
    initSearch();
    initLookback();
  });
})();
