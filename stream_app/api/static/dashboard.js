// StreamRec live dashboard: polls /dashboard/state every second and draws it.
// No libraries and nothing from the internet; plots are inline SVG drawn below. Every value from
// the API goes into the DOM as text (textContent) or an attribute, never as markup.
"use strict";

(() => {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 5000;
  const MAX_ID_LENGTH = 256; // the event contract's cap; the API answers 400 beyond it
  const MIN_SPAN_MS = 60 * 1000; // a plot spans at least a minute, growing to the window
  const DEAD_LETTERS_SHOWN = 5;
  const DECISIONS_SHOWN = 8;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const BLUE = "#2563eb";
  const ORANGE = "#ea580c";

  const byId = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  // ---- DOM helpers ---------------------------------------------------------------------------

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function row(cells) {
    const tr = el("tr");
    for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", {}, cell));
    return tr;
  }

  // ---- formatting ----------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");

  function clock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function day(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  const dateTime = (ms) => `${day(ms)} ${clock(ms)}`;

  // The clock time for a moment of the last 20 hours, the day and minute for an older one.
  function when(ms, now) {
    return now - ms < 20 * 3600 * 1000 ? clock(ms) : `${day(ms)} ${clock(ms).slice(0, 5)}`;
  }

  function ago(ms, now) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 120) return `${s} s ago`;
    if (s < 7200) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  const fmt = {
    int: (v) => Math.round(v).toLocaleString("en-US"),
    rate: (v) => (v >= 100 ? Math.round(v).toLocaleString("en-US") : v.toFixed(1)),
    pct: (v) => `${(v * 100).toFixed(2)} %`,
    ratio: (v) => v.toFixed(4),
    ms: (v) => (v < 1000 ? `${v.toFixed(1)} ms` : `${(v / 1000).toFixed(2)} s`),
    score: (v) => v.toFixed(4),
  };

  // A figure shows its value formatted and carries the raw number in data-value ("" for none).
  function setFigure(id, value, format) {
    const node = byId(id);
    const known = isNum(value);
    node.dataset.value = known ? String(value) : "";
    node.textContent = known ? format(value) : "—";
  }

  // ---- plots ---------------------------------------------------------------------------------

  const W = 600;
  const H = 210;
  const M = { l: 56, r: 14, t: 24, b: 24 };

  // [top, step] of a y axis from 0 that holds vmax in about four steps of 1, 2 or 5 x 10^k.
  function niceScale(vmax) {
    const raw = (vmax > 0 ? vmax : 1) / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
    return [Math.ceil((vmax > 0 ? vmax : 1) / step) * step, step];
  }

  function timeStep(spanMs) {
    const steps = [5, 10, 15, 30, 60, 120, 300, 600].map((s) => s * 1000);
    return steps.find((s) => spanMs / s <= 6) || 600 * 1000;
  }

  function emptyPlot(node, message) {
    node.replaceChildren(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, message));
  }

  // Tick labels with as many decimals as the step needs (0.05 -> "0.15", 50 -> "150").
  function tickLabel(v, step) {
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return v.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  }

  function yAxis(node, top, step, y) {
    for (let i = 0; i * step <= top + step / 2; i += 1) {
      const v = i * step; // multiplied, not summed: 0.1 + 0.2 would print 0.30000000000000004
      node.appendChild(svg("line", { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), class: "grid" }));
      node.appendChild(svg("text", { x: M.l - 6, y: y(v) + 4, "text-anchor": "end" }, tickLabel(v, step)));
    }
  }

  function timeAxis(node, t0, t1, x) {
    const step = timeStep(t1 - t0);
    node.appendChild(svg("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, class: "axis" }));
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      // a label centred closer than this to an edge would be cut off
      if (x(t) < M.l + 20 || x(t) > W - 24) continue;
      node.appendChild(svg("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, clock(t)));
    }
  }

  function legend(node, lines) {
    let lx = M.l;
    for (const line of lines) {
      node.appendChild(svg("line", {
        x1: lx, x2: lx + 16, y1: 10, y2: 10, stroke: line.color, "stroke-width": 2,
        "stroke-dasharray": line.dash || "none",
      }));
      const label = svg("text", { x: lx + 20, y: 14, class: "legend" }, line.label);
      node.appendChild(label);
      lx += 28 + line.label.length * 6.2;
    }
  }

  // Light bands where Redis could not be read, so a gap in a line explains itself.
  function downBands(node, points, x) {
    let start = null;
    points.forEach((p, i) => {
      if (!p.redis_up && start === null) start = i;
      const ends = start !== null && (p.redis_up || i === points.length - 1);
      if (!ends) return;
      const last = p.redis_up ? i - 1 : i;
      const x0 = x(points[start].t_ms);
      const x1 = x(points[last].t_ms);
      const band = svg("rect", { x: x0 - 2, y: M.t, width: Math.max(x1 - x0, 0) + 4, height: H - M.t - M.b, class: "down" });
      band.appendChild(svg("title", {}, "Redis unavailable"));
      node.appendChild(band);
      start = null;
    });
  }

  // One polyline per run of known values (a null breaks the line); a lone point is a dot.
  function drawLine(node, points, line, x, y) {
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        node.appendChild(svg("circle", { cx: run[0][0], cy: run[0][1], r: 2.5, fill: line.color }));
      } else if (run.length > 1) {
        node.appendChild(svg("polyline", {
          points: run.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" "),
          fill: "none", stroke: line.color, "stroke-width": 2, "stroke-linejoin": "round",
          "stroke-dasharray": line.dash || "none",
        }));
      }
      run = [];
    };
    for (const p of points) {
      const v = p[line.key];
      if (isNum(v)) run.push([x(p.t_ms), y(v)]);
      else flush();
    }
    flush();
  }

  function linePlot(node, points, lines, emptyMessage) {
    node.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const known = points.filter((p) => lines.some((l) => isNum(p[l.key])));
    if (known.length === 0) {
      emptyPlot(node, emptyMessage);
      return;
    }
    const t1 = points[points.length - 1].t_ms;
    const t0 = Math.min(points[0].t_ms, t1 - MIN_SPAN_MS);
    let vmax = 0;
    for (const p of known) for (const l of lines) if (isNum(p[l.key])) vmax = Math.max(vmax, p[l.key]);
    const [top, step] = niceScale(vmax);
    const x = (t) => M.l + ((t - t0) / (t1 - t0)) * (W - M.l - M.r);
    const y = (v) => H - M.b - (v / top) * (H - M.t - M.b);
    node.replaceChildren();
    downBands(node, points, x);
    yAxis(node, top, step, y);
    timeAxis(node, t0, t1, x);
    for (const line of lines) drawLine(node, points, line, x, y);
    legend(node, lines);
  }

  function barPlot(node, buckets) {
    node.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const total = buckets.reduce((sum, b) => sum + b.count, 0);
    if (total === 0) {
      emptyPlot(node, "no freshness samples yet");
      return;
    }
    const [top, step] = niceScale(Math.max(...buckets.map((b) => b.count)));
    const y = (v) => H - M.b - (v / top) * (H - M.t - M.b);
    const band = (W - M.l - M.r) / buckets.length;
    node.replaceChildren();
    yAxis(node, top, step, y);
    node.appendChild(svg("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, class: "axis" }));
    node.appendChild(svg("text", { x: M.l, y: 12, class: "legend" }, "events per bucket (ms, upper bound)"));
    buckets.forEach((b, i) => {
      const prev = i > 0 ? buckets[i - 1].le : "0";
      const label = b.le === "+Inf" ? `>${prev}` : `≤${b.le}`;
      const x0 = M.l + i * band + band * 0.15;
      const bar = svg("rect", { x: x0, y: y(b.count), width: band * 0.7, height: H - M.b - y(b.count), class: "bar" });
      bar.appendChild(svg("title", {}, `${label} ms: ${fmt.int(b.count)} (${((b.count / total) * 100).toFixed(1)} %)`));
      node.appendChild(bar);
      node.appendChild(svg("text", { x: x0 + band * 0.35, y: H - 8, "text-anchor": "middle" }, label));
      if (b.count > 0) {
        node.appendChild(svg("text", { x: x0 + band * 0.35, y: y(b.count) - 3, "text-anchor": "middle", class: "bar-label" }, fmt.int(b.count)));
      }
    });
  }

  // ---- the state -----------------------------------------------------------------------------

  function setStatus(text, state, nowMs) {
    const node = byId("status");
    node.textContent = text;
    node.dataset.state = state;
    if (nowMs !== undefined) node.dataset.nowMs = String(nowMs);
  }

  function renderFigures(s, latest) {
    setFigure("events-total", s.events, fmt.int);
    setFigure("events-rate", latest ? latest.events_per_s : null, fmt.rate);
    setFigure("dlq-total", s.dlq, fmt.int);
    setFigure("lag-total", s.lag_total, fmt.int);
    setFigure("workers", s.workers, fmt.int);
    setFigure("hit-rate-seq", s.hit_rate_at_10, fmt.pct);
    setFigure("hit-rate-cached", s.hit_rate_at_10_cached, fmt.pct);
    setFigure("mrr-seq", s.mrr_at_10, fmt.ratio);
    setFigure("mrr-cached", s.mrr_at_10_cached, fmt.ratio);
    setFigure("freshness-p50", s.freshness.p50_ms, fmt.ms);
    setFigure("freshness-p99", s.freshness.p99_ms, fmt.ms);
  }

  function renderPlots(s) {
    const points = s.series;
    linePlot(byId("plot-rate"), points, [{ key: "events_per_s", label: "events/s", color: BLUE }],
      points.length < 2 ? "collecting samples…" : "no event counts (Redis unavailable)");
    linePlot(byId("plot-lag"), points, [{ key: "lag_total", label: "messages behind, all topics", color: ORANGE }],
      "no lag readings (Kafka unreachable, or no probe)");
    linePlot(byId("plot-hitrate"), points, [
      { key: "hit_rate_at_10", label: "HitRate@10 sequential", color: BLUE },
      { key: "hit_rate_at_10_cached", label: "HitRate@10 cached", color: ORANGE },
      { key: "mrr_at_10", label: "MRR@10 sequential", color: BLUE, dash: "5 3" },
      { key: "mrr_at_10_cached", label: "MRR@10 cached", color: ORANGE, dash: "5 3" },
    ], "no online trials yet");
    barPlot(byId("plot-freshness"), s.freshness.buckets);
    const topics = s.lag ? Object.entries(s.lag).map(([t, n]) => `${t} ${fmt.int(n)}`).join(" · ") : "";
    byId("lag-topics").textContent = topics;
  }

  function fillTable(id, rows) {
    byId(id).tBodies[0].replaceChildren(...rows);
    byId(id).hidden = rows.length === 0;
    byId(`${id}-empty`).hidden = rows.length > 0;
  }

  function renderDeadLetters(s) {
    byId("dlq-count").textContent = isNum(s.dlq) ? `${fmt.int(s.dlq)} in all; the newest:` : "";
    fillTable("dead-letters", s.dead_letters.slice(0, DEAD_LETTERS_SHOWN).map((d) => {
      const preview = el("td", { class: "mono preview", title: d.preview }, d.preview);
      return row([when(d.dead_at_ms, s.now_ms), el("td", { class: "reason" }, d.reason),
        el("td", { class: "mono" }, `${d.topic}[${d.partition}]@${d.offset}`), fmt.int(d.payload_size), preview]);
    }));
  }

  function renderModels(s) {
    const chips = [];
    for (const [name, versions] of Object.entries(s.model_versions)) {
      chips.push(el("li", {}, `${name}: ${versions.join(", ")}`));
    }
    if (chips.length === 0) chips.push(el("li", {}, s.redis_up ? "no live worker reported" : "unknown"));
    byId("model-versions").replaceChildren(...chips);
    fillTable("model-decisions", s.model_decisions.slice(0, DECISIONS_SHOWN).map((d) => row([
      when(d.at_ms, s.now_ms), el("td", { class: "mono" }, d.version),
      el("td", { class: d.accepted ? "accepted" : "refused" }, d.accepted ? "swapped in" : "refused"),
      d.trigger, el("td", { class: "reason" }, d.reason),
    ])));
  }

  function renderRankers(s) {
    const num = (v, f) => (isNum(v) ? f(v) : "—");
    fillTable("rankers", s.rankers.map((r) => row([
      String(r.partition), fmt.int(r.updates), fmt.int(r.pairs),
      num(r.pairwise_accuracy, fmt.pct), num(r.mean_log_loss, (v) => v.toFixed(3)),
    ])));
    const stats = [];
    for (const [name, value] of Object.entries(s.stats)) {
      stats.push(el("dt", {}, name.replaceAll("_", " ")), el("dd", {}, fmt.int(value)));
    }
    byId("stats").replaceChildren(...stats);
  }

  function render(s) {
    const latest = s.series.length ? s.series[s.series.length - 1] : null;
    renderFigures(s, latest);
    renderPlots(s);
    renderDeadLetters(s);
    renderModels(s);
    renderRankers(s);
    byId("updated").textContent = `updated ${clock(s.now_ms)}`;
    if (s.redis_up) setStatus("live", "live", s.now_ms);
    else setStatus("Redis unavailable", "redis-down", s.now_ms);
  }

  // ---- fetching ------------------------------------------------------------------------------

  // {status, body} of a GET; status 0 when the API could not be reached in time.
  async function getJson(path) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    try {
      const resp = await fetch(path, { cache: "no-store", signal: abort.signal });
      const body = await resp.json().catch(() => null);
      return { status: resp.status, body };
    } catch (err) {
      return { status: 0, body: null };
    } finally {
      clearTimeout(timer);
    }
  }

  function failureText(answer) {
    if (answer.status === 0) return "API unreachable";
    if (answer.status === 503) return "Redis unavailable";
    const detail = answer.body && answer.body.detail ? `: ${answer.body.detail}` : "";
    return `error ${answer.status}${detail}`;
  }

  async function poll() {
    const answer = await getJson("/dashboard/state");
    if (answer.status === 200 && answer.body) render(answer.body);
    else if (answer.status === 503) setStatus("Redis unavailable", "redis-down");
    else setStatus("API unreachable", "unreachable");
  }

  async function pollForever() {
    for (;;) {
      const started = performance.now();
      await poll();
      await new Promise((r) => setTimeout(r, Math.max(0, POLL_MS - (performance.now() - started))));
    }
  }

  // ---- the user and item panels --------------------------------------------------------------

  // A list item for an item id: the id is a button that looks the item up.
  function itemEntry(itemId, extra) {
    const li = el("li", { "data-item-id": itemId });
    const link = el("button", { type: "button", class: "link mono", title: "show this item" }, itemId);
    link.addEventListener("click", () => {
      byId("item-input").value = itemId;
      lookupItem();
    });
    li.appendChild(link);
    for (const [cls, text] of extra) li.appendChild(el("span", { class: cls }, text));
    return li;
  }

  // Each lookup takes a ticket; an answer that arrives after a newer request is dropped.
  const tickets = { user: 0, item: 0 };

  function checkedId(inputId, messageId, what) {
    const value = byId(inputId).value.trim();
    if (value === "") byId(messageId).textContent = `Type ${what} id.`;
    else if (value.length > MAX_ID_LENGTH) byId(messageId).textContent = `Ids are at most ${MAX_ID_LENGTH} characters.`;
    else return value;
    return null;
  }

  function clearUser() {
    byId("user-recs").replaceChildren();
    byId("user-recent").replaceChildren();
    byId("user-source").textContent = "";
    setFigure("user-computed-at", null, String);
  }

  async function lookupUser() {
    const userId = checkedId("user-input", "user-message", "a user");
    if (userId === null) return;
    const ticket = ++tickets.user;
    byId("user-message").textContent = `Looking up ${userId}…`;
    const answer = await getJson(`/recommendations/${encodeURIComponent(userId)}?n=20`);
    if (ticket !== tickets.user) return;
    clearUser();
    if (answer.status !== 200 || !answer.body) {
      byId("user-message").textContent = failureText(answer);
      return;
    }
    const r = answer.body;
    byId("user-recs").replaceChildren(...r.items.map((i) => itemEntry(i.item_id, [["score", fmt.score(i.score)], ["reason", i.reason]])));
    const recent = Array.isArray(r.recent) ? r.recent : [];
    byId("user-recent").replaceChildren(...recent.map((id) => itemEntry(id, [])));
    const computed = byId("user-computed-at");
    computed.dataset.value = String(r.computed_at);
    computed.textContent = `${dateTime(r.computed_at)} (${ago(r.computed_at, Date.now())})`;
    const versions = Object.entries(r.model_versions).map(([k, v]) => `${k} ${v}`).join(", ");
    byId("user-source").textContent = versions ? `by ${versions}` : "";
    byId("user-message").textContent = r.source === "cache"
      ? `${r.user_id}: ${r.items.length} cached recommendations, best first.`
      : `${r.user_id}: nothing cached for this user; the trending fallback is served, as the API does.`;
    if (recent.length === 0) byId("user-recent").appendChild(el("li", { class: "muted" }, "no recent history stored"));
  }

  function clearItem() {
    byId("item-neighbors").replaceChildren();
    byId("item-successors").replaceChildren();
    setFigure("item-trending-rank", null, String);
  }

  async function lookupItem() {
    const itemId = checkedId("item-input", "item-message", "an item");
    if (itemId === null) return;
    const ticket = ++tickets.item;
    byId("item-message").textContent = `Looking up ${itemId}…`;
    const answer = await getJson(`/dashboard/item/${encodeURIComponent(itemId)}?n=10`);
    if (ticket !== tickets.item) return;
    clearItem();
    if (answer.status !== 200 || !answer.body) {
      byId("item-message").textContent = failureText(answer);
      return;
    }
    const it = answer.body;
    const scored = (list) => list.map((n) => itemEntry(n.item_id, [["score", fmt.score(n.score)]]));
    byId("item-neighbors").replaceChildren(...scored(it.neighbors));
    byId("item-successors").replaceChildren(...scored(it.successors));
    const rank = byId("item-trending-rank");
    rank.dataset.value = isNum(it.trending_rank) ? String(it.trending_rank) : "";
    rank.textContent = isNum(it.trending_rank)
      ? `#${fmt.int(it.trending_rank)} (decayed score ${fmt.score(it.trending_score)})`
      : "not trending";
    const known = it.neighbors.length || it.successors.length || isNum(it.trending_rank);
    byId("item-message").textContent = known
      ? `${it.item_id}: published neighbours and successors, best first.`
      : `${it.item_id}: nothing published for this item yet (unknown, or not seen since the workers started).`;
  }

  function wire(inputId, buttonId, lookup) {
    byId(buttonId).addEventListener("click", lookup);
    byId(inputId).addEventListener("keydown", (e) => {
      if (e.key === "Enter") lookup();
    });
  }

  wire("user-input", "user-go", lookupUser);
  wire("item-input", "item-go", lookupItem);
  pollForever();
})();
