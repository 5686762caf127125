/**
 * `npm start` → `contained demo [--port N] [--data-dir DIR]`: the whole product on one machine.
 *
 * Idempotent set-up under `./.contained/` (kept between runs; delete the folder to start over):
 * sample data for the three example agents (`demo/`), a host config (`demo.config.json`, written
 * once — edit it, e.g. to send real mail through an SMTP relay), the example images built into
 * `images/` (never into the package's own folder: for an installed package that is inside
 * node_modules, possibly read-only and shared by every project), their grants installed once
 * (report-digest: reports `contained`, mail `assisted`; refund-desk: orders `contained`, refunds
 * `assisted` with two approvers; records-cleanup: reads `contained`, deletes `assisted` with two
 * approvers), fresh demo operator tokens (the previous ones revoked). Then it
 * starts the host with its web console, starts example runs so requests are waiting, and prints
 * one-time login links. Ctrl-C closes the host cleanly; the host log goes to `.contained/host.log`.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { ContainedError } from '../../runtime/errors.js';
import { EXAMPLES_DIR, buildExamples, type BuiltExample } from '../../sandbox-images/build-examples.js';
import { loadHostConfig } from '../config.js';
import { createHostLogger } from '../logger.js';
import type { NewGrantInput } from '../grants.js';
import { type Host, startHost } from '../host.js';
import type { Grant, Role } from '../model.js';
import { createToken } from '../tokens.js';
import { type CliIo, intFlag, parseFlags, stringFlag } from './args.js';

const USAGE = `Usage: contained demo [--port N] [--data-dir DIR]

Sets up (once) and starts the local demo: the host on the embedded store in ./.contained/, the
example agents with their grants, runs that wait for you, and the web console. Ctrl-C stops it.
`;

/** The demo host config, written once to `<data-dir>/demo.config.json` (paths relative to it). */
export function demoConfig(port: number): Record<string, unknown> {
  return {
    dataDir: '.',
    listen: { host: '127.0.0.1', port },
    // A demo request waits a day for you (the default is 15 minutes).
    requestTimeoutMs: 86_400_000,
    capabilities: {
      reports: { kind: 'fs', scope: { root: 'demo/reports', readOnly: true, extensions: ['md', 'txt'] } },
      out: { kind: 'fs', scope: { root: 'demo/out', extensions: ['md'], maxFileBytes: 262_144 } },
      // The outbox delivers into this maildir-style folder (its host options). For a real relay replace it with
      // "host": { "smtp": { "host": "smtp.example.com", "port": 587, "auth": { "user": "…", "pass": "…" } } }
      mail: { kind: 'outbox', scope: { from: 'digest@example.com', allowedRecipients: ['@example.com'], maxPerRun: 5 }, host: { folder: 'demo/mail' } },
      orders: { kind: 'sql', scope: { file: 'demo/shop.db', tables: ['orders'], readOnly: true, maxRows: 10 } },
      payments: { kind: 'payments', scope: { currency: 'EUR', maxAmountCents: 50_000 }, host: { ledger: { file: 'demo/shop.db', currency: 'EUR' } } },
      records: { kind: 'sql', scope: { file: 'demo/records.db', tables: ['records'], maxRows: 500 } },
    },
  };
}

type DemoGrant = Pick<NewGrantInput, 'capability' | 'methods' | 'mode' | 'reason'> & { approvals?: number; force?: string };

/** The grants an operator would give each example (by image name; installed for its digest). */
export const DEMO_GRANTS: Readonly<Record<string, DemoGrant[]>> = {
  'report-digest': [
    { capability: 'reports', methods: ['list', 'read'], mode: 'contained', reason: 'read the weekly status reports' },
    {
      capability: 'out',
      methods: ['write'],
      mode: 'contained',
      reason: 'save the digest file',
      force: 'demo: fs.write can replace files, but this folder holds only the digests this agent writes',
    },
    { capability: 'mail', methods: ['send'], mode: 'assisted', approvals: 1, reason: 'a person reads the digest before it is emailed' },
  ],
  'refund-desk': [
    { capability: 'orders', methods: ['query'], mode: 'contained', reason: 'look up the order before refunding' },
    { capability: 'payments', methods: ['refund'], mode: 'assisted', approvals: 2, reason: 'refunds move money: two people approve each one' },
  ],
  'records-cleanup': [
    { capability: 'records', methods: ['query'], mode: 'contained', reason: 'find stale records' },
    { capability: 'records', methods: ['execute'], mode: 'assisted', approvals: 2, reason: 'deletes are destructive: two sign-offs' },
  ],
};

/** Demo operators: a fresh token each start (the previous one revoked), shown only as a login link. */
const DEMO_OPERATORS: ReadonlyArray<{ name: string; role: Role }> = [
  { name: 'demo-admin', role: 'admin' },
  { name: 'demo-approver', role: 'approver' },
];

export async function demoCommand(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, { port: { type: 'string' }, 'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  const home = path.resolve(stringFlag(values, 'data-dir') ?? '.contained');
  const rel = (p: string): string => path.relative(process.cwd(), p) || '.';
  const configFile = path.join(home, 'demo.config.json');
  const port = intFlag(values, 'port');

  io.stdout(`Setting up the demo in ${rel(home)}/ (kept between runs; delete it to start over)\n`);
  prepareData(home);
  if (!existsSync(configFile)) {
    writeFileSync(configFile, `${JSON.stringify(demoConfig(port ?? 7420), null, 2)}\n`);
    io.stdout(`  wrote the host config        ${rel(configFile)}\n`);
  } else {
    io.stdout(`  using the host config        ${rel(configFile)}\n`);
  }
  const config = await loadHostConfig(configFile).catch((error: unknown) => {
    // A demo config written by an earlier version (top-level mail, paymentsLedger): say how to renew it.
    if (error instanceof ContainedError && error.code === 'INVALID_ARGUMENT' && Array.isArray(error.data?.path) && ['mail', 'secrets', 'paymentsLedger'].includes(String(error.data.path[0]))) {
      throw new ContainedError('USAGE', `${error.message} — ${rel(configFile)} was written by an earlier version: delete it (or move those keys) and run again`, { cause: error });
    }
    throw error;
  });
  if (port !== undefined) config.listen.port = port;

  const built = await buildExamples(EXAMPLES_DIR, path.join(home, 'images'));
  io.stdout(`  built the example images     into ${rel(path.join(home, 'images'))}/: ${built.map((b) => `${b.name} ${b.digest.slice(7, 19)}…`).join(', ')}\n`);

  const logFile = path.join(home, 'host.log');
  const logger = createHostLogger({ level: 'info' }, pino.destination({ dest: logFile, sync: false, mkdir: true }));
  let host: Host;
  try {
    host = await startHost({ config, logger });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new ContainedError('USAGE', `port ${config.listen.port} is in use (is another \`npm start\` running?); try \`npm start -- --port ${config.listen.port + 1}\``);
    }
    throw error;
  }
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  try {
    const added = await installGrants(host, built);
    io.stdout(`  grants                       ${added > 0 ? `${added} installed` : 'already installed'}\n`);
    const links: string[] = [];
    for (const op of DEMO_OPERATORS) {
      for (const t of await host.store.listTokens()) if (t.name === op.name && t.revokedAt === undefined) await host.store.revokeToken(t.id, Date.now());
      const { token } = await createToken({ name: op.name, role: op.role, createdBy: 'npm start' }, host.store);
      const link = await host.console?.loginLink(token);
      if (link) links.push(`  ${op.name.padEnd(14)} ${`(${op.role})`.padEnd(11)} ${host.url}${link.path}`);
    }
    const unwatch = watch(host, io);
    await startRuns(host, built, home, io);
    const waiting = (await host.requests.pending()).length;

    io.stdout(`\nThe host is running: ${host.url}  (log: ${rel(logFile)})\n`);
    io.stdout(`Web console:         ${host.url}/console/\n`);
    io.stdout(`One-time login links (each works once, for an hour; npm start prints new ones):\n${links.join('\n')}\n`);
    io.stdout(`  Open the second one in a private window to be the second approver of a refund.\n`);
    io.stdout(`\n${waiting > 0 ? 'Agents are waiting for you on the Pending page.' : 'The agents are starting; their requests will appear on the Pending page.'} Emails land in ${rel(path.join(home, 'demo', 'mail', 'new'))}/;\n`);
    io.stdout(`to use a real SMTP relay, set capabilities.mail.host to { "smtp": { "host", "port", "auth" } } in ${rel(configFile)}.\n`);
    io.stdout(`More operators: npx contained token create --config ${rel(configFile)} --name you --role approver\n`);
    io.stdout('Press Ctrl-C to stop.\n\n');
    await stopped;
    unwatch();
    io.stdout('\nStopping the host…\n');
  } finally {
    await host.close();
  }
  io.stdout('Stopped. Pending requests stay in the store and are offered again next time.\n');
  return 0;
}

/** Sample data, created only when missing: the reports folder, the shop and records databases. */
function prepareData(home: string): void {
  const demo = path.join(home, 'demo');
  for (const sub of ['reports', 'out', 'mail']) mkdirSync(path.join(demo, sub), { recursive: true });
  if (readdirSync(path.join(demo, 'reports')).length === 0) cpSync(path.join(EXAMPLES_DIR, 'report-digest', 'data', 'reports'), path.join(demo, 'reports'), { recursive: true });
  for (const [file, example] of [['shop.db', 'refund-desk'], ['records.db', 'records-cleanup']] as const) {
    const target = path.join(demo, file);
    if (existsSync(target)) continue;
    const db = new Database(target);
    try {
      db.exec(readFileSync(path.join(EXAMPLES_DIR, example, 'data', 'seed.sql'), 'utf8'));
    } finally {
      db.close();
    }
  }
}

/** Each demo grant for its example's current digest, unless an active grant already says the same. */
async function installGrants(host: Host, built: readonly BuiltExample[]): Promise<number> {
  const now = Date.now();
  const active = await host.store.listGrants({ activeAt: now });
  let added = 0;
  for (const example of built) {
    for (const g of DEMO_GRANTS[example.name] ?? []) {
      const same = (x: Grant): boolean =>
        'digest' in x.subject && x.subject.digest === example.digest && x.capability === g.capability && x.mode === g.mode && x.methods.join(',') === g.methods.join(',');
      if (active.some(same)) continue;
      const instance = host.instances.get(g.capability);
      if (!instance) throw new ContainedError('INVALID_ARGUMENT', `the demo config has no capability "${g.capability}"`);
      const input: NewGrantInput = { subject: { digest: example.digest }, capability: g.capability, methods: g.methods, mode: g.mode, reason: g.reason, createdBy: 'npm start' };
      if (g.approvals !== undefined) input.approvals = g.approvals;
      if (g.force !== undefined) input.forced = { by: 'npm start', reason: g.force };
      await host.grants.add(input, { role: 'admin' });
      added++;
    }
  }
  return added;
}

/** Start report-digest and refund-desk, unless one of their requests from an earlier start still waits. */
async function startRuns(host: Host, built: readonly BuiltExample[], home: string, io: CliIo): Promise<number> {
  const pending = await host.requests.pending();
  let started = 0;
  for (const name of ['report-digest', 'refund-desk']) {
    const example = built.find((b) => b.name === name);
    if (!example) continue;
    const waiting = pending.filter((r) => r.subject === example.digest).length;
    if (waiting > 0) {
      io.stdout(`  ${name}: ${waiting} request${waiting > 1 ? 's' : ''} from an earlier start still waiting (approving still performs ${waiting > 1 ? 'them' : 'it'})\n`);
      continue;
    }
    const input = name === 'refund-desk' ? refundInput(home) : (JSON.parse(readFileSync(path.join(EXAMPLES_DIR, name, 'input.json'), 'utf8')) as unknown);
    if (input === undefined) {
      io.stdout(`  ${name}: every sample order is refunded already; delete ${path.join(home, 'demo', 'shop.db')} to reset\n`);
      continue;
    }
    const { runId } = await host.submit({ image: readFileSync(example.file), input, submittedBy: 'npm start' });
    io.stdout(`  started ${name.padEnd(14)} run ${runId.slice(0, 8)}  input ${JSON.stringify(input)}\n`);
    started++;
  }
  return started;
}

/** The sample refund (A-1002), or the next order that still has something to refund. */
function refundInput(home: string): unknown {
  const sample = JSON.parse(readFileSync(path.join(EXAMPLES_DIR, 'refund-desk', 'input.json'), 'utf8')) as { orderId: string; reason: string };
  const db = new Database(path.join(home, 'demo', 'shop.db'), { readonly: true });
  try {
    const row = db
      .prepare("SELECT id FROM orders WHERE status IN ('delivered', 'shipped') AND refunded_cents < amount_cents ORDER BY id = ? DESC, id LIMIT 1")
      .get(sample.orderId) as { id: string } | undefined;
    return row ? { ...sample, orderId: row.id } : undefined;
  } finally {
    db.close();
  }
}

/** One line per thing an operator would want to know while the demo runs. */
function watch(host: Host, io: CliIo): () => void {
  const names = new Map<string, string>();
  return host.requests.subscribe((event) => {
    const at = new Date().toLocaleTimeString();
    if (event.type === 'run') {
      names.set(event.run.id, event.run.imageName ?? 'agent');
      const outcome = event.run.outcome as { status?: string; value?: unknown; error?: { code: string; message: string } } | undefined;
      if (outcome?.status === 'ok') io.stdout(`[${at}] ${event.run.imageName} finished: ${JSON.stringify(outcome.value)}\n`);
      else if (outcome?.error) io.stdout(`[${at}] ${event.run.imageName} ended: ${outcome.error.code}: ${outcome.error.message}\n`);
    } else if (event.type === 'created') {
      const r = event.request;
      io.stdout(`[${at}] ${names.get(r.runId) ?? 'an agent'} asks: ${r.capability}${r.method ? `.${r.method}` : ''} (${r.why}; ${r.approvalsRequired} approval${r.approvalsRequired > 1 ? 's' : ''}) — decide on the Pending page\n`);
    } else if (event.type === 'resolved') {
      const r = event.request;
      io.stdout(`[${at}] ${r.capability}${r.method ? `.${r.method}` : ''}: ${r.status}${r.resolvedBy?.length ? ` by ${r.resolvedBy.join(' + ')}` : ''}${r.denyReason ? ` (${r.denyReason})` : ''}\n`);
    }
  });
}
