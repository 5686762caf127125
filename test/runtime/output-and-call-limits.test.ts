/**
 * Byte and count limits at the bridge: logs (`maxLogBytes`), the return value (`maxOutputBytes`),
 * capability calls (`maxCalls`, `maxConcurrentCalls`, `maxCallBytes`). Each at its boundary: the
 * run just under the limit succeeds, the run over it ends with the exact code. Host memory is what
 * these protect (a loop logging 1 MiB strings once killed the host), so the tests also check that
 * nothing past the limit reached the host.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, TOLERANCE_MS, expectCode, expectHealthy, expectOk, timed } from '../helpers/sandbox.js';

const base = { cpuMs: 2000, wallMs: 10_000, memoryMb: 64 };
const logBytes = (logs: Array<{ message: string }>): number => logs.reduce((n, l) => n + Buffer.byteLength(l.message), 0);

describe.each(MODES)('output and call limits (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());

  it('warms up', async () => {
    await expectHealthy(sb);
  });

  describe('logs', () => {
    const limits = { ...base, maxLogBytes: 100_000 };

    it.each([
      ['log flood: 1 KB lines forever', 'export default function main() { for (;;) console.log("x".repeat(1000)); }'],
      ['log flood: 1 MiB strings (once killed the host with a heap OOM)', 'export default function main() { const s = "x".repeat(1 << 20); for (;;) console.log(s); }'],
      ['log flood: empty lines (each charged a minimum)', 'export default function main() { for (;;) console.log(); }'],
      ['log flood: many arguments per call', 'export default function main() { const a = new Array(1000).fill("abcdefgh"); for (;;) console.error(...a); }'],
      ['log flood: errors swallowed, loop ends, main returns', 'export default function main() { for (let i = 0; i < 1e5; i++) { try { console.warn("y".repeat(100)); } catch {} } return "finished"; }'],
      ['log flood after an await', 'export default async function main() { await null; for (;;) console.info("z".repeat(500)); }'],
    ])('%s → OUTPUT_LIMIT', async (_name, source) => {
      const { out, ms } = await timed(sb, { source, limits });
      expectCode(out, 'OUTPUT_LIMIT');
      expect(ms).toBeLessThan(base.cpuMs + TOLERANCE_MS);
      expect(logBytes(out.logs)).toBeLessThanOrEqual(limits.maxLogBytes);
      await expectHealthy(sb);
    });

    it('logs under the limit are returned with their levels', async () => {
      const source = 'export default function main() { console.log("a", 1, { b: 2 }); console.warn("w"); console.error(new Error("e").message); return 0; }';
      const { out } = await timed(sb, { source, limits });
      expectOk(out, 0);
      expect(out.logs.map((l) => [l.level, l.message])).toEqual([['log', 'a 1 {"b":2}'], ['warn', 'w'], ['error', 'e']]);
    });
  });

  describe('return value', () => {
    const limits = { ...base, maxOutputBytes: 100_000 };

    it('huge return value → OUTPUT_LIMIT', async () => {
      const { out } = await timed(sb, { source: 'export default function main() { return "x".repeat(200000); }', limits });
      expectCode(out, 'OUTPUT_LIMIT');
      await expectHealthy(sb);
    });

    it('huge nested return value → OUTPUT_LIMIT', async () => {
      const source = 'export default function main() { return Array.from({ length: 20000 }, (_, i) => ({ i, s: "abcdef" })); }';
      expectCode((await timed(sb, { source, limits })).out, 'OUTPUT_LIMIT');
    });

    it('return value of multi-byte characters over the byte limit → OUTPUT_LIMIT', async () => {
      // 60 000 characters, 120 000 UTF-8 bytes: the limit is in bytes, not characters.
      expectCode((await timed(sb, { source: 'export default function main() { return "é".repeat(60000); }', limits })).out, 'OUTPUT_LIMIT');
    });

    it('return value just under the limit → ok', async () => {
      const { out } = await timed(sb, { source: 'export default function main() { return "x".repeat(99990); }', limits });
      expect(out.status).toBe('ok');
      expect((out as { value: string }).value.length).toBe(99990);
    });
  });

  describe('capability calls', () => {
    it('call flood: more than maxCalls sequential calls → CALL_LIMIT; the capability ran exactly maxCalls times', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { for (;;) await caps.notes.read("notes/a"); }';
      const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxCalls: 20 } });
      expectCode(out, 'CALL_LIMIT');
      expect(notes.received.length).toBe(20);
      await expectHealthy(sb);
    });

    it('call flood with every error caught → still CALL_LIMIT', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { for (let i = 0; i < 100; i++) { try { await caps.notes.read("notes/a"); } catch {} } return "got away"; }';
      const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxCalls: 20 } });
      expectCode(out, 'CALL_LIMIT');
      expect(notes.received.length).toBe(20);
    });

    it('exactly maxCalls calls → ok', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { for (let i = 0; i < 20; i++) await caps.notes.read("notes/a"); return "ok"; }';
      expectOk((await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxCalls: 20 } })).out, 'ok');
    });

    it('concurrent call flood: more than maxConcurrentCalls at once → CALL_LIMIT', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { await Promise.all(Array.from({ length: 50 }, () => caps.notes.sleep(50))); return "ok"; }';
      const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxConcurrentCalls: 8 } });
      expectCode(out, 'CALL_LIMIT');
      expect(notes.received.length).toBeLessThanOrEqual(8);
      await expectHealthy(sb);
    });

    it('exactly maxConcurrentCalls at once → ok', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { await Promise.all(Array.from({ length: 8 }, () => caps.notes.sleep(50))); return "ok"; }';
      expectOk((await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxConcurrentCalls: 8 } })).out, 'ok');
    });

    it('an argument larger than maxCallBytes is refused (CapabilityError CALL_LIMIT) and never reaches the capability', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { try { await caps.notes.write({ path: "notes/x", text: "x".repeat(200000) }); return "sent"; } catch (e) { return [e.name, e.code]; } }';
      const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxCallBytes: 100_000 } });
      expectOk(out, ['CapabilityError', 'CALL_LIMIT']);
      expect(notes.received).toEqual([]);
    });

    it('a result larger than maxCallBytes is refused (CapabilityError CALL_LIMIT), not copied in', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { try { const s = await caps.notes.big(200000); return s.length; } catch (e) { return [e.name, e.code]; } }';
      const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxCallBytes: 100_000 } });
      expectOk(out, ['CapabilityError', 'CALL_LIMIT']);
    });

    it('an oversize result left uncaught → CALL_LIMIT', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { return (await caps.notes.big(200000)).length; }';
      const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxCallBytes: 100_000 } });
      expectCode(out, 'CALL_LIMIT');
    });

    it('an oversize argument left uncaught → CALL_LIMIT', async () => {
      const notes = createTestNotes();
      const source = 'export default async function main(input, caps) { await caps.notes.write({ path: "notes/x", text: "x".repeat(200000) }); }';
      const { out } = await timed(sb, { source, capabilities: [notes.instance], limits: { ...base, maxCallBytes: 100_000 } });
      expectCode(out, 'CALL_LIMIT');
    });
  });
});
