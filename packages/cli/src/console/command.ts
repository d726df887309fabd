/** `omnibus console`: starts the web console and keeps it open until Ctrl-C or SIGTERM. */
import { type Bus, ConfigError, type GroupRef, redactUrl } from '@omnibus/core';
import { type Command, InvalidArgumentError } from 'commander';
import { isLoopback, startConsole } from './server.js';

interface ConsoleIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65_535)
    throw new InvalidArgumentError('--port must be an integer from 0 to 65535');
  return n;
}

function watch(v: string, prev: GroupRef[] = []): GroupRef[] {
  const out = [...prev];
  for (const item of v.split(',').filter(Boolean)) {
    const slash = item.lastIndexOf('/');
    if (slash <= 0 || slash === item.length - 1)
      throw new InvalidArgumentError(`--watch takes <topic>/<group>, got ${JSON.stringify(item)}`);
    out.push({ topic: item.slice(0, slash), group: item.slice(slash + 1) });
  }
  return out;
}

/** Adds the `console` command; `bus` connects with the global --url, as every other command does. */
export function registerConsole(
  program: Command,
  deps: { bus: () => Promise<Bus>; io: ConsoleIo; url: () => string | undefined },
): void {
  program
    .command('console')
    .description('a local web page to watch groups and browse, redrive and purge dead letters')
    .option(
      '--host <address>',
      'address to listen on (anything but loopback needs --allow-remote)',
      '127.0.0.1',
    )
    .option('--port <port>', 'port to listen on (0 picks a free one)', port, 7766)
    .option(
      '--allow-remote',
      'allow a non-loopback --host: anyone who can reach it and has the token can purge',
    )
    .option(
      '--watch <topic/group...>',
      'show these groups (repeat or comma-separate); needed on RabbitMQ, which cannot list its groups',
      watch,
    )
    .action(async (o: { host: string; port: number; allowRemote?: boolean; watch?: GroupRef[] }) => {
      if (!isLoopback(o.host) && !o.allowRemote)
        throw new ConfigError(
          'host',
          `${o.host} is not a loopback address: the console can move and delete messages, so pass --allow-remote to expose it`,
        );
      const bus = await deps.bus();
      const running = await startConsole({
        bus,
        host: o.host,
        port: o.port,
        watch: o.watch ?? [],
        label: redactUrl(deps.url() ?? ''),
      });
      if (!isLoopback(o.host))
        deps.io.stderr.write(
          `omnibus: warning: the console listens on ${o.host}, beyond this machine; the token is all that guards it and it travels unencrypted (plain HTTP)\n`,
        );
      // Printed once: the token is not stored anywhere, a restart makes a new one.
      deps.io.stdout.write(`omnibus console: open ${running.url}\n`);
      deps.io.stdout.write('(the token after #token= is the only key to the console; Ctrl-C stops it)\n');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await running.close();
    });
}
