#!/usr/bin/env node
// The `pg-background` command (package.json `bin`; built to dist/cli/main.js). Runs one
// command and exits with its status; see run.ts for the commands and args.ts for the grammar.
import { main } from './run.js';

process.exitCode = await main(process.argv.slice(2), { env: process.env, stdout: process.stdout, stderr: process.stderr });
