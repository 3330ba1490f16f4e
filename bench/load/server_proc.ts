/**
 * The server process as the load generator sees it from outside: its pid, resident memory
 * (`VmRSS` in `/proc/<pid>/status`) and CPU time (`/proc/<pid>/stat`). Web Workers share the
 * process, so this is all of the daemon on this node.
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
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
