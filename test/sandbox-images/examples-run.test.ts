/**
 * The example images run, for real: built → loaded → turned into a Program → run in an
 * in-process sandbox against their sample data, holding the built-in capabilities (fs, sql,
 * outbox to a maildir folder) and the custom `payments` example over a SQLite ledger. Each grant
 * is the scope the manifest asks for plus the host-side part only the host knows (a folder, a
 * database file, a sender) — what an operator granting the manifest's requests would do.
 */
import { cpSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { createFs, createSql } from '../../capabilities/index.js';
import type { CapabilityInstance } from '../../capabilities/index.js';
import { createPayments, createSqliteLedger } from '../../capabilities/examples/payments.js';
import { createOutbox } from '../../capabilities/outbox/index.js';
import type { OutboxScope } from '../../capabilities/outbox/index.js';
import { createSandbox } from '../../runtime/index.js';
import type { RunOutcome } from '../../runtime/index.js';
import { EXAMPLES_DIR } from '../../sandbox-images/build-examples.js';
import { buildImage } from '../../sandbox-images/build.js';
import { loadImage } from '../../sandbox-images/load.js';
import type { LoadedImage } from '../../sandbox-images/load.js';
import { imageProgram } from '../../sandbox-images/program.js';
import { cleanupTempDirs, tempDir } from './helpers.js';

const sandbox = createSandbox({ isolation: 'in-process' });
afterAll(async () => {
  await sandbox.close();
  cleanupTempDirs();
});

const load = async (name: string): Promise<LoadedImage> => loadImage(await buildImage(path.join(EXAMPLES_DIR, name, 'image')));

/** The scope the manifest requests for `binding`, with the host-side fields added. */
function grantScope(image: LoadedImage, binding: string, host: Record<string, unknown>): Record<string, unknown> {
  const request = image.manifest.requests.find((r) => r.capability === binding);
  if (request === undefined) throw new Error(`the manifest does not request ${binding}`);
  return { ...request.scope, ...host };
}

const run = (image: LoadedImage, input: unknown, capabilities: CapabilityInstance[]): Promise<RunOutcome> =>
  sandbox.run({ program: imageProgram(image), input, capabilities, limits: image.manifest.limits ?? {}, subject: image.digest });

const sampleInput = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(path.join(EXAMPLES_DIR, name, 'input.json'), 'utf8')) as Record<string, unknown>;

function seededDb(name: string): string {
  const file = path.join(tempDir(), `${name}.db`);
  const db = new Database(file);
  db.exec(readFileSync(path.join(EXAMPLES_DIR, name, 'data', 'seed.sql'), 'utf8'));
  db.close();
  return file;
}

describe('example images run in a sandbox against their sample data', () => {
  it('report-digest reads the reports, writes the digest and emails it', async () => {
    const image = await load('report-digest');
    const dir = tempDir();
    cpSync(path.join(EXAMPLES_DIR, 'report-digest', 'data', 'reports'), path.join(dir, 'reports'), { recursive: true });
    mkdirSync(path.join(dir, 'out'));
    const mailbox = path.join(dir, 'mail');
    const outcome = await run(image, sampleInput('report-digest'), [
      createFs(grantScope(image, 'reports', { root: path.join(dir, 'reports') }), {}, { name: 'reports' }),
      createFs(grantScope(image, 'out', { root: path.join(dir, 'out') }), {}, { name: 'out' }),
      createOutbox(grantScope(image, 'mail', { from: 'digest@example.com' }) as OutboxScope, { transport: { folder: mailbox } }, { name: 'mail' }),
    ]);
    expect(outcome).toMatchObject({ status: 'ok', value: { reports: 3, file: 'digest-2024-W23.md', emailedTo: 'team@example.com' } });
    expect(readdirSync(path.join(dir, 'out'))).toEqual(['digest-2024-W23.md']);
    expect(readFileSync(path.join(dir, 'out', 'digest-2024-W23.md'), 'utf8')).toContain('## Payments team — week 23');
    const mails = readdirSync(path.join(mailbox, 'new'));
    expect(mails).toHaveLength(1);
    expect(readFileSync(path.join(mailbox, 'new', mails[0] as string), 'utf8')).toMatch(/Subject: Weekly digest 2024-W23: 3 reports, \d+ open risks/);
  });

  it('refund-desk refunds what is left on a delivered order, and nothing on a cancelled one', async () => {
    const image = await load('refund-desk');
    const file = seededDb('refund-desk');
    const caps = (): CapabilityInstance[] => [
      createSql(grantScope(image, 'orders', { file }), {}, { name: 'orders' }),
      createPayments(grantScope(image, 'payments', {}) as { currency: string; maxAmountCents: number }, { ledger: createSqliteLedger({ file, currency: 'EUR' }) }, { name: 'payments' }),
    ];
    const ok = await run(image, sampleInput('refund-desk'), caps());
    expect(ok).toMatchObject({ status: 'ok', value: { refunded: true, orderId: 'A-1002', amountCents: 12_900, receipt: { orderId: 'A-1002', amountCents: 12_900 } } });
    const again = await run(image, sampleInput('refund-desk'), caps());
    expect(again).toMatchObject({ status: 'ok', value: { refunded: false, why: 'order is already fully refunded' } });
    const cancelled = await run(image, { orderId: 'A-1004', reason: 'changed mind' }, caps());
    expect(cancelled).toMatchObject({ status: 'ok', value: { refunded: false } });
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT id, refunded_cents FROM orders WHERE refunded_cents > 0 ORDER BY id').all()).toEqual([
      { id: 'A-1002', refunded_cents: 12_900 },
      { id: 'A-1003', refunded_cents: 2500 },
      { id: 'A-1005', refunded_cents: 10_000 },
    ]);
    db.close();
  });

  it('records-cleanup reports in a dry run, then deletes only the stale rows', async () => {
    const image = await load('records-cleanup');
    const file = seededDb('records-cleanup');
    const caps = (): CapabilityInstance[] => [createSql(grantScope(image, 'records', { file }), {}, { name: 'records' })];
    const dry = await run(image, { olderThanDays: 90, dryRun: true }, caps());
    expect(dry).toMatchObject({ status: 'ok', value: { dryRun: true, found: 4, deleted: 0, ids: [1, 2, 3, 4] } });
    const wet = await run(image, sampleInput('records-cleanup'), caps());
    expect(wet).toMatchObject({ status: 'ok', value: { found: 4, deleted: 4 } });
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT id FROM records ORDER BY id').all()).toEqual([{ id: 5 }, { id: 6 }, { id: 7 }]);
    db.close();
  });
});
