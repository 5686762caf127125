/**
 * Test helpers for capabilities: call an instance the way the runtime's dispatcher does (parse the
 * argument, check the scope, invoke), and make throw-away folders.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContainedError } from '../../runtime/errors.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';

/** parseArgs → checkScope (refusal becomes OUT_OF_SCOPE) → invoke, like the dispatcher + pass-through gate. */
export async function call(instance: CapabilityInstance, methodName: string, raw?: unknown): Promise<unknown> {
  const args = instance.parseArgs(methodName, raw);
  const verdict = instance.checkScope(methodName, args);
  if (!verdict.ok) throw new ContainedError('OUT_OF_SCOPE', verdict.message);
  return instance.invoke(methodName, args, { runId: 'test-run', signal: new AbortController().signal });
}

/** A fresh temp folder (realpath'd, so host-path assertions are exact) and its cleanup. */
export function tempDir(prefix = 'cap-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Resolve to the error a promise rejects with (fails the test if it resolves). */
export async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<ContainedError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof ContainedError) return e;
    throw new Error(`expected a ContainedError, got ${String(e)}`);
  }
  throw new Error('expected a rejection, got a value');
}
