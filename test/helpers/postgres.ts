/**
 * A real PostgreSQL server for tests: a throwaway cluster (initdb) in a temporary folder, listening
 * on loopback on a free port, owned by the test run and removed when it stops. The binaries come
 * from Debian's `postgresql` package (`/usr/lib/postgresql/<major>/bin`, or on PATH). PostgreSQL
 * refuses to run as root, so as root the cluster is run as the `postgres` user the package creates.
 *
 * Without the binaries the PostgreSQL tests skip, and `npm test` prints one line saying how to run
 * them (`pgSkipReason`, test/global-setup.ts); CI (`.ci/run`) installs the package, so there they
 * run. `CONTAINED_TEST_POSTGRES=off` skips them on purpose.
 *
 * Usage: `const pg = await startPostgres()` in `beforeAll`, `await pg.stop()` in `afterAll`;
 * `await pg.createDatabase()` gives each test its own empty database URL.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

const USER = 'contained';

function binDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const majors = readdirSync(root).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
    for (const m of majors) if (existsSync(path.join(root, m, 'bin', 'initdb'))) return path.join(root, m, 'bin');
  }
  const found = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  return found.status === 0 && found.stdout.trim() ? path.dirname(found.stdout.trim()) : undefined;
}

const BIN = binDir();
const AS_ROOT = process.getuid?.() === 0;
const RUN_AS = AS_ROOT && spawnSync('id', ['-u', 'postgres']).status === 0 ? 'postgres' : undefined;

/** Why the PostgreSQL tests cannot run here, or undefined when they can (printed once per `npm test` by test/global-setup.ts). */
export const pgSkipReason: string | undefined =
  process.env.CONTAINED_TEST_POSTGRES === 'off'
    ? 'PostgreSQL tests skipped (CONTAINED_TEST_POSTGRES=off).'
    : BIN === undefined
    ? 'PostgreSQL tests skipped: no initdb found. Install Debian\'s "postgresql" package (apt-get install postgresql) to run them; .ci/run does.'
    : AS_ROOT && RUN_AS === undefined
      ? 'PostgreSQL tests skipped: running as root and there is no "postgres" user to run the server as (install the "postgresql" package).'
      : undefined;

/** True when a throwaway PostgreSQL can be started here. */
export const pgAvailable = pgSkipReason === undefined;

function run(bin: string, args: string[]): void {
  const exe = path.join(BIN as string, bin);
  const cmd = RUN_AS ? 'runuser' : exe;
  const argv = RUN_AS ? ['-u', RUN_AS, '--', exe, ...args] : args;
  execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface PgServer {
  /** `postgres://contained@127.0.0.1:<port>/postgres` — the maintenance database. */
  readonly url: string;
  readonly port: number;
  /** A new empty database; returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Stop the server (fast shutdown: open connections are cut), keeping the cluster. */
  halt(): Promise<void>;
  /** Start it again on the same port after `halt`. */
  resume(): Promise<void>;
  /** Stop the server and remove the cluster. */
  stop(): Promise<void>;
}

let databases = 0;

export async function startPostgres(): Promise<PgServer> {
  if (!pgAvailable) throw new Error(pgSkipReason);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-pg-'));
  chmodSync(dir, 0o777);
  const data = path.join(dir, 'data');
  const port = await freePort();
  if (RUN_AS) execFileSync('chown', [RUN_AS, dir]);
  run('initdb', ['-D', data, '-U', USER, '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
  const start = (): void =>
    run('pg_ctl', ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`, 'start']);
  start();
  const url = `postgres://${USER}@127.0.0.1:${port}/postgres`;
  let running = true;
  return {
    url,
    port,
    async createDatabase(name = `t${process.pid}_${++databases}_${Date.now().toString(36)}`) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name}"`);
      } finally {
        await client.end();
      }
      return `postgres://${USER}@127.0.0.1:${port}/${name}`;
    },
    async halt() {
      if (!running) return;
      run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      running = false;
    },
    async resume() {
      if (running) return;
      start();
      running = true;
    },
    async stop() {
      try {
        if (running) run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        running = false;
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
