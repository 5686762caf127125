/**
 * fs scope narrowing, against real files: the `paths` field (restricts without moving the root),
 * `restrict` keeping the parent's frame (a subfolder root becomes `paths`, so the agent's paths
 * keep their meaning), limits that cannot rise past the parent's default, which methods a
 * read-only scope leaves usable, and the narrowest scope that admits one call (what "always"
 * grants). Every refusal asserts its code, and that no host path reaches the message.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFs, DEFAULT_MAX_FILE_BYTES } from '../../capabilities/fs/index.js';
import { call, errorOf, tempDir } from './helpers.js';

let base: string;
let root: string;
let cleanup: () => void;

beforeEach(() => {
  ({ dir: base, cleanup } = tempDir('fs-scope-'));
  root = path.join(base, 'root');
  mkdirSync(path.join(root, 'sub', 'deep'), { recursive: true });
  mkdirSync(path.join(root, 'subway'));
  writeFileSync(path.join(root, 'a.txt'), 'top');
  writeFileSync(path.join(root, 'sub', 'x.txt'), 'in sub');
  writeFileSync(path.join(root, 'sub', 'deep', 'y.txt'), 'deeper');
  writeFileSync(path.join(root, 'subway', 'z.txt'), 'lookalike');
});
afterEach(() => cleanup());

async function refused(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  const e = await errorOf(p);
  expect(e.code).toBe(code);
  expect(JSON.stringify(e.toJSON())).not.toContain(base);
}

describe('fs scope: paths', () => {
  it('reaches only the listed paths and what lies under them; the root stays where it is', async () => {
    const fs = createFs({ root, paths: ['sub', 'a.txt'] });
    expect(await call(fs, 'read', 'sub/x.txt')).toBe('in sub');
    expect(await call(fs, 'read', 'sub/deep/y.txt')).toBe('deeper');
    expect(await call(fs, 'read', 'a.txt')).toBe('top');
    expect(await call(fs, 'list', 'sub')).toEqual([
      { name: 'deep', type: 'dir', size: 0 },
      { name: 'x.txt', type: 'file', size: 6 },
    ]);
    await refused(call(fs, 'read', 'subway/z.txt'), 'OUT_OF_SCOPE'); // a lookalike prefix
    await refused(call(fs, 'list'), 'OUT_OF_SCOPE'); // the root itself
    await refused(call(fs, 'stat', ''), 'OUT_OF_SCOPE');
    await refused(call(fs, 'write', { path: 'b.txt', content: 'x' }), 'OUT_OF_SCOPE');
    await refused(call(fs, 'move', { from: 'sub/x.txt', to: 'x.txt' }), 'OUT_OF_SCOPE');
    expect(await call(fs, 'move', { from: 'sub/x.txt', to: 'sub/deep/x.txt' })).toBeNull();
    expect(fs.describe().scope).toContain('only sub, a.txt');
  });

  it('refuses entries that are not plain relative paths (INVALID_SCOPE) and normalises the rest', async () => {
    for (const bad of [['../x'], ['/etc'], [''], ['.'], ['a\\b'], ['sub/../a.txt'], []]) {
      await refused(() => createFs({ root, paths: bad }), 'INVALID_SCOPE');
    }
    expect(createFs({ root, paths: ['./sub/', 'a.txt'] }).scope.paths).toEqual(['sub', 'a.txt']);
  });
});

describe('fs scope: restrict keeps the frame, attenuate moves it', () => {
  it('restrict to a subfolder root: the agent still names files from the top root; only the subfolder is reachable', async () => {
    const top = createFs({ root });
    const kept = top.restrict({ root: path.join(root, 'sub'), readOnly: true });
    expect(kept.scope).toEqual({ root, readOnly: true, paths: ['sub'] });
    expect(await call(kept, 'read', 'sub/x.txt')).toBe('in sub');
    await refused(call(kept, 'read', 'x.txt'), 'OUT_OF_SCOPE');
    await refused(call(kept, 'read', 'a.txt'), 'OUT_OF_SCOPE');
    // attenuate hands out a new binding rooted at the subfolder (unchanged)
    const moved = top.attenuate({ root: path.join(root, 'sub') });
    expect(await call(moved, 'read', 'x.txt')).toBe('in sub');
  });

  it('restrict refuses anything wider, naming the field; paths narrow by prefix', async () => {
    const parent = createFs({ root, readOnly: true, maxFileBytes: 1000, extensions: ['txt'], paths: ['sub'] });
    for (const [wider, field] of [
      [{ readOnly: false }, 'readOnly'],
      [{ maxFileBytes: 1001 }, 'maxFileBytes'],
      [{ extensions: ['txt', 'md'] }, 'extensions'],
      [{ paths: ['sub', 'a.txt'] }, 'paths'],
      [{ paths: ['subway'] }, ''],
      [{ root: base }, ''],
    ] as const) {
      const e = await errorOf(() => parent.restrict(wider));
      expect(e.code, JSON.stringify(wider)).toBe('INVALID_SCOPE');
      if (field) expect(e.data).toEqual({ fields: [field] });
      expect(e.message).not.toContain(base);
    }
    expect(parent.restrict({ paths: ['sub/deep'] }).scope.paths).toEqual(['sub/deep']);
    expect(parent.restrict({ root: path.join(root, 'sub', 'deep') }).scope).toMatchObject({ root, paths: ['sub/deep'] });
    expect(parent.restrict({}).scope).toEqual(parent.scope);
  });

  it('attenuate carries paths into a subfolder root, relative to it', () => {
    const parent = createFs({ root, paths: ['sub/deep', 'a.txt'] });
    expect(parent.attenuate({ root: path.join(root, 'sub') }).scope).toEqual({ root: path.join(root, 'sub'), paths: ['deep'] });
    expect(createFs({ root, paths: ['sub'] }).attenuate({ root: path.join(root, 'sub', 'deep') }).scope).toEqual({ root: path.join(root, 'sub', 'deep') });
  });
});

describe('fs scope: limits cannot rise past the parent default', () => {
  it('a child asking for a larger maxFileBytes than its parent\'s default gets the default, and reads no more', async () => {
    writeFileSync(path.join(root, 'big.txt'), 'x'.repeat(DEFAULT_MAX_FILE_BYTES + 1));
    const parent = createFs({ root });
    const child = parent.attenuate({ root, maxFileBytes: 4 * DEFAULT_MAX_FILE_BYTES });
    expect(child.scope.maxFileBytes).toBe(DEFAULT_MAX_FILE_BYTES);
    await refused(call(child, 'read', 'big.txt'), 'OUT_OF_SCOPE');
    expect((await errorOf(() => parent.restrict({ maxFileBytes: 4 * DEFAULT_MAX_FILE_BYTES }))).data).toEqual({ fields: ['maxFileBytes'] });
    expect(parent.restrict({ maxFileBytes: DEFAULT_MAX_FILE_BYTES }).scope.maxFileBytes).toBe(DEFAULT_MAX_FILE_BYTES);
  });
});

describe('fs scope: what grants take from it', () => {
  it('a read-only scope leaves only the read-only methods usable', () => {
    expect(createFs({ root }).usableMethods()).toEqual(['read', 'write', 'append', 'list', 'stat', 'remove', 'mkdir', 'move']);
    expect(createFs({ root }).restrict({ readOnly: true }).usableMethods()).toEqual(['read', 'list', 'stat']);
    expect(createFs({ root, readOnly: true }).usableMethods()).toEqual(['read', 'list', 'stat']);
  });

  it('the narrowest scope for one call names the path it touches', () => {
    const fs = createFs({ root });
    expect(fs.narrowestScopeFor('list', 'sub')).toEqual({ root, paths: ['sub'] });
    expect(fs.narrowestScopeFor('list', './sub/')).toEqual({ root, paths: ['sub'] });
    expect(fs.narrowestScopeFor('read', 'sub/x.txt')).toEqual({ root, paths: ['sub/x.txt'] });
    expect(fs.narrowestScopeFor('move', { from: 'sub/x.txt', to: 'sub/deep/x.txt' })).toEqual({ root, paths: ['sub/x.txt', 'sub/deep/x.txt'] });
    expect(fs.narrowestScopeFor('list', undefined)).toBeUndefined(); // the root: nothing narrower
    expect(fs.narrowestScopeFor('stat', '')).toBeUndefined();
    expect(fs.narrowestScopeFor('read', '../etc/passwd')).toBeUndefined(); // outside: no scope admits it
    expect(createFs({ root, paths: ['sub'] }).narrowestScopeFor('list', 'sub/deep')).toEqual({ root, paths: ['sub/deep'] });
  });
});
