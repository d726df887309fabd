/**
 * The `omnibus` command: operates any Omnibus transport from a shell. Exit codes: 0 done, 1 the operation
 * failed (broker refused, unreachable, not supported), 2 usage or configuration error (bad arguments,
 * bad URL, missing adapter package, unknown group).
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import {
  adapterPackage,
  type Bus,
  ConfigError,
  connect,
  type Envelope,
  type GroupOverview,
  isOmnibusError,
  type MessageSource,
  type PeekedMessage,
  type RedriveFilter,
  redactText,
  silentLogger,
  type Transport,
  type TransportFactory,
} from '@omnibus/core';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { registerConsole } from './console/command.js';
import { iso, messageJson, oneLine, ProgressBar, parseTime, table } from './format.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

interface GlobalOptions {
  url?: string;
  json?: boolean;
}

/** A usage error found after parsing (exit 2). */
class UsageError extends Error {}

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

function positive(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
    return n;
  };
}

function time(v: string): number {
  const ms = parseTime(v);
  if (ms === undefined)
    throw new InvalidArgumentError(
      'expected an ISO time (2026-01-31T12:00:00Z), epoch ms, or an age like 15m, 2h, 7d',
    );
  return ms;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, ...v.split(',').filter(Boolean)];
}

/**
 * Loads the transport for a URL: from the working directory's packages as connect() does, or else
 * from the packages installed beside the CLI (a global install with its adapters).
 */
async function transportFor(url: string): Promise<Transport | string> {
  const pkg = adapterPackage(url);
  if (pkg === undefined) return url;
  for (const base of [`${process.cwd()}/noop.js`, import.meta.url]) {
    let entry: string;
    try {
      entry = createRequire(base).resolve(pkg);
    } catch {
      continue;
    }
    // An ESM entry where the package has one: resolve() follows the `require` condition.
    const esm = entry.replace(/\.cjs$/, '.js');
    const mod = (await import(pathToFileURL(esm).href)) as { transportFromUrl?: TransportFactory };
    if (typeof mod.transportFromUrl === 'function') return mod.transportFromUrl(url);
  }
  throw new ConfigError(
    'url',
    `this URL needs the ${pkg} package: install it beside the CLI (npm install ${pkg})`,
  );
}

export async function run(argv: string[], io: Io): Promise<number> {
  const out = (text: string) => io.stdout.write(`${text}\n`);
  const json = (value: unknown): void => {
    io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  };
  let exitCode = EXIT_OK;
  const open: Bus[] = [];

  const program = new Command()
    .name('omnibus')
    .description('Operate an Omnibus bus: stats, peek, dead letters, replay and tail.')
    .addOption(
      new Option('--url <url>', 'transport URL (amqp://, kafka://, sqs+http://, ...)').env('OMNIBUS_URL'),
    )
    .option('--json', 'print JSON for scripts instead of tables')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError('(run omnibus --help for usage)');
  program.addHelpText(
    'after',
    '\nExit codes: 0 done, 1 the operation failed, 2 usage or configuration error.\nThe URL may also come from OMNIBUS_URL.',
  );

  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const bus = async (): Promise<Bus> => {
    const url = globals().url;
    if (!url) throw new UsageError('no transport URL: pass --url or set OMNIBUS_URL');
    const b = await connect({
      transport: await transportFor(url),
      service: 'omnibus-cli',
      logger: silentLogger,
      drainTimeoutMs: 2_000,
    });
    open.push(b);
    return b;
  };
  const ref = (o: { topic: string; group: string }) => ({ topic: o.topic, group: o.group });
  const topicGroup = (c: Command) =>
    c
      .requiredOption('-t, --topic <topic>', 'topic name')
      .requiredOption('-g, --group <group>', 'consumer group name');

  program
    .command('stats')
    .description('topics and groups with depth, lag, dead letters and oldest-message age')
    .option('-t, --topic <topic>', 'only this topic (needs --group where the broker cannot list groups)')
    .option('-g, --group <group>', 'only this group')
    .action(async (o: { topic?: string; group?: string }) => {
      const b = await bus();
      let rows: GroupOverview[];
      if (o.topic && o.group)
        rows = [{ ...ref(o as never), stats: await b.operations.stats(ref(o as never)) }];
      else {
        if (o.group && !o.topic) throw new UsageError('--group needs --topic');
        rows = (await b.operations.groups()).filter((g) => !o.topic || g.topic === o.topic);
      }
      if (globals().json) return json(rows);
      const n = (v: number | null) => (v === null ? '-' : String(v));
      out(
        table(
          ['TOPIC', 'GROUP', 'DEPTH', 'IN-FLIGHT', 'DELAYED', 'DEAD', 'LAG', 'OLDEST-AGE-MS'],
          rows.map((r) => [
            r.topic,
            r.group,
            n(r.stats.depth),
            n(r.stats.inFlight),
            n(r.stats.delayed),
            n(r.stats.deadLettered),
            n(r.stats.lag),
            n(r.stats.oldestAgeMs),
          ]),
        ),
      );
    });

  const listMessages = (messages: PeekedMessage[], dead: boolean) => {
    if (globals().json) return json(messages.map(messageJson));
    out(
      table(
        dead
          ? ['ID', 'TYPE', 'REASON', 'ATTEMPTS', 'DEAD-LETTERED', 'ERROR']
          : ['ID', 'TYPE', 'TIME', 'KEY', 'DELIVERIES'],
        messages.map((m) =>
          dead
            ? [
                m.id,
                m.envelope?.type ?? '(undecodable)',
                m.deadLetter?.reason ?? '-',
                String(m.deadLetter?.attempts ?? '-'),
                iso(m.deadLetter?.deadLetteredAt),
                oneLine(m.deadLetter?.error ?? m.decodeError ?? '', 60),
              ]
            : [
                m.id,
                m.envelope?.type ?? '(undecodable)',
                iso(m.envelope?.time),
                m.envelope?.key ?? '-',
                m.deliveryCount === undefined ? '-' : String(m.deliveryCount),
              ],
        ),
      ),
    );
    if (messages.length === 0) io.stderr.write('no messages\n');
  };

  topicGroup(
    program
      .command('peek')
      .description(
        "show the messages waiting in a group without consuming them (see the README for each broker's caveats)",
      ),
  )
    .option('--dlq', "the group's dead letters instead of its queue")
    .option('-n, --limit <n>', 'at most this many messages', int('--limit'), 20)
    .action(async (o: { topic: string; group: string; dlq?: boolean; limit: number }) => {
      const source: MessageSource = o.dlq ? 'dead-letter' : 'group';
      const b = await bus();
      listMessages(await b.operations.peek({ ...ref(o), source, limit: o.limit }), source === 'dead-letter');
    });

  const dlq = program.command('dlq').description("a group's dead letters: list, show, redrive, purge");

  topicGroup(dlq.command('list').description('dead letters with reason, attempts and error'))
    .option('-n, --limit <n>', 'at most this many', int('--limit'), 50)
    .action(async (o: { topic: string; group: string; limit: number }) => {
      const b = await bus();
      listMessages(await b.operations.peek({ ...ref(o), source: 'dead-letter', limit: o.limit }), true);
    });

  topicGroup(
    dlq.command('show').description('one dead letter in full: envelope, data, failure').argument('<id>'),
  )
    .option('-n, --scan <n>', 'look at most this many dead letters deep', int('--scan'), 1000)
    .action(async (id: string, o: { topic: string; group: string; scan: number }) => {
      const b = await bus();
      const found = (await b.operations.peek({ ...ref(o), source: 'dead-letter', limit: o.scan })).find(
        (m) => m.id === id,
      );
      if (!found) {
        io.stderr.write(`omnibus: no dead letter ${id} in ${o.topic}/${o.group}\n`);
        exitCode = EXIT_FAILED;
        return;
      }
      const m = messageJson(found);
      if (globals().json) return json(m);
      const d = found.deadLetter;
      out(
        [
          `id:            ${m.id}`,
          `type:          ${m.type ?? '(undecodable)'}`,
          `source:        ${m.source ?? '-'}`,
          `time:          ${m.time ?? '-'}`,
          `key:           ${m.key ?? '-'}`,
          `reason:        ${d?.reason ?? '-'}`,
          `attempts:      ${d?.attempts ?? '-'}`,
          `dead-lettered: ${iso(d?.deadLetteredAt)}`,
          `error:         ${d?.error ?? found.decodeError ?? '-'}`,
          `headers:       ${JSON.stringify(m.headers)}`,
          `data:          ${JSON.stringify(m.data, null, 2)}`,
        ].join('\n'),
      );
    });

  topicGroup(
    dlq
      .command('redrive')
      .description(
        'move dead letters back to their group (at least once: a copy is confirmed before the dead letter is removed)',
      ),
  )
    .option('--all', 'every dead letter (needed when no filter is given)')
    .option('--id <id...>', 'only these envelope ids (repeat or comma-separate)', collect)
    .option('--type <type...>', 'only these message types', collect)
    .option('--reason <reason...>', 'only these dead-letter reasons (max-attempts, validation, ...)', collect)
    .option('--from <time>', 'dead-lettered at or after this time', time)
    .option('--to <time>', 'dead-lettered before this time', time)
    .option('--rate <per-second>', 'at most this many dead letters per second', positive('--rate'))
    .action(
      async (o: {
        topic: string;
        group: string;
        all?: boolean;
        id?: string[];
        type?: string[];
        reason?: string[];
        from?: number;
        to?: number;
        rate?: number;
      }) => {
        const filter: RedriveFilter = {};
        if (o.id) filter.ids = o.id;
        if (o.type) filter.types = o.type;
        if (o.reason) filter.reasons = o.reason;
        if (o.from !== undefined) filter.fromMs = o.from;
        if (o.to !== undefined) filter.toMs = o.to;
        const filtered = Object.keys(filter).length > 0;
        if (!filtered && !o.all)
          throw new UsageError('say which dead letters: --all, or --id/--type/--reason/--from/--to');
        if (filtered && o.all) throw new UsageError('--all cannot be combined with a filter');
        const b = await bus();
        const bar = io.stderr.isTTY && !globals().json ? new ProgressBar(io.stderr, 'redrive') : undefined;
        // Ctrl-C stops between two messages: the one in hand is finished, nothing is left half-moved.
        const abort = new AbortController();
        const onSignal = () => abort.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        let result: Awaited<ReturnType<typeof b.operations.redrive>>;
        try {
          result = await b.operations.redrive({
            ...ref(o),
            filter,
            signal: abort.signal,
            ...(o.rate !== undefined ? { ratePerSecond: o.rate } : {}),
            onProgress: (p) => bar?.update(p.scanned, p.total, `redriven ${p.redriven}`),
          });
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          bar?.end();
        }
        if (abort.signal.aborted) exitCode = EXIT_FAILED;
        if (globals().json) return json({ ...result, interrupted: abort.signal.aborted });
        out(
          `redriven ${result.redriven} of ${result.scanned} dead letters looked at (${result.kept} kept)` +
            (abort.signal.aborted ? '; interrupted' : ''),
        );
      },
    );

  topicGroup(dlq.command('purge').description('delete every dead letter of the group (cannot be undone)'))
    .requiredOption('--confirm <target>', 'repeat the target to confirm: <topic>/<group>/dead-letter')
    .action(async (o: { topic: string; group: string; confirm: string }) => {
      const b = await bus();
      const result = await b.operations.purge({ ...ref(o), source: 'dead-letter', confirm: o.confirm });
      if (globals().json) return json(result);
      out(`purged ${result.purged ?? 'all'} dead letters of ${o.topic}/${o.group}`);
    });

  const printEnvelope = (e: Envelope<unknown>) => {
    if (globals().json) {
      io.stdout.write(
        `${JSON.stringify({ id: e.id, type: e.type, source: e.source, time: iso(e.time), key: e.key ?? null, headers: e.headers, data: e.data })}\n`,
      );
    } else out(`${iso(e.time)}  ${e.type}  ${e.id}  ${oneLine(JSON.stringify(e.data) ?? '', 100)}`);
  };

  /** Prints messages until `limit` arrived, `idleMs` passed without one, or Ctrl-C; resolves the count. */
  const stream = async (
    start: (onMessage: (e: Envelope<unknown>) => void) => Promise<{ close(): Promise<void> }>,
    limit: number | undefined,
    idleMs: number | undefined,
  ): Promise<number> => {
    let count = 0;
    let finish!: () => void;
    const finished = new Promise<void>((r) => {
      finish = r;
    });
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      if (idleMs === undefined) return;
      clearTimeout(idle);
      idle = setTimeout(finish, idleMs);
    };
    const sub = await start((e) => {
      if (limit !== undefined && count >= limit) return;
      count++;
      printEnvelope(e);
      arm();
      if (limit !== undefined && count >= limit) finish();
    });
    arm();
    process.once('SIGINT', finish);
    await finished;
    process.off('SIGINT', finish);
    clearTimeout(idle);
    await sub.close();
    return count;
  };

  program
    .command('replay')
    .description(
      'print a topic’s history from a time, where the broker keeps history (Kafka, RabbitMQ streams, NATS)',
    )
    .requiredOption('-t, --topic <topic>', 'topic name')
    .requiredOption('--from <time>', 'ISO time, epoch ms or an age like 15m', time)
    .option('--type <type...>', 'only these types or patterns (default all)', collect)
    .option('-n, --limit <n>', 'stop after this many messages', int('--limit'))
    .option('--idle-ms <ms>', 'stop once no message came for this long', int('--idle-ms'), 3000)
    .action(async (o: { topic: string; from: number; type?: string[]; limit?: number; idleMs: number }) => {
      const b = await bus();
      const n = await stream(
        (onMessage) =>
          b.replay({
            topic: o.topic,
            from: { timestamp: o.from },
            handlers: Object.fromEntries(
              (o.type ?? ['#']).map((t) => [t, (_d: unknown, ctx) => onMessage(ctx.envelope)]),
            ),
          }),
        o.limit,
        o.idleMs,
      );
      if (!globals().json) io.stderr.write(`${n} messages\n`);
    });

  program
    .command('tail')
    .description(
      'print messages as they are published, without taking them from any group (needs replay support)',
    )
    .requiredOption('-t, --topic <topic>', 'topic name')
    .option('--type <type...>', 'only these types or patterns (default all)', collect)
    .option('-n, --limit <n>', 'stop after this many messages', int('--limit'))
    .option('--timeout-ms <ms>', 'stop after this long without a message', int('--timeout-ms'))
    .action(async (o: { topic: string; type?: string[]; limit?: number; timeoutMs?: number }) => {
      const b = await bus();
      await stream(
        (onMessage) =>
          b.replay({
            topic: o.topic,
            from: 'latest',
            handlers: Object.fromEntries(
              (o.type ?? ['#']).map((t) => [t, (_d: unknown, ctx) => onMessage(ctx.envelope)]),
            ),
          }),
        o.limit,
        o.timeoutMs,
      );
    });

  registerConsole(program, { bus, io, url: () => globals().url });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    exitCode = report(err, io);
  } finally {
    await Promise.allSettled(open.map((b) => b.close({ drainTimeoutMs: 2_000 })));
  }
  return exitCode;
}

/** One line on stderr, credentials redacted, no stack (OMNIBUS_DEBUG=1 adds it); returns the exit code. */
function report(err: unknown, io: Io): number {
  if (err instanceof CommanderError) {
    // Commander already printed its message; help and version are not failures.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
      return EXIT_OK;
    return EXIT_USAGE;
  }
  const usage = err instanceof UsageError || err instanceof ConfigError;
  const message = redactText(err instanceof Error ? err.message : String(err));
  const code = isOmnibusError(err) && !usage ? ` [${err.code}]` : '';
  io.stderr.write(`omnibus: ${message}${code}\n`);
  if (io.env.OMNIBUS_DEBUG && err instanceof Error && err.stack)
    io.stderr.write(`${redactText(err.stack)}\n`);
  return usage ? EXIT_USAGE : EXIT_FAILED;
}
