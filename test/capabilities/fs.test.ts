/**
 * fs capability against real files, links, FIFOs and sockets in a temp folder, under both
 * resolution strategies. Every refusal asserts its exact code and that no host path leaks.
 */
import { execFileSync } from 'node:child_process';
import { constants as C, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFs } from '../../capabilities/fs/index.js';
import { openDir, openFile, type FsStrategy } from '../../capabilities/fs/resolve.js';
import { call, errorOf, tempDir } from './helpers.js';

const strategies: FsStrategy[] = process.platform === 'linux' ? ['procfd', 'paths'] : ['paths'];

describe.each(strategies)('fs (%s strategy)', (strategy) => {
  let base: string; // holds root/ and outside/
  let root: string;
  let outside: string;
  let cleanup: () => void;

  beforeEach(() => {
    ({ dir: base, cleanup } = tempDir('fs-'));
    root = path.join(base, 'root');
    outside = path.join(base, 'outside');
    mkdirSync(path.join(root, 'docs'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(path.join(root, 'hello.txt'), 'hello');
    writeFileSync(path.join(root, 'docs', 'a.md'), '# A');
    writeFileSync(path.join(outside, 'secret.txt'), 'SECRET');
  });
  afterEach(() => cleanup());

  const make = (scope: Record<string, unknown> = {}) => createFs({ root, ...scope }, { strategy });

  /** Assert the code, and that the message and data never carry a host path. */
  async function refused(p: Promise<unknown>, code: string): Promise<void> {
    const e = await errorOf(p);
    expect(e.code).toBe(code);
    expect(JSON.stringify(e.toJSON())).not.toContain(base);
  }

  it('reads, writes, appends, lists, stats, moves, removes', async () => {
    const fs = make();
    expect(await call(fs, 'read', 'hello.txt')).toBe('hello');
    expect(await call(fs, 'write', { path: 'docs/b.md', content: 'héllo' })).toEqual({ path: 'docs/b.md', size: 6 });
    expect(await call(fs, 'append', { path: 'docs/b.md', content: '!' })).toEqual({ path: 'docs/b.md', size: 7 });
    expect(await call(fs, 'read', './docs//b.md')).toBe('héllo!');
    expect(await call(fs, 'list')).toEqual([
      { name: 'docs', type: 'dir', size: 0 },
      { name: 'hello.txt', type: 'file', size: 5 },
    ]);
    expect(await call(fs, 'stat', 'docs/a.md')).toMatchObject({ path: 'docs/a.md', type: 'file', size: 3 });
    expect(await call(fs, 'stat', '')).toMatchObject({ path: '.', type: 'dir' });
    await call(fs, 'mkdir', 'x/y/z');
    expect(existsSync(path.join(root, 'x/y/z'))).toBe(true);
    await call(fs, 'mkdir', 'x/y/z'); // idempotent
    expect(await call(fs, 'move', { from: 'docs/b.md', to: 'x/y/b.md' })).toBeNull();
    expect(readFileSync(path.join(root, 'x/y/b.md'), 'utf8')).toBe('héllo!');
    await call(fs, 'remove', 'x/y/b.md');
    await call(fs, 'remove', 'x/y/z');
    expect(readdirSync(path.join(root, 'x/y'))).toEqual([]);
  });

  it('writes atomically: replaces content, leaves no temp file', async () => {
    const fs = make();
    await call(fs, 'write', { path: 'hello.txt', content: 'new' });
    expect(readFileSync(path.join(root, 'hello.txt'), 'utf8')).toBe('new');
    expect(readdirSync(root).sort()).toEqual(['docs', 'hello.txt']);
  });

  it('refuses traversal, absolute paths, backslashes and NUL before touching the disk', async () => {
    const fs = make();
    for (const p of ['../outside/secret.txt', 'docs/../../outside/secret.txt', '..', `${outside}/secret.txt`, '/etc/passwd', 'docs\\..\\..\\x', 'a\0b']) {
      expect(fs.checkScope('read', fs.parseArgs('read', p))).toMatchObject({ ok: false, code: 'OUT_OF_SCOPE' });
      await refused(call(fs, 'read', p), 'OUT_OF_SCOPE');
      // invoke re-checks on its own, even when a caller skipped checkScope
      await refused(fs.invoke('read', p, { runId: 'r', signal: new AbortController().signal }), 'OUT_OF_SCOPE');
    }
    await refused(call(fs, 'write', { path: '../x.txt', content: '' }), 'OUT_OF_SCOPE');
    await refused(call(fs, 'move', { from: 'hello.txt', to: '../hello.txt' }), 'OUT_OF_SCOPE');
    await refused(call(fs, 'remove', ''), 'OUT_OF_SCOPE');
    expect(existsSync(path.join(base, 'x.txt'))).toBe(false);
  });

  it('refuses symbolic links, wherever they point and wherever they sit in the path', async () => {
    symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'leak.txt'));
    symlinkSync(outside, path.join(root, 'out'));
    symlinkSync('hello.txt', path.join(root, 'inner.txt')); // even links that stay inside
    const fs = make();
    await refused(call(fs, 'read', 'leak.txt'), 'FS_LINK');
    await refused(call(fs, 'read', 'out/secret.txt'), 'FS_LINK');
    await refused(call(fs, 'read', 'inner.txt'), 'FS_LINK');
    await refused(call(fs, 'list', 'out'), 'FS_LINK');
    await refused(call(fs, 'stat', 'leak.txt'), 'FS_LINK');
    await refused(call(fs, 'write', { path: 'out/new.txt', content: 'x' }), 'FS_LINK');
    await refused(call(fs, 'write', { path: 'leak.txt', content: 'pwned' }), 'FS_LINK');
    await refused(call(fs, 'append', { path: 'leak.txt', content: 'pwned' }), 'FS_LINK');
    await refused(call(fs, 'remove', 'out/secret.txt'), 'FS_LINK');
    await refused(call(fs, 'move', { from: 'out/secret.txt', to: 'stolen.txt' }), 'FS_LINK');
    await refused(call(fs, 'mkdir', 'out/sub'), 'FS_LINK');
    expect(readFileSync(path.join(outside, 'secret.txt'), 'utf8')).toBe('SECRET');
    expect(existsSync(path.join(outside, 'new.txt'))).toBe(false);
    expect(existsSync(path.join(outside, 'sub'))).toBe(false);
    // list hides what cannot be used
    expect((await call(fs, 'list')) as { name: string }[]).toEqual([
      { name: 'docs', type: 'dir', size: 0 },
      { name: 'hello.txt', type: 'file', size: 5 },
    ]);
  });

  it('refuses hard-linked files (the same bytes may live outside the root)', async () => {
    linkSync(path.join(outside, 'secret.txt'), path.join(root, 'hard.txt'));
    const fs = make();
    await refused(call(fs, 'read', 'hard.txt'), 'FS_LINK');
    await refused(call(fs, 'append', { path: 'hard.txt', content: 'x' }), 'FS_LINK');
    await refused(call(fs, 'write', { path: 'hard.txt', content: 'x' }), 'FS_LINK');
    await refused(call(fs, 'remove', 'hard.txt'), 'FS_LINK');
    expect(readFileSync(path.join(outside, 'secret.txt'), 'utf8')).toBe('SECRET');
  });

  it('refuses FIFOs and sockets without blocking', async () => {
    execFileSync('mkfifo', [path.join(root, 'pipe.txt')]);
    const sock = path.join(root, 's.sock');
    const server = net.createServer().listen(sock);
    await new Promise((r) => server.once('listening', r));
    try {
      const fs = make();
      await refused(call(fs, 'read', 'pipe.txt'), 'FS_SPECIAL_FILE');
      await refused(call(fs, 'append', { path: 'pipe.txt', content: 'x' }), 'FS_SPECIAL_FILE');
      await refused(call(fs, 'write', { path: 'pipe.txt', content: 'x' }), 'FS_SPECIAL_FILE');
      await refused(call(fs, 'read', 's.sock'), 'FS_SPECIAL_FILE');
      await refused(call(fs, 'stat', 's.sock'), 'FS_SPECIAL_FILE');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('a folder swapped for a link after the check: never read through it', async () => {
    mkdirSync(path.join(root, 'sub'));
    writeFileSync(path.join(root, 'sub', 'a.txt'), 'inside');
    writeFileSync(path.join(outside, 'a.txt'), 'OUTSIDE');
    const fs = make();
    const { root: fsRoot } = (fs as unknown as { deps: { root: { real: string; strategy: FsStrategy } } }).deps;
    const dir = await openDir(fsRoot, ['sub'], 'sub/a.txt');
    try {
      // The attack, between the check (openDir) and the use (openFile).
      renameSync(path.join(root, 'sub'), path.join(root, 'sub-old'));
      symlinkSync(outside, path.join(root, 'sub'));
      if (strategy === 'procfd') {
        // The folder descriptor still names the checked folder: the read stays inside.
        const { fh } = await openFile(dir, 'a.txt', 'sub/a.txt', C.O_RDONLY);
        expect(await fh.readFile('utf8')).toBe('inside');
        await fh.close();
      } else {
        // realpath of the parent no longer matches: refused.
        await refused(openFile(dir, 'a.txt', 'sub/a.txt', C.O_RDONLY), 'FS_LINK');
      }
    } finally {
      await dir.close();
    }
    await refused(call(fs, 'read', 'sub/a.txt'), 'FS_LINK');
  });

  it('a file swapped for a link between lstat and open is refused', async () => {
    const fs = make();
    const { root: fsRoot } = (fs as unknown as { deps: { root: { real: string; strategy: FsStrategy } } }).deps;
    const dir = await openDir(fsRoot, [], 'hello.txt');
    try {
      await fsp.rm(path.join(root, 'hello.txt'));
      symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'hello.txt'));
      await refused(openFile(dir, 'hello.txt', 'hello.txt', C.O_RDONLY), 'FS_LINK');
    } finally {
      await dir.close();
    }
  });

  it('enforces readOnly, maxFileBytes and extensions', async () => {
    const ro = make({ readOnly: true });
    expect(await call(ro, 'read', 'hello.txt')).toBe('hello');
    for (const [m, a] of [
      ['write', { path: 'n.txt', content: '' }],
      ['append', { path: 'hello.txt', content: '' }],
      ['remove', 'hello.txt'],
      ['mkdir', 'd'],
      ['move', { from: 'hello.txt', to: 'h.txt' }],
    ] as const) {
      await refused(call(ro, m, a), 'OUT_OF_SCOPE');
    }
    const small = make({ maxFileBytes: 4 });
    await refused(call(small, 'read', 'hello.txt'), 'OUT_OF_SCOPE'); // 5 bytes on disk
    expect(await call(small, 'write', { path: 'four.txt', content: '1234' })).toEqual({ path: 'four.txt', size: 4 });
    await refused(call(small, 'write', { path: 'five.txt', content: '12345' }), 'OUT_OF_SCOPE');
    await refused(call(small, 'append', { path: 'four.txt', content: '5' }), 'OUT_OF_SCOPE');
    const md = make({ extensions: ['.MD'] });
    expect(await call(md, 'read', 'docs/a.md')).toBe('# A');
    await refused(call(md, 'read', 'hello.txt'), 'OUT_OF_SCOPE');
    await refused(call(md, 'write', { path: 'x.sh', content: '' }), 'OUT_OF_SCOPE');
    await refused(call(md, 'move', { from: 'docs/a.md', to: 'docs/a.sh' }), 'OUT_OF_SCOPE');
    await refused(call(md, 'move', { from: 'docs', to: 'docs2' }), 'OUT_OF_SCOPE');
    await refused(call(md, 'remove', 'hello.txt'), 'OUT_OF_SCOPE');
    expect(await call(md, 'list')).toEqual([{ name: 'docs', type: 'dir', size: 0 }]);
  });

  it('writing or appending into a missing folder names the folder, not the file (CAPABILITY_FAILED, data.folder)', async () => {
    const fs = make();
    for (const m of ['write', 'append'] as const) {
      const e = await errorOf(call(fs, m, { path: 'sub/deep/x.txt', content: 'hi' }));
      expect(e).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'ENOENT', path: 'sub/deep/x.txt', folder: 'sub/deep' } });
      expect(e.message).toBe('fs: cannot write "sub/deep/x.txt": the folder "sub/deep" does not exist (create it with mkdir first)');
      expect(JSON.stringify(e.toJSON())).not.toContain(base);
    }
    expect(existsSync(path.join(root, 'sub'))).toBe(false);
    await call(fs, 'mkdir', 'sub/deep');
    expect(await call(fs, 'write', { path: 'sub/deep/x.txt', content: 'hi' })).toEqual({ path: 'sub/deep/x.txt', size: 2 });
  });

  it('reports missing files and existing destinations as CAPABILITY_FAILED with a reason', async () => {
    const fs = make();
    const missing = await errorOf(call(fs, 'read', 'nope.txt'));
    expect(missing).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'ENOENT', path: 'nope.txt' } });
    expect(missing.message).not.toContain(base);
    writeFileSync(path.join(root, 'other.txt'), 'o');
    expect(await errorOf(call(fs, 'move', { from: 'hello.txt', to: 'other.txt' }))).toMatchObject({ data: { reason: 'EEXIST' } });
    expect(readFileSync(path.join(root, 'other.txt'), 'utf8')).toBe('o');
    expect(await errorOf(call(fs, 'remove', 'docs'))).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'ENOTEMPTY' } });
    expect(await errorOf(call(fs, 'read', 'docs'))).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'EISDIR' } });
    writeFileSync(path.join(root, 'bin.txt'), Buffer.from([0xff, 0xfe, 0x00]));
    expect(await errorOf(call(fs, 'read', 'bin.txt'))).toMatchObject({ code: 'CAPABILITY_FAILED', data: { reason: 'NOT_UTF8' } });
  });

  it('attenuates to a subfolder that cannot reach its parent', async () => {
    const fs = make();
    const docs = fs.attenuate({ root: path.join(root, 'docs'), readOnly: true });
    expect(await call(docs, 'read', 'a.md')).toBe('# A');
    expect(await call(docs, 'list')).toEqual([{ name: 'a.md', type: 'file', size: 3 }]);
    await refused(call(docs, 'read', '../hello.txt'), 'OUT_OF_SCOPE');
    await refused(call(docs, 'write', { path: 'b.md', content: '' }), 'OUT_OF_SCOPE');
    expect(await errorOf(() => fs.attenuate({ root: outside }))).toMatchObject({ code: 'INVALID_SCOPE' });
    expect(await errorOf(() => fs.attenuate({ root: `${root}-sibling` }))).toMatchObject({ code: 'INVALID_SCOPE' });
    // a narrower scope cannot undo read-only
    const again = docs.attenuate({ root: path.join(root, 'docs'), readOnly: false });
    await refused(call(again, 'write', { path: 'b.md', content: '' }), 'OUT_OF_SCOPE');
    // a subfolder root that is a link is refused at use
    symlinkSync(outside, path.join(root, 'lnk'));
    await refused(call(fs.attenuate({ root: path.join(root, 'lnk') }), 'read', 'secret.txt'), 'FS_LINK');
    fs.revoke('test');
    await refused(call(docs, 'read', 'a.md'), 'CAPABILITY_REVOKED');
  });

  it('charges budgets and refuses past them', async () => {
    const fs = make();
    const limited = createFs({ root }, { strategy }, { budgets: { read: { maxCalls: 2 } } });
    await call(limited, 'read', 'hello.txt');
    await call(limited, 'read', 'hello.txt');
    await refused(call(limited, 'read', 'hello.txt'), 'BUDGET_EXCEEDED');
    expect(await call(fs, 'read', 'hello.txt')).toBe('hello');
  });

  it('rejects bad scopes at creation', async () => {
    expect(await errorOf(() => createFs({ root: 'relative/dir' }))).toMatchObject({ code: 'INVALID_SCOPE' });
    expect(await errorOf(() => createFs({ root: path.join(base, 'missing') }))).toMatchObject({ code: 'INVALID_SCOPE' });
    expect(await errorOf(() => createFs({ root, bogus: 1 }))).toMatchObject({ code: 'INVALID_SCOPE' });
    expect(await errorOf(() => createFs({ root, extensions: ['../x'] }))).toMatchObject({ code: 'INVALID_SCOPE' });
  });

  it('strict arguments: extra keys fail INVALID_ARGUMENT with a path', async () => {
    const fs = make();
    expect(await errorOf(() => fs.parseArgs('write', { path: 'a.txt', content: '', mode: 0o777 }))).toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(await errorOf(() => fs.parseArgs('write', { path: 1, content: '' }))).toMatchObject({ data: { path: ['path'] } });
  });
});
