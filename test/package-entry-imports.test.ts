/**
 * What `import 'ai-contained'` costs a library user who only runs sandboxes: the entry must not load
 * the drivers of capabilities they may never create. better-sqlite3 (kv, sql, the payments
 * example's ledger) and nodemailer (outbox) are loaded on first use. Each check imports in a fresh Node process (this test process
 * has loaded everything already) and reads which CommonJS packages are in the require cache.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve('.');

/** Import `modules` (repository paths) in a fresh process; the npm packages loaded by then. */
function packagesLoadedBy(modules: string[], after = ''): Promise<string[]> {
  const urls = modules.map((m) => pathToFileURL(path.join(ROOT, m)).href);
  const source = `
    for (const url of ${JSON.stringify(urls)}) await import(url);
    ${after}
    const { createRequire } = await import('node:module');
    const loaded = new Set();
    for (const key of Object.keys(createRequire(import.meta.url).cache)) {
      const m = /[\\\\/]node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(key);
      if (m) loaded.add(m[1]);
    }
    console.log(JSON.stringify([...loaded].sort()));`;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--no-node-snapshot', '--import', 'tsx', '--input-type=module', '-e', source],
      { cwd: ROOT, timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as string[]);
      },
    );
  });
}

describe('the probe', () => {
  it('sees CommonJS packages at all (the engine loads isolated-vm)', async () => {
    expect(await packagesLoadedBy(['runtime/engine.ts'])).toContain('isolated-vm');
  });
});

describe('the package entry loads mail and SQLite drivers only when used', () => {
  it('import of the entry does not load nodemailer', async () => {
    const loaded = await packagesLoadedBy(['index.ts']);
    expect(loaded).not.toContain('nodemailer');
  });

  it('import of the entry does not load isolated-vm (a worker-mode sandbox never needs it in this process)', async () => {
    expect(await packagesLoadedBy(['index.ts'])).not.toContain('isolated-vm');
  });

  it('import of the entry does not load pino (only the log capability without a host logger needs one)', async () => {
    const loaded = await packagesLoadedBy(['index.ts']);
    expect(loaded).not.toContain('pino');
  });

  it('kv, outbox and the payments ledger load their drivers on first use, not at import or at creation', async () => {
    const created = await packagesLoadedBy(
      ['capabilities/kv/index.ts', 'capabilities/outbox/index.ts', 'capabilities/examples/payments.ts'],
      `const os = await import('node:os');
       const { createKv } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'capabilities/kv/index.ts')).href)});
       const { createOutbox } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'capabilities/outbox/index.ts')).href)});
       createKv({ file: os.tmpdir() + '/never-opened.db', namespace: 'a' });
       createOutbox({ from: 'bot@example.com', allowedRecipients: ['@example.com'] }, { transport: { folder: os.tmpdir() + '/never-written' } });
       const { createSqliteLedger } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'capabilities/examples/payments.ts')).href)});
       createSqliteLedger({ file: os.tmpdir() + '/never-opened-shop.db', currency: 'EUR' });`,
    );
    expect(created).not.toContain('better-sqlite3');
    expect(created).not.toContain('nodemailer');
  });

  // capabilities/sql still imports better-sqlite3 at module load (its engine is being rewritten
  // separately). When it loads the driver lazily too, this test fails: turn it into a plain `it`.
  it.fails('import of the entry does not load better-sqlite3 (fails until capabilities/sql loads it lazily)', async () => {
    const loaded = await packagesLoadedBy(['index.ts']);
    expect(loaded).not.toContain('better-sqlite3');
  });
});

describe('the contained CLI loads a command only when it runs', () => {
  it('the dispatcher (loaded by every command, contained run included) loads no host, store or mail module', async () => {
    const loaded = await packagesLoadedBy(['host/cli/main.ts']);
    for (const heavy of ['isolated-vm', 'better-sqlite3', 'ws', 'prom-client', 'nodemailer', 'tar', 'pino']) expect(loaded, heavy).not.toContain(heavy);
  });

  it('contained run (worker mode) loads no isolated-vm: it creates no isolate, so it runs with Node\'s startup snapshot', async () => {
    const loaded = await packagesLoadedBy(['host/cli/main.ts', 'host/cli/run.ts']);
    for (const heavy of ['isolated-vm', 'better-sqlite3', 'ws', 'prom-client', 'nodemailer', 'tar']) expect(loaded, heavy).not.toContain(heavy);
  });
});
