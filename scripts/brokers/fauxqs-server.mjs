// Starts fauxqs (SNS + SQS + S3 emulator) without its per-request log; run under Node >= 22 by fauxqs.sh.
// The package's own CLI always turns the request log on, hence this launcher.
import { startFauxqs } from 'fauxqs';

const port = Number(process.env.FAUXQS_PORT ?? 4566);
const server = await startFauxqs({ port, logger: false });
console.log(`fauxqs listening on ${server.address}`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
