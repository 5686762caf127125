/**
 * Refusals as an agent sees them: real agent programs in a real isolate (`createSandbox`,
 * in-process) call the built-ins and return the `code` of what they caught. Out-of-scope calls
 * reach the agent as `CAPABILITY_DENIED` (the pass-through gate, and the dispatcher for the
 * instance's own re-check); every other refusal keeps its own code. No host path reaches the agent.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createFs } from '../../capabilities/fs/index.js';
import { createKv } from '../../capabilities/kv/index.js';
import { createInstance, defineCapability, method, type CapabilityInstance } from '../../capabilities/sdk/index.js';
import { createSql } from '../../capabilities/sql/index.js';
import { createSandbox, type Sandbox } from '../../runtime/index.js';
import { tempDir } from './helpers.js';

let sb: Sandbox;
let dir: string;
let cleanup: () => void;

beforeAll(() => {
  ({ dir, cleanup } = tempDir('insb-'));
  mkdirSync(path.join(dir, 'files'));
  mkdirSync(path.join(dir, 'outside'));
  writeFileSync(path.join(dir, 'files', 'a.txt'), 'hello from a');
  writeFileSync(path.join(dir, 'outside', 'secret.txt'), 'SECRET');
  symlinkSync(path.join(dir, 'outside', 'secret.txt'), path.join(dir, 'files', 'link.txt'));
  const db = new Database(path.join(dir, 'app.db'));
  db.exec("CREATE TABLE orders (id INTEGER PRIMARY KEY); CREATE TABLE secrets (v); INSERT INTO orders VALUES (1), (2); INSERT INTO secrets VALUES ('x');");
  db.close();
  sb = createSandbox({ isolation: 'in-process' });
});
afterAll(async () => {
  await sb.close();
  cleanup();
});

/** Run `body` (the inside of `main(input, caps)`) and return the outcome. */
async function agent(body: string, capabilities: CapabilityInstance[]) {
  return sb.run({ source: `export default async function main(input, caps) {\n${body}\n}`, input: {}, capabilities });
}

/** Agent code that runs `expr` and returns the caught error's code and message (or 'ok'). */
const attempt = (expr: string) => `try { await ${expr}; return 'ok'; } catch (e) { return { code: e.code, message: e.message, name: e.name, data: e.data }; }`;

describe('refusals seen from inside a sandbox', () => {
  it('fs: the brief example, traversal → CAPABILITY_DENIED', async () => {
    const instance = createFs({ root: path.join(dir, 'files') }, {}, { name: 'files' });
    const out = await sb.run({
      source: 'export default async function main(input, caps) { try { await caps.files.read("../x") } catch (e) { return e.code } }',
      input: {},
      capabilities: [instance],
    });
    expect(out).toMatchObject({ status: 'ok', value: 'CAPABILITY_DENIED' });
  });

  it('fs: links, read-only writes, bad arguments and missing files, each with its code and no host path', async () => {
    const files = createFs({ root: path.join(dir, 'files'), readOnly: true }, {}, { name: 'files' });
    const out = await agent(
      `return {
        ok: await caps.files.read('a.txt'),
        link: await (async () => { ${attempt("caps.files.read('link.txt')")} })(),
        abs: await (async () => { ${attempt(`caps.files.read(${JSON.stringify(path.join(dir, 'outside', 'secret.txt'))})`)} })(),
        write: await (async () => { ${attempt("caps.files.write({ path: 'b.txt', content: 'x' })")} })(),
        badArg: await (async () => { ${attempt('caps.files.read(42)')} })(),
        extraKey: await (async () => { ${attempt("caps.files.write({ path: 'b.txt', content: 'x', mode: 511 })")} })(),
        missing: await (async () => { ${attempt("caps.files.read('nope.txt')")} })(),
      };`,
      [files],
    );
    expect(out.status).toBe('ok');
    const v = (out as { value: Record<string, { code: string; name: string; message: string; data?: Record<string, unknown> }> }).value;
    expect(v.ok).toBe('hello from a');
    expect(v.link).toMatchObject({ code: 'FS_LINK', name: 'CapabilityError' });
    expect(v.abs).toMatchObject({ code: 'CAPABILITY_DENIED' });
    expect(v.write).toMatchObject({ code: 'CAPABILITY_DENIED' });
    expect(v.badArg).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(v.extraKey).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(v.missing).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'ENOENT', path: 'nope.txt' } });
    expect(JSON.stringify(v)).not.toContain(path.join(dir, 'files'));
    expect(JSON.stringify(v)).not.toContain('SECRET');
  });

  it('sql: the seed scenario from inside — DELETE via a read-only scope, a table outside the allowlist, PRAGMA', async () => {
    const db = createSql({ file: path.join(dir, 'app.db'), tables: ['orders'], readOnly: true }, {}, { name: 'db' });
    const out = await agent(
      `return {
        rows: (await caps.db.query({ sql: 'SELECT id FROM orders ORDER BY id' })).rows,
        del: await (async () => { ${attempt("caps.db.execute({ sql: 'DELETE FROM orders' })")} })(),
        delViaQuery: await (async () => { ${attempt("caps.db.query({ sql: 'DELETE FROM orders' })")} })(),
        secrets: await (async () => { ${attempt("caps.db.query({ sql: 'SELECT * FROM secrets' })")} })(),
        pragma: await (async () => { ${attempt("caps.db.query({ sql: 'PRAGMA writable_schema = 1' })")} })(),
        attach: await (async () => { ${attempt("caps.db.query({ sql: \"ATTACH 'x.db' AS x\" })")} })(),
      };`,
      [db],
    );
    expect(out).toMatchObject({
      status: 'ok',
      value: {
        rows: [[1], [2]],
        del: { code: 'CAPABILITY_DENIED' },
        delViaQuery: { code: 'CAPABILITY_DENIED' },
        secrets: { code: 'CAPABILITY_DENIED' },
        pragma: { code: 'SQL_REFUSED' },
        attach: { code: 'SQL_REFUSED' },
      },
    });
    const check = new Database(path.join(dir, 'app.db'), { readonly: true });
    expect(check.prepare('SELECT count(*) AS n FROM orders').get()).toEqual({ n: 2 });
    check.close();
  });

  it('kv quota, budgets, and a revocation while the run is live', async () => {
    const kv = createKv({ file: path.join(dir, 'kv.db'), namespace: 'agent', maxTotalBytes: 20 }, {}, { name: 'memory', budgets: { get: { maxCalls: 1 } } });
    const files = createFs({ root: path.join(dir, 'files') }, {}, { name: 'files' });
    // A host-side control the agent can trigger, standing in for an operator revoking mid-run.
    const control = defineCapability<Record<string, never>, { target: CapabilityInstance }>({
      name: 'control',
      description: 'Test control.',
      scope: z.strictObject({}),
      intersect: () => ({}),
      describeScope: () => '',
      methods: {
        revokeFiles: method({
          description: 'Revoke caps.files.',
          args: z.undefined(),
          result: z.null(),
          run: (_a: undefined, { deps }: { deps: { target: CapabilityInstance } }) => {
            deps.target.revoke('operator pulled it');
            return null;
          },
        }),
      },
    });
    const ctl = createInstance(control, {}, { target: files }, { name: 'ctl' });
    const out = await agent(
      `const before = await caps.files.read('a.txt');
      await caps.memory.set({ key: 'k', value: 'short' });
      const quota = await (async () => { ${attempt("caps.memory.set({ key: 'k2', value: 'this is far too long' })")} })();
      await caps.memory.get('k');
      const budget = await (async () => { ${attempt("caps.memory.get('k')")} })();
      await caps.ctl.revokeFiles();
      const revoked = await (async () => { ${attempt("caps.files.read('a.txt')")} })();
      return { before, quota: quota.code, budget: budget.code, revoked: revoked.code };`,
      [kv, files, ctl],
    );
    expect(out).toMatchObject({
      status: 'ok',
      value: { before: 'hello from a', quota: 'QUOTA_EXCEEDED', budget: 'BUDGET_EXCEEDED', revoked: 'CAPABILITY_REVOKED' },
    });
  });
});
