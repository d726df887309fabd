/** The logging seam: any pino-style or console-style logger fits; silent unless one is given. */

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(obj: LogFields, msg?: string): void;
  info(obj: LogFields, msg?: string): void;
  warn(obj: LogFields, msg?: string): void;
  error(obj: LogFields, msg?: string): void;
}

const noop = () => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** Adapts `console` (or anything with log-level methods taking a message first) to the Logger shape. */
export function consoleLogger(target: Pick<Console, 'debug' | 'info' | 'warn' | 'error'> = console): Logger {
  const wrap = (fn: (...args: unknown[]) => void) => (obj: LogFields, msg?: string) => fn(msg ?? '', obj);
  return {
    debug: wrap(target.debug.bind(target)),
    info: wrap(target.info.bind(target)),
    warn: wrap(target.warn.bind(target)),
    error: wrap(target.error.bind(target)),
  };
}
