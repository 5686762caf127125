/** The trivial built-ins: clock (injected time), random (seeded reproducibility), log (into pino). */
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createClock } from '../../capabilities/clock/index.js';
import { createLog } from '../../capabilities/log/index.js';
import { createRandom } from '../../capabilities/random/index.js';
import { call, errorOf } from './helpers.js';

describe('clock', () => {
  it('reads the injected clock; takes no argument', async () => {
    const clock = createClock({}, { now: () => 1_700_000_000_123 });
    expect(await call(clock, 'now')).toEqual({ iso: '2023-11-14T22:13:20.123Z', epochMs: 1_700_000_000_123 });
    expect((await errorOf(() => clock.parseArgs('now', { tz: 'UTC' }))).code).toBe('INVALID_ARGUMENT');
    expect(clock.risk('now')).toMatchObject({ readOnly: true, destructive: false, openWorld: false });
    expect((await errorOf(() => createClock({ x: 1 }))).code).toBe('INVALID_SCOPE');
  });
});

describe('random', () => {
  it('a seed reproduces the sequence; instances do not share state', async () => {
    const draw = async (seed: number) => {
      const r = createRandom({ seed });
      return [await call(r, 'int', { min: 1, max: 6 }), await call(r, 'float'), await call(r, 'uuid'), await call(r, 'int', { min: -5, max: 5 })];
    };
    const a = await draw(42);
    expect(await draw(42)).toEqual(a);
    expect(await draw(43)).not.toEqual(a);
    expect(a[2]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('stays in range at the boundaries', async () => {
    const r = createRandom({ seed: 7 });
    const seen = new Set<unknown>();
    for (let i = 0; i < 200; i++) seen.add(await call(r, 'int', { min: 0, max: 1 }));
    expect([...seen].sort()).toEqual([0, 1]);
    expect(await call(r, 'int', { min: 3, max: 3 })).toBe(3);
    for (let i = 0; i < 50; i++) {
      const f = (await call(r, 'float')) as number;
      expect(f >= 0 && f < 1).toBe(true);
    }
    expect(await errorOf(() => r.parseArgs('int', { min: 2, max: 1 }))).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['max'] } });
    expect(await errorOf(() => r.parseArgs('int', { min: 0.5, max: 1 }))).toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['min'] } });
  });

  it('unseeded draws from the CSPRNG; a seeded instance cannot be re-seeded', async () => {
    const r = createRandom({});
    expect(await call(r, 'uuid')).not.toEqual(await call(r, 'uuid'));
    expect((await errorOf(() => createRandom({ seed: 1 }).attenuate({ seed: 2 }))).code).toBe('INVALID_SCOPE');
    expect(createRandom({ seed: 1 }).attenuate({}).scope).toEqual({ seed: 1 });
  });
});

describe('log', () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    return { logger: pino({ level: 'debug' }, stream), lines };
  }

  it('writes tagged lines; agent data cannot overwrite pino fields', async () => {
    const { logger, lines } = capture();
    const log = createLog({}, { logger }, { name: 'journal' });
    expect(await call(log, 'write', { level: 'warn', message: 'disk low', data: { level: 'fake', msg: 'spoof', pct: 91 } })).toEqual({ written: true });
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'disk low', capability: 'journal', runId: 'test-run', source: 'agent', agentData: { level: 'fake', msg: 'spoof', pct: 91 } });
  });

  it('drops lines under minLevel; attenuation only raises it; sizes are capped', async () => {
    const { logger, lines } = capture();
    const log = createLog({ minLevel: 'info' }, { logger });
    expect(await call(log, 'write', { level: 'debug', message: 'x' })).toEqual({ written: false });
    expect(log.attenuate({ minLevel: 'debug' }).scope).toEqual({ minLevel: 'info' });
    expect(log.attenuate({ minLevel: 'error' }).scope).toEqual({ minLevel: 'error' });
    expect((await errorOf(() => log.parseArgs('write', { level: 'info', message: 'x'.repeat(4097) }))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(() => log.parseArgs('write', { level: 'fatal', message: 'x' }))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(() => log.parseArgs('write', { level: 'info', message: 'x', data: { big: 'y'.repeat(17000) } }))).code).toBe(
      'INVALID_ARGUMENT',
    );
    expect(lines).toHaveLength(0);
  });
});
