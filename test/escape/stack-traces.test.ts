/**
 * Escape probes through stack traces: `Error.prepareStackTrace` set by the agent gets structured
 * CallSites, including frames of the sandbox bootstrap — they must not hand out functions,
 * receivers or host file names. Whatever the agent does to its stacks, the host-side outcome stays
 * typed, and a stack in any outcome never contains a host path (host error stacks once leaked).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox, type RunOutcome } from '../../runtime/index.js';
import { createTestNotes } from '../helpers/test-capability.js';
import { MODES, expectCode, expectNoHostDetail, timed } from '../helpers/sandbox.js';

const limits = { cpuMs: 1000, wallMs: 10_000, memoryMb: 64 };

describe.each(MODES)('escape: stack traces (%s)', (isolation) => {
  const sb = createSandbox({ isolation });
  afterAll(() => sb.close());
  const run = (source: string, program?: { files: Record<string, string>; entry: string }): Promise<RunOutcome> =>
    timed(sb, { ...(program ? { program } : { source }), capabilities: [createTestNotes().instance], limits }).then((r) => r.out);

  it('Error.prepareStackTrace sees only sandbox frames: no functions, no receivers, no host file names', async () => {
    const source = `export default async function main(input, caps) {
      const frames = [];
      Error.prepareStackTrace = (error, callSites) => {
        for (const c of callSites) {
          frames.push({ file: c.getFileName() ?? null, fn: typeof c.getFunction(), self: typeof c.getThis(), evalOrigin: c.getEvalOrigin() ?? null });
        }
        return 'formatted';
      };
      try { await caps.notes.read('secret/x'); } catch (e) { e.stack; }
      try { await caps.notes.fail(); } catch (e) { e.stack; }
      try { null.x; } catch (e) { e.stack; }
      try { JSON.parse('{'); } catch (e) { e.stack; }
      return frames;
    }`;
    const out = await run(source);
    expect(out.status).toBe('ok');
    const frames = (out as { value: Array<{ file: string | null; fn: string; self: string; evalOrigin: string | null }> }).value;
    expect(frames.length).toBeGreaterThan(3);
    for (const f of frames) {
      expect(['main.js', '<contained>', null]).toContain(f.file);
      expect(f.fn).toBe('undefined');
      expect(f.self).toBe('undefined');
    }
    expect(frames.some((f) => f.file === '<contained>')).toBe(true);
  });

  it('Error.captureStackTrace on an agent object with prepareStackTrace reaches no host function', async () => {
    const source = `export default async function main(input, caps) {
      const fns = [];
      Error.prepareStackTrace = (e, sites) => { for (const s of sites) fns.push(s.getFunction()); return ''; };
      const holder = {};
      await caps.notes.read('notes/a');
      Error.captureStackTrace(holder);
      holder.stack;
      return fns.filter((f) => f !== undefined).map((f) => f.constructor.constructor('return typeof process')());
    }`;
    const out = await run(source);
    expect(out.status).toBe('ok');
    expect((out as { value: string[] }).value.every((t) => t === 'undefined')).toBe(true);
  });

  it('prepareStackTrace forging a host-looking stack: the outcome is typed and the forged frames are dropped', async () => {
    const source = `export default function main() {
      Error.prepareStackTrace = () => 'Error: x\\n    at run (/work/main/runtime/engine.ts:1:1)\\n    at node_modules/isolated-vm/x.js:2:2';
      throw new Error('x');
    }`;
    const out = await run(source);
    const error = expectCode(out, 'AGENT_ERROR');
    expect(error.message).toBe('x');
    expect(error.stack).toBeUndefined();
    expectNoHostDetail(out);
  });

  // A throwing prepareStackTrace makes reading `stack` throw, and the bootstrap then describes the
  // whole value as undescribable (observed; the message is lost, the code is still right).
  it.each([
    ['prepareStackTrace returning an object', 'Error.prepareStackTrace = () => ({ toString() { return "obj"; } });', 'after'],
    ['prepareStackTrace that throws', 'Error.prepareStackTrace = () => { throw new Error("pst"); };', 'the thrown value could not be described'],
    ['prepareStackTrace that returns a huge string', 'Error.prepareStackTrace = () => "at main (main.js:1:1)\\n".repeat(100000);', 'after'],
    ['a non-function prepareStackTrace', 'Error.prepareStackTrace = 42;', 'after'],
  ])('%s: the outcome is a typed AGENT_ERROR without host detail', async (_name, setup, message) => {
    const out = await run(`export default async function main(input, caps) { ${setup} await caps.notes.fail().catch(() => {}); throw new Error("after"); }`);
    const error = expectCode(out, 'AGENT_ERROR');
    expect(error.message).toBe(message);
    expect(JSON.stringify(out).length).toBeLessThan(40_000);
    expectNoHostDetail(out);
  });

  it('stacks of agent errors show sandbox frames across modules, nothing host-side', async () => {
    const program = {
      files: {
        'main.js': 'import { deep } from "./lib/deep.js"; export default async function main() { await null; return deep(3); }',
        'lib/deep.js': 'export function deep(n) { if (n === 0) throw new RangeError("bottom"); return deep(n - 1); }',
      },
      entry: 'main.js',
    };
    const out = await run('', program);
    const error = expectCode(out, 'AGENT_ERROR');
    expect(error.stack).toMatch(/^RangeError: bottom\n/);
    expect(error.stack).toMatch(/lib\/deep\.js:1:\d+/);
    for (const line of (error.stack as string).split('\n').slice(1)) expect(line).toMatch(/\((main\.js|lib\/deep\.js):\d+:\d+\)|^\s+at (main\.js|lib\/deep\.js):/);
    expectNoHostDetail(out);
  });

  it.each([
    ['an agent Error', 'export default function main() { throw new Error("e"); }'],
    ['an uncaught capability denial', 'export default async function main(input, caps) { await caps.notes.read("secret/x"); }'],
    ['an uncaught host failure', 'export default async function main(input, caps) { await caps.notes.fail(); }'],
    ['an invalid argument', 'export default async function main(input, caps) { await caps.notes.write({ path: 1 }); }'],
    ['a capability error re-thrown after reading its stack', 'export default async function main(input, caps) { try { await caps.notes.fail(); } catch (e) { e.stack; throw e; } }'],
    ['a dynamic-import failure', 'export default async function main() { await import("node:fs"); }'],
    ['a syntax error', 'export default function main( {'],
    ['an eval syntax error', 'export default function main() { eval("{"); }'],
    ['a stack overflow', 'export default function main() { const f = () => f(); f(); }'],
    ['a link error', 'import { nope } from "./main.js"; export default function main() {}'],
    ['a CPU limit', 'export default function main() { for (;;) {} }'],
  ])('%s: no host path anywhere in the outcome', async (_name, source) => {
    const out = await run(source);
    expect(out.status).toBe('error');
    expectNoHostDetail(out);
  });
});
