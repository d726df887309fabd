#!/usr/bin/env bash
# Packs every published package and installs the tarballs into a fresh ESM project and a fresh CommonJS
# project, then runs a publish/subscribe round trip in each: proves the exports maps, the dual build and
# the peer dependencies work for a user, outside the workspace.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/packs"
for pkg in core rabbitmq kafka sqs cli; do
  (cd "$root/packages/$pkg" && pnpm pack --pack-destination "$work/packs" >/dev/null)
done
tarballs=("$work"/packs/*.tgz)

roundtrip_body='
  const bus = await connect("memory://pack-check", "pack-check");
  const Ping = defineMessage({ type: "ping", schema: z.object({ n: z.number() }) });
  let got;
  await bus.subscribe({ topic: "t", group: "g", handlers: { ping: Ping.handle((d) => { got = d.n; }) } });
  await bus.publish("t", Ping, { n: 42 });
  const deadline = Date.now() + 5000;
  while (got !== 42) {
    if (Date.now() > deadline) throw new Error("round trip did not complete");
    await new Promise((r) => setTimeout(r, 10));
  }
  // The adapters load from this project through connect(url); a closed port must fail with a connection
  // problem, not with "install the package".
  for (const url of ["amqp://guest:guest@127.0.0.1:1", "kafka://127.0.0.1:1", "sqs+http://127.0.0.1:1"]) {
    const err = await connect({ transport: url, service: "x", transportOptions: {} })
      .then((b) => b.publish("t", Ping, { n: 1 }).finally(() => b.close({ drainTimeoutMs: 10 })))
      .then(() => undefined, (e) => e);
    if (!err) throw new Error(`${url}: expected a failure on a closed port`);
    if (err.code === "CONFIG" && /install/.test(err.message)) throw new Error(`${url}: adapter not resolved: ${err.message}`);
    if (/guest:guest/.test(String(err.message))) throw new Error("credentials leaked into an error");
  }
  await bus.close();
  console.log(`${kind}: round trip ok`);
'

for kind in esm cjs; do
  dir="$work/$kind"
  mkdir -p "$dir"
  if [ "$kind" = esm ]; then
    echo '{ "name": "pack-check-esm", "private": true, "type": "module" }' >"$dir/package.json"
    printf 'import { connect, defineMessage } from "@omnibus/core";\nimport { z } from "zod";\nconst kind = "esm";\n%s\n' \
      "$roundtrip_body" >"$dir/main.js"
  else
    echo '{ "name": "pack-check-cjs", "private": true, "type": "commonjs" }' >"$dir/package.json"
    printf 'const { connect, defineMessage } = require("@omnibus/core");\nconst { z } = require("zod");\nconst kind = "cjs";\n(async () => {\n%s\n})().catch((e) => { console.error(e); process.exit(1); });\n' \
      "$roundtrip_body" >"$dir/main.js"
  fi
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "${tarballs[@]}" zod@4 >/dev/null)
  (cd "$dir" && timeout 120 node main.js)
done

# The omnibus command from the packed CLI: it runs, and finds the adapter installed beside it (a closed
# port is a failed operation, exit 1, never "install the package", exit 2), with the password redacted.
cli_dir="$work/esm"
(cd "$cli_dir" && timeout 60 node_modules/.bin/omnibus --help >/dev/null)
set +e
cli_err="$(cd "$cli_dir" && timeout 60 node_modules/.bin/omnibus --url amqp://guest:hunter2@127.0.0.1:1 peek -t x -g y 2>&1)"
cli_code=$?
set -e
if [ "$cli_code" != 1 ] || grep -q hunter2 <<<"$cli_err"; then
  echo "omnibus CLI: expected exit 1 without credentials, got $cli_code: $cli_err" >&2
  exit 1
fi
echo "cli: omnibus ok"
