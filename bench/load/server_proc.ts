/**
 * The server process as the load generator sees it from outside: its pid, resident memory
 * (`VmRSS` in `/proc/<pid>/status`) and CPU time (`/proc/<pid>/stat`, and by thread from
 * `/proc/<pid>/task/<tid>/stat`). Web Workers share the process, so this is all of the daemon
 * on this node.
 *
 * @module
 */

import { readFileSync } from "node:fs";

/** The pid from `--server_pid`, else from the pid file; null when neither gives a live one. */
export function serverPid(explicit: number | null, pidFile: string): number | null {
  if (explicit !== null) return rssKb(explicit) === null ? null : explicit;
  try {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 && rssKb(pid) !== null ? pid : null;
  } catch {
    return null;
  }
}

/** The process's resident set in KiB; null when it cannot be read. */
export function rssKb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** `sysconf(_SC_CLK_TCK)` on Linux. */
const CLOCK_TICKS = 100;

/** CPU seconds (user and system, every thread) process `pid` used so far; null if unreadable. */
export function cpuSeconds(pid: number): number | null {
  try {
    return statSeconds(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

/** The user and system time of a `/proc` `stat` line, in seconds. */
function statSeconds(stat: string): number {
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * CPU seconds process `pid` used so far, by thread name (the daemon's main thread is `deno`,
 * its shards `worker-1`, `worker-2`, ...; V8's helpers share one name); empty if unreadable.
 */
export function cpuSecondsByThread(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  let tasks: Deno.DirEntry[];
  try {
    tasks = [...Deno.readDirSync(`/proc/${pid}/task`)];
  } catch {
    return byName;
  }
  for (const task of tasks) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${task.name}/stat`, "utf8");
    } catch {
      continue; // the thread ended meanwhile
    }
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    byName.set(name, (byName.get(name) ?? 0) + statSeconds(stat));
  }
  return byName;
}
