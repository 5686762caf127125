/**
 * The example images run, for real: built → loaded → turned into a Program → run in an
 * in-process sandbox against their sample data. `fs` is the real capability over a temp copy of
 * `data/`; `sql`, `outbox` and `payments` are small definitions made here with the capability SDK
 * (the built-ins are being written in parallel), backed by a real SQLite database seeded from
 * `data/seed.sql` and by recorders for what leaves the host (mail, refunds).
 */
import { cpSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { afterAll, describe, expect, it } from 'vitest';
import { createFs } from '../../capabilities/fs/index.js';
import { createInstance, defineCapability, method } from '../../capabilities/sdk/index.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { ContainedError } from '../../runtime/errors.js';
import { createSandbox } from '../../runtime/index.js';
import type { RunOutcome } from '../../runtime/index.js';
import { EXAMPLES_DIR } from '../../sandbox-images/build-examples.js';
import { buildImage } from '../../sandbox-images/build.js';
import { loadImage } from '../../sandbox-images/load.js';
import { imageProgram } from '../../sandbox-images/program.js';
import { cleanupTempDirs, tempDir } from './helpers.js';

const sandbox = createSandbox({ isolation: 'in-process' });
afterAll(async () => {
  await sandbox.close();
  cleanupTempDirs();
});

const sqlArgs = z.strictObject({ sql: z.string().max(10_000), params: z.array(z.union([z.string(), z.number(), z.null()])).optional() });
const sqlDef = defineCapability<{ tables: string[]; readOnly: boolean; maxRows?: number }, { db: Database.Database }>({
  name: 'sql',
  description: 'SQL on one SQLite database (test definition).',
  scope: z.strictObject({ tables: z.array(z.string()), readOnly: z.boolean(), maxRows: z.number().int().positive().optional() }),
  intersect: (_parent, narrower) => narrower,
  describeScope: (s) => `tables ${s.tables.join(', ')}${s.readOnly ? ', read-only' : ''}`,
  methods: {
    query: method({
      description: 'Run a SELECT.',
      args: sqlArgs,
      result: z.strictObject({ rows: z.array(z.record(z.string(), z.unknown())) }),
      risk: { readOnly: true, destructive: false, reversible: true, openWorld: false, financial: false },
      run: (args, { deps, scope }) => {
        const statement = deps.db.prepare(args.sql);
        if (!statement.readonly) throw new ContainedError('CAPABILITY_DENIED', 'query only runs statements that read');
        return { rows: (statement.all(...(args.params ?? [])) as Record<string, unknown>[]).slice(0, scope.maxRows ?? 1000) };
      },
    }),
    execute: method({
      description: 'Run a statement that changes data.',
      args: sqlArgs,
      result: z.strictObject({ changes: z.number().int() }),
      risk: { readOnly: false, destructive: true, reversible: false, openWorld: false, financial: false },
      run: (args, { deps, scope }) => {
        if (scope.readOnly) throw new ContainedError('CAPABILITY_DENIED', 'read-only scope');
        return { changes: deps.db.prepare(args.sql).run(...(args.params ?? [])).changes };
      },
    }),
  },
});

interface Sent {
  to: string;
  subject: string;
  text: string;
}
const outboxDef = defineCapability<{ recipients: string[] }, { sent: Sent[] }>({
  name: 'outbox',
  description: 'Send an email (test definition: recorded, not sent).',
  scope: z.strictObject({ recipients: z.array(z.string()) }),
  intersect: (_parent, narrower) => narrower,
  describeScope: (s) => `to ${s.recipients.join(', ')}`,
  methods: {
    send: method({
      description: 'Send one message.',
      args: z.strictObject({ to: z.string(), subject: z.string(), text: z.string() }),
      result: z.strictObject({ messageId: z.string() }),
      risk: { readOnly: false, destructive: false, reversible: false, openWorld: true, financial: false },
      inScope: (args, scope) => (scope.recipients.includes(args.to) ? { ok: true } : { ok: false, code: 'OUT_OF_SCOPE', message: `recipient ${args.to}` }),
      run: (args, { deps }) => {
        deps.sent.push(args);
        return { messageId: `m-${deps.sent.length}` };
      },
    }),
  },
});

interface Refund {
  orderId: string;
  amountCents: number;
  reason: string;
}
const paymentsDef = defineCapability<{ maxAmountCents: number }, { refunds: Refund[] }>({
  name: 'payments',
  description: 'Refunds (test definition: recorded).',
  scope: z.strictObject({ maxAmountCents: z.number().int().positive() }),
  intersect: (_parent, narrower) => narrower,
  describeScope: (s) => `refunds up to ${s.maxAmountCents} cents`,
  methods: {
    refund: method({
      description: 'Refund part or all of an order.',
      args: z.strictObject({ orderId: z.string(), amountCents: z.number().int().positive(), reason: z.string() }),
      result: z.strictObject({ refundId: z.string(), status: z.literal('refunded') }),
      risk: { readOnly: false, destructive: false, reversible: false, openWorld: true, financial: true },
      inScope: (args, scope) => (args.amountCents <= scope.maxAmountCents ? { ok: true } : { ok: false, code: 'OUT_OF_SCOPE', message: 'amount' }),
      run: (args, { deps }) => {
        deps.refunds.push(args);
        return { refundId: `r-${deps.refunds.length}`, status: 'refunded' as const };
      },
    }),
  },
});

async function runExample(name: string, input: unknown, capabilities: CapabilityInstance[]): Promise<RunOutcome> {
  const image = await loadImage(await buildImage(path.join(EXAMPLES_DIR, name, 'image')));
  return sandbox.run({ program: imageProgram(image), input, capabilities, limits: image.manifest.limits ?? {}, subject: image.digest });
}

const sampleInput = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(path.join(EXAMPLES_DIR, name, 'input.json'), 'utf8')) as Record<string, unknown>;

function seededDb(name: string): Database.Database {
  const db = new Database(':memory:');
  db.exec(readFileSync(path.join(EXAMPLES_DIR, name, 'data', 'seed.sql'), 'utf8'));
  return db;
}

describe('example images run in a sandbox against their sample data', () => {
  it('report-digest reads the reports, writes the digest and emails it', async () => {
    const dir = tempDir();
    cpSync(path.join(EXAMPLES_DIR, 'report-digest', 'data', 'reports'), path.join(dir, 'reports'), { recursive: true });
    mkdirSync(path.join(dir, 'out'));
    const sent: Sent[] = [];
    const outcome = await runExample('report-digest', sampleInput('report-digest'), [
      createFs({ root: path.join(dir, 'reports'), readOnly: true, extensions: ['md', 'txt'] }, {}, { name: 'reports' }),
      createFs({ root: path.join(dir, 'out'), extensions: ['md'] }, {}, { name: 'out' }),
      createInstance(outboxDef, { recipients: ['team@example.com'] }, { sent }, { name: 'mail' }),
    ]);
    expect(outcome).toMatchObject({ status: 'ok', value: { reports: 3, file: 'digest-2024-W23.md', emailedTo: 'team@example.com' } });
    expect(readdirSync(path.join(dir, 'out'))).toEqual(['digest-2024-W23.md']);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.subject).toMatch(/^Weekly digest 2024-W23: 3 reports, \d+ open risks$/);
    expect(sent[0]?.text).toContain('## Payments team — week 23');
  });

  it('refund-desk refunds what is left on a delivered order, and nothing on a cancelled one', async () => {
    const db = seededDb('refund-desk');
    const refunds: Refund[] = [];
    const caps = (): CapabilityInstance[] => [
      createInstance(sqlDef, { tables: ['orders'], readOnly: true }, { db }, { name: 'orders' }),
      createInstance(paymentsDef, { maxAmountCents: 50_000 }, { refunds }, { name: 'payments' }),
    ];
    const ok = await runExample('refund-desk', sampleInput('refund-desk'), caps());
    expect(ok).toMatchObject({ status: 'ok', value: { refunded: true, orderId: 'A-1002', amountCents: 12_900 } });
    const cancelled = await runExample('refund-desk', { orderId: 'A-1004', reason: 'changed mind' }, caps());
    expect(cancelled).toMatchObject({ status: 'ok', value: { refunded: false } });
    expect(refunds).toEqual([{ orderId: 'A-1002', amountCents: 12_900, reason: sampleInput('refund-desk').reason }]);
  });

  it('records-cleanup reports in a dry run, then deletes only the stale rows', async () => {
    const db = seededDb('records-cleanup');
    const caps = (): CapabilityInstance[] => [createInstance(sqlDef, { tables: ['records'], readOnly: false }, { db }, { name: 'records' })];
    const dry = await runExample('records-cleanup', { olderThanDays: 90, dryRun: true }, caps());
    expect(dry).toMatchObject({ status: 'ok', value: { dryRun: true, found: 4, deleted: 0, ids: [1, 2, 3, 4] } });
    expect(db.prepare('SELECT COUNT(*) AS n FROM records').get()).toEqual({ n: 7 });
    const wet = await runExample('records-cleanup', sampleInput('records-cleanup'), caps());
    expect(wet).toMatchObject({ status: 'ok', value: { found: 4, deleted: 4 } });
    expect(db.prepare('SELECT id FROM records ORDER BY id').all()).toEqual([{ id: 5 }, { id: 6 }, { id: 7 }]);
  });
});
