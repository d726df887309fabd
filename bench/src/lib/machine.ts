/** The machine a run happened on, for the report. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
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
    node: process.version,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
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
