/**
 * A minimal in-memory capability for runtime tests: `notes`, scoped to a path prefix, backed by a
 * Map. Every call that reaches an implementation is recorded in `received`, so tests can assert
 * what a capability actually saw (TOCTOU probes), not what the agent tried to send.
 *
 * Methods:
 * - `read(path)` / `write({ path, text })`: prefix-scoped (`scope.prefix`), in memory.
 * - `sleep(ms)`: resolves after `ms` (host time, not isolate CPU), or when the run ends.
 * - `big(bytes)`: returns a string of that many bytes.
 * - `info()`: returns a nested plain object (a "returned object" for escape probes).
 * - `fail()`: always throws a host `Error` with a host stack (to check nothing of it leaks).
 */
import { z } from 'zod';
import { createInstance, defineCapability, method, outOfScope, IN_SCOPE, type CapabilityInstance } from '../../capabilities/sdk/index.js';

export interface NotesScope {
  /** Only paths starting with this prefix are in scope. */
  prefix: string;
}

export interface NotesDeps {
  store: Map<string, string>;
  /** Every call an implementation ran, with the argument it got (a copy). */
  received: Array<{ method: string; args: unknown }>;
  /** `sleep` calls cut short because their run ended (the run's abort signal fired). */
  aborted: number[];
}

const path = z.string().min(1).max(1024);
const inPrefix = (p: string, scope: NotesScope) => (p.startsWith(scope.prefix) && !p.includes('..') ? IN_SCOPE : outOfScope(`"${p}" is outside ${scope.prefix}`));

export const notesDefinition = defineCapability<NotesScope, NotesDeps>({
  name: 'notes',
  description: 'In-memory notes for tests.',
  scope: z.strictObject({ prefix: z.string() }),
  intersect: (parent, narrower) => (narrower.prefix.startsWith(parent.prefix) ? narrower : parent),
  describeScope: (s) => `notes under "${s.prefix}"`,
  methods: {
    read: method({
      description: 'Read a note.',
      args: path,
      result: z.string().nullable(),
      risk: { readOnly: true },
      inScope: (p, scope) => inPrefix(p, scope),
      run: (p, { deps }) => {
        deps.received.push({ method: 'read', args: p });
        return deps.store.get(p) ?? null;
      },
    }),
    write: method({
      description: 'Write a note.',
      args: z.strictObject({ path, text: z.string().max(1 << 20) }),
      result: z.null(),
      risk: { readOnly: false, destructive: false, reversible: true, openWorld: false, financial: false },
      inScope: (a, scope) => inPrefix(a.path, scope),
      run: (a, { deps }) => {
        deps.received.push({ method: 'write', args: structuredClone(a) });
        deps.store.set(a.path, a.text);
        return null;
      },
    }),
    sleep: method({
      description: 'Wait ms milliseconds on the host.',
      args: z.number().int().min(0).max(60_000),
      result: z.number(),
      risk: { readOnly: true },
      run: (ms, { deps, signal }) => {
        deps.received.push({ method: 'sleep', args: ms });
        return new Promise<number>((resolve) => {
          const onAbort = (): void => {
            clearTimeout(timer);
            deps.aborted.push(ms);
            resolve(ms);
          };
          const timer = setTimeout(() => {
            signal.removeEventListener('abort', onAbort);
            resolve(ms);
          }, ms);
          signal.addEventListener('abort', onAbort, { once: true });
        });
      },
    }),
    big: method({
      description: 'Return a string of the given length.',
      args: z.number().int().min(0).max(64 * 1024 * 1024),
      result: z.string(),
      risk: { readOnly: true },
      run: (n, { deps }) => {
        deps.received.push({ method: 'big', args: n });
        return 'x'.repeat(n);
      },
    }),
    info: method({
      description: 'Return a nested plain object.',
      args: z.undefined(),
      result: z.object({ name: z.string(), items: z.array(z.number()), nested: z.object({ ok: z.boolean() }) }),
      risk: { readOnly: true },
      run: (_a, { deps }) => {
        deps.received.push({ method: 'info', args: undefined });
        return { name: 'notes', items: [1, 2, 3], nested: { ok: true } };
      },
    }),
    fail: method({
      description: 'Always fails with a host error.',
      args: z.undefined(),
      result: z.null(),
      risk: { readOnly: true },
      run: (_a, { deps }) => {
        deps.received.push({ method: 'fail', args: undefined });
        throw new Error(`host failure at ${import.meta.url}`);
      },
    }),
  },
});

export interface TestNotes {
  instance: CapabilityInstance<NotesScope, NotesDeps>;
  store: Map<string, string>;
  received: NotesDeps['received'];
  aborted: NotesDeps['aborted'];
}

/** A fresh `notes` instance (own store, own call record), scoped to `prefix` (default `notes/`). */
export function createTestNotes(prefix = 'notes/', initial: Record<string, string> = {}): TestNotes {
  const deps: NotesDeps = { store: new Map(Object.entries(initial)), received: [], aborted: [] };
  const instance = createInstance(notesDefinition, { prefix }, deps);
  return { instance, store: deps.store, received: deps.received, aborted: deps.aborted };
}
