#!/usr/bin/env node
/** The `omnibus` executable: runs the command line and exits with its code (see cli.ts). */
import { run } from './cli.js';

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
