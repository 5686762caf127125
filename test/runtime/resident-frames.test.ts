/**
 * The resident sandbox process's framing and checks (runtime/resident-protocol.ts,
 * runtime/worker-session.ts): newline-delimited JSON cut at any chunk boundary, a frame past the
 * bound refused whether or not its newline has arrived, text that is not JSON marked, host
 * messages of unknown or wrong shapes refused, and the folder check failing closed.
 */
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkResidentDir, encodeFrame, FrameReader, findSocket, residentDir } from '../../runtime/resident-protocol.js';
import { parseHostMessage } from '../../runtime/worker-session.js';

describe('FrameReader', () => {
  it('cuts frames at newlines across chunks of any size', () => {
    const messages = [{ t: 'ping', id: 1 }, { t: 'log', text: 'a\nb' }, { t: 'ready' }];
    const bytes = Buffer.from(messages.map(encodeFrame).join(''));
    for (const size of [1, 2, 7, bytes.length]) {
      const reader = new FrameReader(1024);
      const got: unknown[] = [];
      for (let i = 0; i < bytes.length; i += size) got.push(...reader.push(bytes.subarray(i, i + size)));
      expect(got).toEqual(messages);
    }
  });

  it('refuses a frame past the bound, before and after its newline arrives', () => {
    expect(() => new FrameReader(8).push(Buffer.from('"123456789"\n'))).toThrow(RangeError);
    const reader = new FrameReader(8);
    reader.push(Buffer.from('"1234'));
    expect(() => reader.push(Buffer.from('56789'))).toThrow(RangeError);
    expect(new FrameReader(8).push(Buffer.from('"123456"\n'))).toEqual(['123456']);
  });

  it('marks text that is not JSON as undefined', () => {
    expect(new FrameReader().push(Buffer.from('{nope\n1\n'))).toEqual([undefined, 1]);
  });
});

describe('parseHostMessage', () => {
  const spec = { runId: 'r1', program: { entry: 'main.js', modules: {} }, input: null, limits: {}, capabilities: [] };
  it('accepts the protocol shapes', () => {
    for (const m of [
      { t: 'run', spec, streamLogs: false },
      { t: 'result', runId: 'r1', seq: 1, result: { ok: true, value: 1 } },
      { t: 'pause', runId: 'r1', token: 2 },
      { t: 'resume', runId: 'r1', token: 2 },
      { t: 'cancel', runId: 'r1', message: 'stop' },
      { t: 'ping', id: 3 },
      { t: 'exit' },
    ]) {
      expect(parseHostMessage(m), JSON.stringify(m)).toEqual(m);
    }
  });

  it('refuses anything else', () => {
    for (const m of [
      null,
      [],
      'run',
      { t: 'status2' },
      { t: 'run', spec: 42, streamLogs: false },
      { t: 'run', spec: { ...spec, runId: '' }, streamLogs: false },
      { t: 'run', spec: { ...spec, runId: 'x'.repeat(1025) }, streamLogs: false },
      { t: 'run', spec, streamLogs: 'yes' },
      { t: 'run', spec: { ...spec, capabilities: {} }, streamLogs: false },
      { t: 'result', runId: 'r1', seq: 1.5, result: { ok: true } },
      { t: 'result', runId: 'r1', seq: 1, result: { ok: 'yes' } },
      { t: 'pause', runId: 'r1' },
      { t: 'cancel', runId: 'r1', message: 7 },
      { t: 'ping', id: '1' },
      { t: '__proto__' },
    ]) {
      expect(parseHostMessage(m), JSON.stringify(m)).toBeUndefined();
    }
  });
});

describe('the resident folder check', () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'contained-resident-dir-'));

  it('accepts a 0700 folder of this user; refuses a missing one, a world- or group-writable one, a symbolic link, a file', () => {
    const good = path.join(base, 'good');
    mkdirSync(good, { mode: 0o700 });
    expect(checkResidentDir(good).ok).toBe(true);
    expect(checkResidentDir(path.join(base, 'missing')).ok).toBe(false);
    const open = path.join(base, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(checkResidentDir(open)).toMatchObject({ ok: false, reason: expect.stringMatching(/writable by group or others/) });
    const group = path.join(base, 'group');
    mkdirSync(group);
    chmodSync(group, 0o770);
    expect(checkResidentDir(group).ok).toBe(false);
    const link = path.join(base, 'link');
    symlinkSync(good, link);
    expect(checkResidentDir(link)).toMatchObject({ ok: false, reason: expect.stringMatching(/symbolic link/) });
    const file = path.join(base, 'file');
    writeFileSync(file, '');
    expect(checkResidentDir(file).ok).toBe(false);
  });

  it('findSocket: nothing without a socket file; refuses a socket path that is a plain file, or in an open folder', () => {
    const dir = path.join(base, 'sock');
    mkdirSync(dir, { mode: 0o700 });
    expect(findSocket(dir)).toBeUndefined();
    writeFileSync(path.join(dir, 'sandbox.sock'), '');
    expect(findSocket(dir)).toEqual({ refused: expect.stringMatching(/is not a socket/) });
    chmodSync(dir, 0o777);
    expect(findSocket(dir)).toEqual({ refused: expect.stringMatching(/writable by group or others/) });
    chmodSync(dir, 0o700);
  });

  it('residentDir: the override, then $XDG_RUNTIME_DIR, then ~/.cache', () => {
    expect(residentDir({ CONTAINED_RESIDENT_DIR: '/x/y' })).toBe('/x/y');
    expect(residentDir({ XDG_RUNTIME_DIR: '/run/user/1' })).toBe('/run/user/1/ai-contained');
    expect(residentDir({ XDG_CACHE_HOME: '/c' })).toBe('/c/ai-contained/run');
  });
});
