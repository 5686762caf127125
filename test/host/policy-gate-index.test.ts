/**
 * The grant index: the gate decides from grants held in memory (grant-service.ts), not from a
 * listing of the store per call. These tests hold it to the store's answer:
 *
 * - what the index serves equals `store.listGrants({ activeAt })` (same grants, same order) and
 *   what `chooseGrant` decides over the store's list;
 * - writes through the grant service apply at once (add, revoke, narrow: the old grant never
 *   matches again, the narrower one does), without a reload of every grant;
 * - writes by another connection or another process (the CLI's `grant add` / `grant revoke` on
 *   the same file) are seen by the next decision, and a grant revoked there never matches again;
 * - an own write racing a foreign one leaves no stale index (the foreign change is seen);
 * - expiry applies exactly (a grant expiring at t matches before t, never at or after);
 * - commits that change no grant (the audit log's) do not make the index reload.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type CapabilityInstance, createInstance, defineCapability, IN_SCOPE, outOfScope } from '../../capabilities/sdk/index.js';
import { PolicyGate } from '../../host/gate/policy-gate.js';
import type { RequestManager } from '../../host/gate/requests.js';
import { chooseGrant } from '../../host/grant-choice.js';
import { GrantService } from '../../host/grant-service.js';
import type { Grant, RunSubject } from '../../host/model.js';
import { openSqliteStore } from '../../host/store/sqlite-store.js';
import type { Store } from '../../host/store/store.js';
import type { GateCall, GateContext } from '../../runtime/gate.js';
import { DIGEST, grant, OTHER_DIGEST } from './store-fixtures.js';

const KEY = `sha256:${'12'.repeat(32)}`;
const OTHER_KEY = `sha256:${'34'.repeat(32)}`;
const ADMIN = { name: 'erin', role: 'admin' } as const;

const notesDef = defineCapability({
  name: 'notes',
  description: 'notes',
  scope: z.strictObject({ prefix: z.string().optional() }),
  intersect: (a, b) => {
    if ((b.prefix ?? '').startsWith(a.prefix ?? '')) return b.prefix === undefined ? {} : { prefix: b.prefix };
    throw new Error('no intersection');
  },
  describeScope: (s) => `notes under "${s.prefix ?? ''}"`,
  methods: {
    read: {
      description: 'reads a note',
      args: z.string(),
      result: z.string(),
      risk: { readOnly: true },
      inScope: (name, scope) => (name.startsWith(scope.prefix ?? '') ? IN_SCOPE : outOfScope(`outside "${scope.prefix ?? ''}"`)),
      run: (name) => `note ${name}`,
    },
    write: { description: 'writes a note', args: z.string(), result: z.null(), risk: { readOnly: false, destructive: false, reversible: true }, run: () => null },
  },
});

let dir: string;
let file: string;
let store: Store;
let other: Store;
let now: number;
let host: CapabilityInstance;
let service: GrantService;
let gate: PolicyGate;
let listings: number;

const RUN: RunSubject = { digest: DIGEST, name: 'notes-agent', signers: [KEY] };
const ctx: GateContext = { signal: new AbortController().signal, pauseWallClock: () => () => {} };
let seq = 0;

function call(method = 'read', args: unknown = 'a.txt'): GateCall {
  return {
    callId: `c${++seq}`,
    runId: 'run-1',
    subject: DIGEST,
    capability: 'notes',
    definition: 'notes',
    method,
    args,
    reason: undefined,
    risk: host.risk(method),
    scope: host.checkScope(method, args),
  };
}

/** The basis of the gate's decision: `grant:<id>`, or the refusal's code (the gate denies what no grant covers). */
async function basis(method = 'read', args: unknown = 'a.txt'): Promise<string> {
  const d = await gate.decide(call(method, args), ctx);
  return d.allow ? (d.basis ?? '?') : d.code;
}

/** `store` with `listGrants` counted (the index must not list per decision). */
function counted(s: Store): Store {
  return new Proxy(s, {
    get(target, prop, receiver) {
      if (prop === 'listGrants') {
        return (...args: Parameters<Store['listGrants']>) => {
          listings++;
          return target.listGrants(...args);
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function wire(s: Store): void {
  host = createInstance(notesDef, {}, {});
  service = new GrantService({ store: s, instances: new Map([['notes', host]]), now: () => now });
  gate = new PolicyGate({
    grants: service,
    requests: {} as RequestManager,
    instances: new Map([['notes', host]]),
    run: () => ({ subject: RUN, allowances: [] }),
    outOfScope: 'deny',
    requestTimeoutMs: 60_000,
    now: () => now,
  });
}

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'grant-index-'));
  file = path.join(dir, 'contained.db');
  store = await openSqliteStore(file);
  other = await openSqliteStore(file);
  now = 1_900_000_000_000;
  listings = 0;
  wire(counted(store));
});
afterEach(async () => {
  await store.close();
  await other.close();
  rmSync(dir, { recursive: true, force: true });
});

const notesGrant = (over: Partial<Grant> = {}): Grant => grant({ capability: 'notes', methods: ['read'], createdAt: now - 1000, ...over });

describe('grant index: the same answer as the store', () => {
  it('active() lists what the store lists as active, in the same order, and chooseGrant picks the same grant', async () => {
    const made: Grant[] = [];
    // Same createdAt for several (order then by id), other subjects, names with signers, expired, revoked.
    for (let i = 0; i < 40; i++) {
      const subject = i % 4 === 0 ? { digest: DIGEST } : i % 4 === 1 ? { digest: OTHER_DIGEST } : i % 4 === 2 ? { name: 'notes-agent', signer: i % 8 === 2 ? KEY : OTHER_KEY } : { name: 'other', signer: KEY };
      const g = notesGrant({
        id: `g${String((i * 7) % 40).padStart(2, '0')}`,
        subject,
        createdAt: now - 1000 + (i % 5),
        mode: (['contained', 'executed', 'assisted'] as const)[i % 3],
        methods: i % 6 === 0 ? ['*'] : ['read'],
        ...(i % 9 === 0 ? { expiresAt: now + 500 } : {}),
        ...(i % 11 === 0 ? { expiresAt: now - 1 } : {}),
      });
      await other.insertGrant(g);
      made.push(g);
    }
    await other.revokeGrant('g07', 'bob', 'test', now - 10);
    for (const t of [now, now + 499, now + 500, now + 10_000]) {
      now = t;
      const fromStore = await store.listGrants({ activeAt: t });
      expect(await service.active(t)).toEqual(fromStore);
      const c = { subject: RUN, capability: 'notes', method: 'read', now: t };
      expect(chooseGrant(await service.matching(RUN, t), c)).toEqual(chooseGrant(fromStore, c));
    }
  });

  it('decides from memory: no listing of the store per decision once loaded', async () => {
    await other.insertGrant(notesGrant({ id: 'g1' }));
    expect(await basis()).toBe('grant:g1');
    const after = listings;
    for (let i = 0; i < 50; i++) expect(await basis()).toBe('grant:g1');
    expect(listings).toBe(after);
  });

  it('commits that change no grant (runs, requests, the audit log) do not reload the index', async () => {
    await other.insertGrant(notesGrant({ id: 'g1' }));
    expect(await basis()).toBe('grant:g1');
    const after = listings;
    await other.insertRun({ id: 'run9', subject: DIGEST, imageName: 'x', status: 'running', input: null, createdAt: now });
    await store.updateRun('run9', { status: 'ok', endedAt: now });
    expect(await basis()).toBe('grant:g1');
    expect(listings).toBe(after);
  });
});

describe('grant index: writes through the grant service apply at once', () => {
  it('add, revoke: the next decision sees them; revoked never matches again; no reload of every grant', async () => {
    expect(await basis()).toBe('CAPABILITY_DENIED');
    const loaded = listings;
    const { grant: added } = await service.add({ subject: { digest: DIGEST }, capability: 'notes', methods: ['read'], mode: 'contained', createdBy: 'erin', reason: 'reads' }, ADMIN);
    expect(await basis()).toBe(`grant:${added.id}`);
    await service.revoke(added.id, 'erin', 'leaked');
    expect(await basis()).toBe('CAPABILITY_DENIED');
    expect(await service.active(now)).toEqual([]);
    expect(listings).toBe(loaded);
  });

  it('narrow: the old grant never matches again, the narrower one decides (its scope applies)', async () => {
    const { grant: wide } = await service.add({ subject: { name: 'notes-agent', signer: KEY }, capability: 'notes', methods: ['read', 'write'], mode: 'contained', createdBy: 'erin', reason: 'notes' }, ADMIN);
    expect(await basis('read', 'b/x')).toBe(`grant:${wide.id}`);
    expect(await basis('write', 'n')).toBe(`grant:${wide.id}`);
    const { grant: narrow } = await service.narrow(wide.id, { methods: ['read'], reason: 'read only' }, ADMIN);
    expect(await basis('write', 'n')).toBe('CAPABILITY_DENIED');
    expect(await basis('read', 'b/x')).toBe(`grant:${narrow.id}`);
    expect((await service.active(now)).map((g) => g.id)).toEqual([narrow.id]);
  });

  it('always, issue and change (promotion, demotion) are indexed too', async () => {
    const a = await service.issue(notesGrant({ id: 'ga', mode: 'assisted', createdAt: now }));
    const e = notesGrant({ id: 'ge', mode: 'executed', createdAt: now + 1 });
    await service.change([{ id: a.id, by: 'trust', reason: 'promoted' }], [e]);
    expect(await basis()).toBe('grant:ge');
    expect((await service.active(now)).map((g) => g.id)).toEqual(['ge']);
  });
});

describe('grant index: writes by another connection or process', () => {
  it('a grant added by another connection decides the next call; one revoked there never matches again', async () => {
    expect(await basis()).toBe('CAPABILITY_DENIED');
    await other.insertGrant(notesGrant({ id: 'g1' }));
    expect(await basis()).toBe('grant:g1');
    await other.revokeGrant('g1', 'bob', 'gone', now);
    expect(await basis()).toBe('CAPABILITY_DENIED');
    expect(await service.active(now)).toEqual([]);
  });

  it('a revocation by another connection between two decisions wins over a less supervised grant', async () => {
    await other.insertGrant(notesGrant({ id: 'g-assisted', mode: 'assisted' }));
    await other.insertGrant(notesGrant({ id: 'g-contained', mode: 'contained' }));
    expect(await service.matching(RUN, now)).toHaveLength(2);
    await other.revokeGrant('g-contained', 'bob', 'gone', now);
    const c = { subject: RUN, capability: 'notes', method: 'read', now };
    expect(chooseGrant(await service.matching(RUN, now), c).grant?.id).toBe('g-assisted');
  });

  it('another process (a CLI on the same file) adding and revoking grants', async () => {
    expect(await basis()).toBe('CAPABILITY_DENIED');
    const script = path.join(dir, 'writer.mts');
    const storeModule = path.resolve('host/store/sqlite-store.ts');
    writeFileSync(
      script,
      `import { openSqliteStore } from ${JSON.stringify(storeModule)};
const [file, op, id, digest, at] = process.argv.slice(2);
const s = await openSqliteStore(file);
if (op === 'add') await s.insertGrant({ id, subject: { digest }, capability: 'notes', methods: ['read'], mode: 'contained', approvals: 1, createdBy: 'cli', reason: 'cli', createdAt: Number(at) });
else await s.revokeGrant(id, 'cli', 'cli', Number(at));
await s.close();
`,
    );
    const run = (...args: string[]): void => {
      execFileSync(process.execPath, ['--import', 'tsx', script, file, ...args], { stdio: 'pipe' });
    };
    run('add', 'g-cli', DIGEST, String(now - 5));
    expect(await basis()).toBe('grant:g-cli');
    run('revoke', 'g-cli', DIGEST, String(now));
    expect(await basis()).toBe('CAPABILITY_DENIED');
  }, 60_000);

  it('an own write racing a foreign one: the foreign change is seen, not hidden by the own one', async () => {
    await other.insertGrant(notesGrant({ id: 'g-old', subject: { digest: OTHER_DIGEST } }));
    await other.revokeGrant('g-old', 'bob', 'gone', now);
    // A store whose writes let another connection commit first (as a CLI could, between two awaits).
    const racing = new Proxy(counted(store), {
      get(target, prop, receiver) {
        if (prop === 'revokeGrant') {
          return async (...args: Parameters<Store['revokeGrant']>) => {
            await other.insertGrant(notesGrant({ id: 'g-foreign' }));
            return target.revokeGrant(...args);
          };
        }
        if (prop === 'insertGrant') {
          return async (g: Grant) => {
            await other.revokeGrant('g-foreign', 'bob', 'gone', now);
            return target.insertGrant(g);
          };
        }
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
    wire(racing);
    expect(await basis()).toBe('CAPABILITY_DENIED'); // loaded
    // Revoking an already revoked grant changes nothing of ours; the foreign grant must show.
    await service.revoke('g-old', 'erin', 'again');
    expect(await basis()).toBe('grant:g-foreign');
    // Adding one of ours while the foreign one is revoked: ours shows, the foreign one never again.
    const mine = await service.issue(notesGrant({ id: 'g-mine', subject: { digest: DIGEST }, methods: ['write'] }));
    expect(await basis()).toBe('CAPABILITY_DENIED');
    expect(await basis('write', 'n')).toBe(`grant:${mine.id}`);
  });
});

describe('grant index: expiry', () => {
  it('a grant expiring at t matches before t, never at or after it', async () => {
    await other.insertGrant(notesGrant({ id: 'g-exp', expiresAt: now + 100 }));
    expect(await basis()).toBe('grant:g-exp');
    now += 99;
    expect(await basis()).toBe('grant:g-exp');
    now += 1;
    expect(await basis()).toBe('CAPABILITY_DENIED');
    expect(await service.active(now)).toEqual([]);
    now += 10_000;
    expect(await basis()).toBe('CAPABILITY_DENIED');
  });

  it('an expired grant never matches, even when it was loaded while active', async () => {
    await other.insertGrant(notesGrant({ id: 'g-short', mode: 'contained', expiresAt: now + 10, createdAt: now - 2000 }));
    await other.insertGrant(notesGrant({ id: 'g-long', mode: 'assisted' }));
    expect((await service.matching(RUN, now)).map((g) => g.id)).toEqual(['g-short', 'g-long']);
    now += 10;
    expect((await service.matching(RUN, now)).map((g) => g.id)).toEqual(['g-long']);
  });
});
