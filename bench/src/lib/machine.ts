/** The machine a run happened on, for the report. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  /** The Node.js of the main figures (`transports` in latest.json): the machine's own `node`. */
  node: string;
  loadAverage: number[];
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism?.() ?? cpus.length,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: nodeRun().mainVersion,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** Set by scripts/bench.mjs: the version of the machine's own `node` (the one that ran the launcher). */
export const MAIN_NODE_ENV = 'OMNIBUS_BENCH_MAIN_NODE';

export interface NodeRun {
  /** This process's Node.js version, e.g. v24.11.1. */
  version: string;
  /** Its major, e.g. "24" (the key of `byNode` in latest.json). */
  major: string;
  /** The version of the machine's own Node.js, whose figures are the main ones. */
  mainVersion: string;
  /** Whether this run's figures are the main ones (same major as the machine's Node.js). */
  isMain: boolean;
}

export function nodeMajor(version: string): string {
  return /^v?(\d+)/.exec(version)?.[1] ?? version;
}

/**
 * Which Node.js runs this benchmark, and whether its figures are the main ones. `pnpm bench --node 24`
 * runs under another Node.js than the machine's; such figures are kept apart (`byNode` in latest.json).
 * Without the launcher's variable (sources run directly with tsx), this Node.js is the main one.
 */
export function nodeRun(): NodeRun {
  const version = process.version;
  const major = nodeMajor(version);
  const env = process.env[MAIN_NODE_ENV];
  const isMain = !env || nodeMajor(env) === major;
  return { version, major, mainVersion: isMain ? version : env, isMain };
}

/**
 * The command line of the process listening on a local TCP port, e.g. to read the version of a broker
 * started from jars (`kafka_2.13-4.1.2.jar`); undefined when it cannot be read.
 */
export function listenerCommandLine(port: number): string | undefined {
  try {
    const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8', timeout: 5000 });
    const pid = /pid=(\d+)/.exec(out)?.[1];
    if (!pid) return undefined;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return undefined;
  }
}

/** The first capture of `pattern` in the command line of whatever listens on `port`. */
export function versionFromListener(port: number, pattern: RegExp): string | undefined {
  const cmd = listenerCommandLine(port);
  return cmd ? pattern.exec(cmd)?.[1] : undefined;
}
