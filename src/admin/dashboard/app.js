// The ipush dashboard, in the browser. It reads this node's ordinary admin endpoints:
// /metrics once a second (the same scrape Prometheus gets; rates and latency percentiles are
// worked out here from two scrapes in a row), /nodes and /readyz every two seconds; it
// publishes through /pub and looks presence up through /presence. When the node has an admin
// token, a request answered 401 shows a form for it; the token is kept in sessionStorage (this
// tab) and sent as "Authorization: Bearer" on every request.
"use strict";

/** Seconds of history the charts keep. */
const WINDOW = 300;
const TOKEN_KEY = "ipush.admin_token";
const COLORS = {
  blue: "#4fb3ff",
  green: "#3ecf8e",
  yellow: "#f5b942",
  red: "#ff5c5c",
  violet: "#b48cff",
};

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY) ?? "";

class Unauthorized extends Error {}

/** A request to the admin API, with the token when there is one. */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  if (token !== "") headers.set("authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Unauthorized();
  }
  return response;
}

/** What `{"result": ...}` or `{"error": ...}` says, as [ok, value]. */
async function answer(response) {
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  return "error" in body ? [false, body.error] : [true, body.result];
}

// ---- Prometheus text ------------------------------------------------------------------

/** The samples of a text exposition: {name, labels, value}. */
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of a family's samples, of those `keep` accepts. */
function sum(samples, name, keep = () => true) {
  let total = 0;
  for (const s of samples) if (s.name === name && keep(s.labels)) total += s.value;
  return total;
}

/** A family's sums by shard label (the front door's apart). */
function byShard(samples, name) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== name || s.labels.shard === undefined || s.labels.shard === "front_door") {
      continue;
    }
    out.set(s.labels.shard, (out.get(s.labels.shard) ?? 0) + s.value);
  }
  return out;
}

/** A histogram's cumulative buckets over every shard: [[upper bound, count], ...]. */
function buckets(samples, name) {
  const counts = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const bound = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    counts.set(bound, (counts.get(bound) ?? 0) + s.value);
  }
  return [...counts].sort((a, b) => a[0] - b[0]);
}

/**
 * The q-quantile of what was observed between two scrapes, in milliseconds, as Prometheus'
 * histogram_quantile works it out (linear within a bucket); null when nothing was observed.
 */
function quantile(q, before, now) {
  const delta = now.map(([bound, count], i) => [bound, count - (before?.[i]?.[1] ?? 0)]);
  const total = delta.at(-1)?.[1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [bound, count] of delta) {
    if (count >= rank) {
      if (bound === Infinity) return lower * 1000;
      return (lower + (bound - lower) * ((rank - below) / Math.max(count - below, 1))) * 1000;
    }
    lower = bound;
    below = count;
  }
  return lower * 1000;
}

// ---- formatting -------------------------------------------------------------------------

function number(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Math.abs(value) >= 100 || Number.isInteger(value)) {
    return Math.round(value).toLocaleString("en-US");
  }
  return value.toFixed(1);
}

function milliseconds(value) {
  if (value === null) return "–";
  return value < 10 ? `${value.toFixed(2)} ms` : `${Math.round(value)} ms`;
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m ${Math.floor(seconds % 60)}s`;
}

/** A table cell (text, with a class). */
function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// ---- charts -----------------------------------------------------------------------------

const history = { time: [], series: {} };

function chart(id, series) {
  const element = $(id);
  const axis = {
    stroke: "#7d8a99",
    grid: { stroke: "#26313d", width: 1 },
    ticks: { stroke: "#26313d", width: 1 },
  };
  for (const s of series) history.series[s.key] = [];
  const plot = new uPlot(
    {
      width: element.clientWidth || 400,
      height: 190,
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          fill: s.fill ? `${s.color}22` : undefined,
          dash: s.dash,
          value: (_, v) => (s.ms ? milliseconds(v) : number(v)),
        })),
      ],
      axes: [axis, { ...axis, size: 56, values: (_, ticks) => ticks.map(number) }],
      scales: { y: { range: (_, _min, max) => [0, Math.max(1, max * 1.15)] } },
      cursor: { drag: { x: false, y: false } },
    },
    [[], ...series.map(() => [])],
    element,
  );
  return { plot, element, keys: series.map((s) => s.key) };
}

let charts = [];

function drawCharts() {
  for (const { plot, keys } of charts) {
    plot.setData([history.time, ...keys.map((key) => history.series[key])]);
    // Not under the pointer: the legend shows the latest values.
    if (plot.cursor.left < 0) plot.setLegend({ idx: history.time.length - 1 });
  }
}

function record(time, values) {
  history.time.push(time);
  for (const [key, list] of Object.entries(history.series)) list.push(values[key] ?? null);
  if (history.time.length > WINDOW) {
    history.time.shift();
    for (const list of Object.values(history.series)) list.shift();
  }
}

// ---- the polls --------------------------------------------------------------------------

let previous = null;

async function pollMetrics() {
  const response = await api("/metrics");
  if (!response.ok) throw new Error(`/metrics: HTTP ${response.status}`);
  const samples = parseMetrics(await response.text());
  const now = {
    at: performance.now() / 1000,
    accepted: sum(samples, "ipush_messages_accepted_total"),
    sent: sum(samples, "ipush_messages_sent_total"),
    delivery: buckets(samples, "ipush_delivery_latency_seconds"),
    commit: buckets(samples, "ipush_store_commit_seconds"),
    sentByShard: byShard(samples, "ipush_messages_sent_total"),
  };
  const connections = sum(samples, "ipush_connections");
  const users = sum(samples, "ipush_users");
  const queue = sum(samples, "ipush_journal_queue_messages");
  const seconds = previous ? Math.max(now.at - previous.at, 0.001) : 0;
  const rate = (name) => (previous ? Math.max(0, now[name] - previous[name]) / seconds : null);
  const rates = { in: rate("accepted"), out: rate("sent") };
  const latency = {
    p50: quantile(0.5, previous?.delivery, now.delivery),
    p90: quantile(0.9, previous?.delivery, now.delivery),
    p99: quantile(0.99, previous?.delivery, now.delivery),
    commit99: quantile(0.99, previous?.commit, now.commit),
  };

  $("connections").textContent = number(connections);
  const transports = samples
    .filter((s) => s.name === "ipush_connections")
    .reduce(
      (all, s) => all.set(s.labels.transport, (all.get(s.labels.transport) ?? 0) + s.value),
      new Map(),
    );
  $("by-transport").textContent = [...transports]
    .filter(([, count]) => count > 0)
    .map(([transport, count]) => `${transport} ${number(count)}`)
    .join(" · ") || "no one connected";
  $("users").textContent = number(users);
  $("rate-in").textContent = number(rates.in);
  $("rate-out").textContent = number(rates.out);
  $("queue").textContent = number(queue);
  $("p99").textContent = milliseconds(latency.p99);
  const started = sum(samples, "process_start_time_seconds");
  $("uptime").textContent = `up ${duration(Date.now() / 1000 - started)}`;
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;

  record(Math.round(Date.now() / 1000), { connections, users, queue, ...rates, ...latency });
  drawCharts();
  drawShards(samples, now, seconds);
  previous = now;
}

function drawShards(samples, now, seconds) {
  const connections = byShard(samples, "ipush_connections");
  const queues = byShard(samples, "ipush_journal_queue_messages");
  const stores = byShard(samples, "ipush_store_up");
  const outs = new Map(
    [...now.sentByShard].map(([shard, sent]) => [
      shard,
      previous ? Math.max(0, sent - (previous.sentByShard.get(shard) ?? 0)) / seconds : 0,
    ]),
  );
  // A shard's load is its share of the node's messages out, or of its connections when idle.
  const totalOut = [...outs.values()].reduce((a, b) => a + b, 0);
  const totalConnections = [...connections.values()].reduce((a, b) => a + b, 0);
  const share = (shard) =>
    totalOut > 0
      ? (outs.get(shard) ?? 0) / totalOut
      : (connections.get(shard) ?? 0) / Math.max(1, totalConnections);
  const body = $("shards").tBodies[0];
  body.replaceChildren(
    ...[...connections.keys()].sort((a, b) => Number(a) - Number(b)).map((shard) => {
      const row = document.createElement("tr");
      const load = document.createElement("td");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.round(share(shard) * 100)}px`;
      load.append(bar, ` ${Math.round(share(shard) * 100)}%`);
      const up = stores.get(shard) === 1;
      row.append(
        cell(`shard-${shard}`),
        cell(number(connections.get(shard))),
        cell(number(outs.get(shard))),
        load,
        cell(number(queues.get(shard))),
        cell(up ? "up" : "failing", up ? "ok" : "fail"),
      );
      return row;
    }),
  );
}

async function pollHealth() {
  const ready = await api("/readyz");
  const [ok, reason] = await answer(ready);
  const badge = $("ready");
  badge.textContent = ok ? "ready" : "not ready";
  badge.className = `badge ${ok ? "good" : "bad"}`;
  $("problem").hidden = ok;
  $("problem").textContent = ok ? "" : reason;

  const [listed, members] = await answer(await api("/nodes"));
  if (!listed) return;
  const self = members.find((member) => member.self);
  if (self) $("node").textContent = self.id;
  $("members").tBodies[0].replaceChildren(
    ...members.map((member) => {
      const row = document.createElement("tr");
      const status = cell(member.status, member.status === "ready" ? "ok" : "fail");
      if (member.reasons.length > 0) status.title = member.reasons.join("\n");
      row.append(
        cell(member.self ? `${member.id} (this node)` : member.id),
        status,
        cell(number(member.connections)),
        cell(number(member.users)),
        cell(`${member.host || "localhost"}:${member.admin_port}`),
      );
      return row;
    }),
  );
}

/** The members lost with their uids' state (`/cluster`, under --cluster=redis), if any. */
async function pollLost() {
  const [ok, cluster] = await answer(await api("/cluster"));
  const lost = ok ? cluster.lost ?? [] : [];
  $("lost-panel").hidden = lost.length === 0;
  $("lost").tBodies[0].replaceChildren(
    ...lost.map((entry) => {
      const row = document.createElement("tr");
      row.append(
        cell(entry.node, "fail"),
        cell(entry.since === null ? "unknown" : new Date(entry.since).toLocaleString()),
        cell(`${entry.shards} of ${entry.map_shards}`),
      );
      return row;
    }),
  );
}

/** Runs `poll` every `ms`, showing what goes wrong instead of stopping. */
function every(ms, poll) {
  const run = async () => {
    try {
      await poll();
    } catch (error) {
      if (!(error instanceof Unauthorized)) {
        $("problem").hidden = false;
        $("problem").textContent = `cannot reach the node: ${error.message}`;
      }
    }
    setTimeout(run, ms);
  };
  run();
}

// ---- forms ------------------------------------------------------------------------------

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-form").hidden = true;
});

$("publish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const query = new URLSearchParams({
    [$("pub-kind").value]: $("pub-target").value.trim(),
    from: $("pub-from").value.trim(),
    ttl: $("pub-ttl").value || "0",
  });
  const result = $("pub-result");
  result.textContent = "publishing…";
  try {
    const [ok, value] = await answer(
      await api(`/pub?${query}`, { method: "POST", body: $("pub-body").value }),
    );
    result.textContent = ok ? `${value}: stored and delivered` : `refused: ${value}`;
    result.className = `result ${ok ? "ok" : "fail"}`;
  } catch (error) {
    if (!(error instanceof Unauthorized)) result.textContent = `failed: ${error.message}`;
  }
});

$("presence-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const query = new URLSearchParams({
    [$("presence-kind").value]: $("presence-name").value.trim(),
  });
  const result = $("presence-result");
  try {
    const [ok, value] = await answer(await api(`/presence?${query}`));
    result.textContent = ok ? JSON.stringify(value, null, 2) : `refused: ${value}`;
    result.className = `result ${ok ? "" : "fail"}`;
  } catch (error) {
    if (!(error instanceof Unauthorized)) result.textContent = `failed: ${error.message}`;
  }
});

// ---- start ------------------------------------------------------------------------------

charts = [
  chart("chart-connections", [
    { key: "connections", label: "connections", color: COLORS.blue, fill: true },
    { key: "users", label: "users", color: COLORS.green },
  ]),
  chart("chart-rates", [
    { key: "in", label: "in / s", color: COLORS.violet, dash: [6, 4] },
    { key: "out", label: "out / s", color: COLORS.blue, fill: true },
  ]),
  chart("chart-latency", [
    { key: "p50", label: "delivery p50", color: COLORS.green, ms: true },
    { key: "p90", label: "delivery p90", color: COLORS.yellow, ms: true },
    { key: "p99", label: "delivery p99", color: COLORS.red, ms: true },
    { key: "commit99", label: "store commit p99", color: COLORS.violet, ms: true },
  ]),
  chart("chart-queue", [
    { key: "queue", label: "queued", color: COLORS.yellow, fill: true },
  ]),
];
addEventListener("resize", () => {
  for (const { plot, element } of charts) plot.setSize({ width: element.clientWidth, height: 190 });
});
every(1000, pollMetrics);
every(2000, pollHealth);
every(2000, pollLost);
