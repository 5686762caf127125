/**
 * Shared helpers for runtime and escape tests: both isolation modes, timing, and the assertions
 * every limit test makes (exact code, stopped in time, no host detail in the outcome).
 */
import { execFileSync } from 'node:child_process';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { expect } from 'vitest';
import type { RunOutcome, Sandbox } from '../../runtime/index.js';

export const MODES = ['in-process', 'worker'] as const;
export type Mode = (typeof MODES)[number];

/** Slack for "stopped within its limit": this 2-core machine is shared, so be generous. */
export const TOLERANCE_MS = 1500;

/** Anything that would reveal the host: its paths, its sources, its packages. */
export const HOST_DETAIL = /\/work\/|node_modules|\.ts:|\.ts\)|file:\/\/|\/usr\/|isolated-vm|worker-main|engine\.|dispatcher/;

/** Run and measure the host-side wall time of the call. */
export async function timed(sb: Sandbox, request: Parameters<Sandbox['run']>[0]): Promise<{ out: RunOutcome; ms: number }> {
  const t0 = performance.now();
  const out = await sb.run(request);
  return { out, ms: performance.now() - t0 };
}

/** The outcome is an error with exactly this code; returns the error for further checks. */
export function expectCode(out: RunOutcome, code: string): { code: string; message: string; stack?: string } {
  if (out.status !== 'error') expect.fail(`expected ${code}, got ok: ${JSON.stringify(out.value)?.slice(0, 200)}`);
  expect(out.error.code, out.error.message).toBe(code);
  return out.error;
}

/** The outcome is ok with this value. */
export function expectOk(out: RunOutcome, value: unknown): void {
  if (out.status !== 'ok') expect.fail(`expected ok, got ${out.error.code}: ${out.error.message}`);
  expect(out.value).toEqual(value);
}

/** Nothing of the host (paths, sources) appears anywhere in the outcome. */
export function expectNoHostDetail(out: RunOutcome): void {
  expect(JSON.stringify(out)).not.toMatch(HOST_DETAIL);
}

/** The sandbox still serves a trivial run after whatever happened before. */
export async function expectHealthy(sb: Sandbox): Promise<void> {
  const out = await sb.run({ source: 'export default function main(input) { return input + 1; }', input: 41 });
  expectOk(out, 42);
}

/** Wait until `check` holds (polling), or fail after `ms`. */
export async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** PIDs of this process's sandbox worker processes (children running worker-main). */
export function workerPids(): number[] {
  let text = '';
  try {
    text = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  } catch {
    return []; // ps exits 1 when there are no children
  }
  return text
    .split('\n')
    .filter((line) => line.includes('worker-main'))
    .map((line) => Number.parseInt(line.trim(), 10));
}

/** A real pino logger whose JSON lines are kept in memory, parsed, for assertions. */
export function captureLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}
