/**
 * The scenarios, run by the parent process: each is a sequence of phases (subscribe,
 * connect, probe, load, drain, hold, close) over the {@linkcode Swarm} of client processes,
 * measured from the children's counters and histograms.
 *
 * @module
 */

import type { AdminClient } from "./admin.ts";
import type { LoadOptions } from "./flags.ts";
import { Histogram, type HistogramData, type LatencySummary } from "./histogram.ts";
import {
  addCounters,
  type Command,
  type Counters,
  type Load,
  newCounters,
  nowMs,
  type WorkerConfig,
} from "./ipc.ts";
import { sourceAddresses } from "./loopback.ts";
import { type Metrics, nonZero, progressLine, round, table, type TimelineEntry } from "./report.ts";
import { timeToRecover } from "./recovery.ts";
import { cpuSeconds, rssKb, serverPid } from "./server_proc.ts";
import { type Done, Swarm } from "./swarm.ts";
import { publisherFor } from "./target.ts";

/** Lead time so that all children start a phase at the same instant. */
const START_LEAD_MS = 200;
/** How long the fanout probe may take to reach every subscriber. */
const PROBE_WAIT_MS = 30_000;

/** Per-child share of the connections: contiguous uid ranges. */
export function workerConfigs(o: LoadOptions, epochMs: number): WorkerConfig[] {
  const per = Math.ceil(o.connections / o.processes);
  const sources = sourceAddresses(o.host, o.sourceAddrs);
  return Array.from({ length: o.processes }, (_, index) => {
    const first = Math.min(o.connections, index * per);
    return {
      index,
      target: o.target,
      // nchan has no membership: a fanout client subscribes to the channel itself.
      subscribeTo: o.target === "nchan" && o.scenario === "fanout" ? o.channel : null,
      host: o.host,
      clientPorts: o.clientPorts,
      adminHost: o.adminHost,
      adminPort: o.adminPort,
      uidPrefix: o.uidPrefix,
      password: o.password,
      passwordFile: o.passwordFile,
      first,
      count: Math.min(per, o.connections - first),
      sources,
      transport: o.transport,
      codec: o.codec,
      heartbeatSec: o.heartbeatSec,
      ack: o.ack,
      connectTimeoutMs: o.connectTimeoutSec * 1000,
      maxRedirects: o.maxRedirects,
      msgTimeoutMs: o.msgTimeoutSec * 1000,
      epochMs,
      // A backstop only: the parent enforces --timeout_sec itself and closes the children.
      deadlineMs: epochMs + (o.timeoutSec + 15) * 1000,
    };
  });
}

/** Everything the result file holds. */
export interface RunResult {
  scenario: string;
  status: string;
  started_at: string;
  finished_at: string;
  options: LoadOptions;
  env: { deno: string; cpus: number };
  client: { processes: number; connections_per_process: number; source_addresses: string[] };
  server: { pid: number | null; rss_kb: Record<string, number | null> };
  metrics: Metrics;
  counters: Partial<Counters>;
  reasons: Record<string, number>;
  connect_latency: LatencySummary;
  latency: LatencySummary;
  latency_histogram: HistogramData;
  schedule_lag: LatencySummary;
  answer_latency: LatencySummary;
  refusal_latency: LatencySummary;
  timeline: TimelineEntry[];
  stats_before: unknown;
  stats_after: unknown;
}

/** One run of one scenario. */
export class Run {
  readonly metrics: Metrics = {};
  readonly timeline: TimelineEntry[] = [];
  readonly rss: Record<string, number | null> = {};
  readonly startedAt = new Date();
  readonly epochMs = nowMs();
  readonly admin: AdminClient;
  readonly pid: number | null;
  readonly configs: WorkerConfig[];
  swarm: Swarm | null = null;
  #phase = "start";
  #progress: ReturnType<typeof setInterval> | undefined;
  #prev = newCounters();
  #prevAt = performance.now();
  #statsBefore: unknown = null;

  constructor(readonly o: LoadOptions) {
    this.admin = publisherFor(o.target, o.adminHost, o.adminPort, 3000);
    this.pid = serverPid(o.serverPid, o.pidFile);
    this.configs = workerConfigs(o, this.epochMs);
  }

  /** Runs the scenario to its end; throws if a client process fails. */
  async execute(): Promise<void> {
    const o = this.o;
    if (this.pid === null) {
      console.error(`note: no server pid (--server_pid, ${o.pidFile}): RSS not measured`);
    }
    this.#statsBefore = await this.admin.stats();
    this.#readRss("before");
    console.error(
      `${o.scenario}: ${o.connections} connections over ${o.processes} process(es), ` +
        `${o.target} ${o.host}:${
          o.clientPorts.join(",")
        }, publishing to ${o.adminHost}:${o.adminPort}`,
    );
    this.swarm = await Swarm.start(this.configs);
    this.#progress = setInterval(() => this.#tick(), 1000);
    switch (o.scenario) {
      case "idle":
      case "storm":
        await this.#connect();
        if (o.scenario === "idle") {
          this.#phase = "settle";
          await this.swarm.sleep(o.settleSec * 1000);
        }
        this.#readRss("after_connect");
        this.#rssPerConnection("after_connect");
        if (o.holdSec > 0) {
          this.#phase = "hold";
          await this.swarm.sleep(o.holdSec * 1000);
          this.#readRss("after_hold");
          this.#rssPerConnection("after_hold");
        }
        this.metrics.dropped_while_held = this.swarm.totals().dropped;
        break;
      case "unicast":
        await this.#connect();
        await this.#load(() => ({
          kind: "unicast",
          rate: o.rate,
          maxInFlight: o.concurrency,
          batch: o.batch,
        }));
        break;
      case "chat":
        await this.#connect();
        await this.#load(() => ({ kind: "chat", rate: o.rate, maxInFlight: o.concurrency }));
        break;
      case "fanout":
        if (o.target === "ipush") await this.#subscribe();
        await this.#connect();
        await this.#probe();
        await this.#load((first) =>
          first
            ? { kind: "channel", channel: o.channel, rate: o.rate, maxInFlight: o.concurrency }
            : { kind: "none" }
        );
        break;
    }
    this.#readRss("end");
  }

  /** Stops the progress line, closes the clients, and assembles the result. */
  async finish(status: string): Promise<RunResult> {
    clearInterval(this.#progress);
    if (this.swarm !== null) {
      this.#phase = "close";
      await this.swarm.close(8000);
    }
    const swarm = this.swarm;
    const totals = swarm?.totals() ?? newCounters();
    const statsAfter = await this.admin.stats();
    this.admin.close();
    return {
      scenario: this.o.scenario,
      status,
      started_at: this.startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      options: this.o,
      env: { deno: Deno.version.deno, cpus: navigator.hardwareConcurrency },
      client: {
        processes: this.o.processes,
        connections_per_process: Math.ceil(this.o.connections / this.o.processes),
        source_addresses: sourceAddresses(this.o.host, this.o.sourceAddrs),
      },
      server: { pid: this.pid, rss_kb: this.rss },
      metrics: this.metrics,
      counters: nonZero(totals),
      reasons: swarm?.reasons() ?? {},
      connect_latency: (swarm?.connectHist ?? new Histogram()).summary(),
      latency: (swarm?.latencyHist ?? new Histogram()).summary(),
      latency_histogram: (swarm?.latencyHist ?? new Histogram()).toData(),
      schedule_lag: (swarm?.lagHist ?? new Histogram()).summary(),
      answer_latency: (swarm?.answerHist ?? new Histogram()).summary(),
      refusal_latency: (swarm?.refusalHist ?? new Histogram()).summary(),
      timeline: this.timeline,
      stats_before: this.#statsBefore,
      stats_after: statsAfter,
    };
  }

  /** The final table text. */
  summaryTable(result: RunResult): string {
    const c = result.connect_latency;
    const l = result.latency;
    const rows: Metrics = { status: result.status, ...result.metrics };
    if (c.count > 0) {
      rows["connect_ms_p50/p99/max"] = `${c.p50_ms} / ${c.p99_ms} / ${c.max_ms}`;
    }
    if (l.count > 0) {
      rows.latency_samples = l.count;
      rows["latency_ms_p50/p99/p999"] = `${l.p50_ms} / ${l.p99_ms} / ${l.p999_ms}`;
      rows["latency_ms_mean/max"] = `${l.mean_ms} / ${l.max_ms}`;
    }
    const a = result.answer_latency;
    if (a.count > 0) rows["answer_ms_p50/p99/max"] = `${a.p50_ms} / ${a.p99_ms} / ${a.max_ms}`;
    const r = result.refusal_latency;
    if (r.count > 0) rows["refusal_ms_p50/p99/max"] = `${r.p50_ms} / ${r.p99_ms} / ${r.max_ms}`;
    const g = result.schedule_lag;
    if (g.count > 0) rows["behind_ms_p50/p99/max"] = `${g.p50_ms} / ${g.p99_ms} / ${g.max_ms}`;
    for (const [k, v] of Object.entries(result.server.rss_kb)) rows[`server_rss_kb_${k}`] = v;
    return table(`${result.scenario} (${result.started_at})`, rows);
  }

  #swarm(): Swarm {
    if (this.swarm === null) throw new Error("no client processes");
    return this.swarm;
  }

  /** Opens every connection; storm starts them all at once. */
  async #connect(): Promise<void> {
    const swarm = this.#swarm();
    this.#phase = "connect";
    const startAt = nowMs() + START_LEAD_MS;
    const per = Math.max(1, Math.ceil(this.o.connectConcurrency / swarm.size));
    const dones = await swarm.phase(
      "connect",
      (): Command => ({ cmd: "connect", concurrency: per, startAt }),
    );
    const seconds = (Math.max(...dones.map((d) => d.atMs)) - startAt) / 1000;
    const t = sum(dones);
    if (t.connected === 0) {
      throw new Error(`no connection got its 200 (${topReason(swarm.reasons()) ?? "no reason"})`);
    }
    Object.assign(this.metrics, {
      connections_ok: t.connected,
      connections_failed: t.failed,
      redirects_followed: t.redirects,
      connect_phase_s: round(seconds),
      connects_per_s: round(t.connected / seconds),
    });
  }

  /** Fanout: `/sub` every uid to the channel. */
  async #subscribe(): Promise<void> {
    this.#phase = "subscribe";
    const started = nowMs();
    const dones = await this.#swarm().phase("subscribe", () => ({
      cmd: "subscribe",
      channel: this.o.channel,
      concurrency: 16,
    }));
    const t = sum(dones);
    const seconds = (nowMs() - started) / 1000;
    Object.assign(this.metrics, {
      channel: this.o.channel,
      subscribed_ok: t.subOk,
      subscribe_failed: t.subFailed,
      subscribes_per_s: round(t.subOk / seconds),
    });
  }

  /** Fanout: one message to the channel; how long until every online subscriber has it. */
  async #probe(): Promise<void> {
    const swarm = this.#swarm();
    this.#phase = "probe";
    const online = swarm.totals().open;
    await swarm.phase("probe", () => ({ cmd: "probe", channel: this.o.channel }), (i) => i === 0);
    const all = await swarm.waitFor(() => swarm.totals().probeReceived >= online, PROBE_WAIT_MS);
    const t = swarm.totals();
    Object.assign(this.metrics, {
      probe_received: `${t.probeReceived} of ${online}`,
      time_to_all_ms: all ? round(t.probeMaxMs) : null,
    });
  }

  /** The measured load phase, then the drain: waits for what was sent to be delivered. */
  async #load(loadFor: (isFirstChild: boolean) => Load): Promise<void> {
    const o = this.o;
    const swarm = this.#swarm();
    const online = swarm.totals().open;
    this.#phase = "load";
    const cpuBefore = this.pid === null ? null : cpuSeconds(this.pid);
    const startAt = nowMs() + START_LEAD_MS;
    const dones = await swarm.phase("run", (i): Command => {
      // Each child gets the share of the rate and in-flight limit that its users are of all.
      const share = this.configs[i].count / o.connections;
      const load = loadFor(i === 0);
      if (load.kind === "none") {
        return { cmd: "run", load, startAt, durationMs: o.durationSec * 1e3 };
      }
      const fanout = load.kind === "channel";
      const scaled: Load = {
        ...load,
        rate: load.rate === "max" || fanout ? load.rate : load.rate * share,
        maxInFlight: fanout ? load.maxInFlight : Math.max(1, Math.round(load.maxInFlight * share)),
      };
      return { cmd: "run", load: scaled, startAt, durationMs: o.durationSec * 1000 };
    });
    const before = sum(dones.map((d) => ({ ...d, counters: d.before ?? newCounters() })));
    const atEnd = sum(dones);
    const loadEnd = Math.max(...dones.map((d) => d.atMs));
    const seconds = (loadEnd - startAt) / 1000;
    const rssLoad = this.timeline.filter((e) => e.phase === "load" && e.rss_kb !== null);
    const sentOf = (c: Counters) => o.scenario === "chat" ? c.chatSent : c.pubOk;
    const fanout = o.scenario === "fanout" ? online : 1;
    const expected = () => (sentOf(swarm.totals()) - sentOf(before)) * fanout;
    const delivered = () => swarm.totals().received - before.received;
    // Only once every publish is answered is the count of what should arrive final.
    const drained = () => swarm.totals().pubInFlight === 0 && delivered() >= expected();
    this.#phase = "drain";
    // Probed from the parent for every scenario with load: whatever the load was, the question
    // is the same (how soon a new request is served normally again), and the drain, which
    // waits for what was sent, does not answer it.
    const [recovered] = await Promise.all([
      timeToRecover(() => this.#recoveryProbe(), loadEnd, o.recoverSec * 1000),
      swarm.waitFor(drained, o.drainSec * 1000),
    ]);
    const cpuAfter = this.pid === null ? null : cpuSeconds(this.pid);
    const t = swarm.totals();
    const sentInWindow = sentOf(atEnd) - sentOf(before);
    const d = (key: keyof Counters) => t[key] - before[key];
    Object.assign(this.metrics, {
      online_users: online,
      load_phase_s: round(seconds),
      ...(o.scenario === "chat"
        ? { sent: sentOf(t) - sentOf(before), sent_per_s: round(sentInWindow / seconds) }
        : {
          published_ok: sentOf(t) - sentOf(before),
          publish_failed: d("pubFailed"),
          published_per_s: round(sentInWindow / seconds),
          requests_ok: d("requestsOk"),
          requests_refused_503: d("refused503"),
          requests_refused_429: d("refused429"),
          refused_with_retry_after: d("refusedRetryAfter"),
          refused_messages: d("pubRefused"),
        }),
      unsent_behind_schedule: atEnd.unsent - before.unsent,
      delivered_in_window: atEnd.received - before.received,
      delivered_per_s: round((atEnd.received - before.received) / seconds),
      delivered_total: delivered(),
      expected_total: expected(),
      missing_after_drain: Math.max(0, expected() - delivered()),
      unanswered_after_drain: t.pubInFlight,
      // Deliveries of messages whose publish was not accepted (refused, failed or timed out).
      beyond_expected: Math.max(0, delivered() - expected()),
      timed_out: t.timedOut - before.timedOut,
      unmatched: t.unmatched - before.unmatched,
      backlog_from_older_runs: t.backlog,
      dropped_connections: t.dropped,
      // Less moved by other work on a shared machine than msgs/s are, and comparable between
      // targets: the server's CPU time over the load and drain, per message delivered.
      server_cpu_us_per_delivered: cpuBefore === null || cpuAfter === null || delivered() === 0
        ? null
        : round((cpuAfter - cpuBefore) * 1e6 / delivered()),
      server_rss_kb_max_load: rssLoad.length === 0
        ? null
        : Math.max(...rssLoad.map((e) => e.rss_kb!)),
      recovered_after_ms: recovered.afterMs === null ? null : round(recovered.afterMs),
      recovery_probes: Object.entries(recovered.outcomes).map(([k, n]) => `${n} ${k}`).join(", "),
    });
  }

  /**
   * One recovery probe: `/pub` to the first client's uid (online unless its connect failed), with
   * a body that is no stamp, so that its delivery is no latency sample.
   */
  async #recoveryProbe(): Promise<string> {
    const uid = this.o.uidPrefix + this.configs[0].first;
    const res = await this.admin.pubTo(uid, "load", "recovery probe");
    return this.admin.accepted(res) ? "ok" : `HTTP ${res.status}`;
  }

  #readRss(label: string): void {
    if (this.pid !== null) this.rss[label] = rssKb(this.pid);
  }

  #rssPerConnection(label: string): void {
    const before = this.rss.before;
    const after = this.rss[label];
    const open = this.swarm?.totals().open ?? 0;
    if (before == null || after == null || open === 0) return;
    this.metrics[`server_rss_per_conn_kb_${label}`] = round((after - before) / open);
  }

  #tick(): void {
    const swarm = this.swarm;
    if (swarm === null) return;
    const t = swarm.totals();
    const p = this.#prev;
    const now = performance.now();
    const dt = (now - this.#prevAt) / 1000;
    const interval = swarm.takeInterval();
    const entry: TimelineEntry = {
      t_s: round((nowMs() - this.epochMs) / 1000),
      phase: this.#phase,
      open: t.open,
      connected_per_s: Math.round((t.connected - p.connected) / dt),
      failed: t.failed,
      dropped: t.dropped,
      sent_per_s: Math.round((t.pubOk + t.chatSent - p.pubOk - p.chatSent) / dt),
      refused_per_s: Math.round((t.refused503 + t.refused429 - p.refused503 - p.refused429) / dt),
      received_per_s: Math.round((t.received - p.received) / dt),
      latency: interval.latency.summary(),
      lag_p99_ms: interval.lag.summary().p99_ms,
      rss_kb: this.pid === null ? null : rssKb(this.pid),
      top_reason: topReason(swarm.reasons()),
    };
    this.#prev = t;
    this.#prevAt = now;
    this.timeline.push(entry);
    console.log(progressLine(entry));
  }
}

/** The most frequent of `reasons` (most frequent first) as `N× reason`; null when none. */
function topReason(reasons: Record<string, number>): string | null {
  const [top] = Object.entries(reasons);
  return top ? `${top[1]}× ${top[0]}` : null;
}

function sum(dones: Done[]): Counters {
  return dones.reduce((s, d) => addCounters(s, d.counters), newCounters());
}
