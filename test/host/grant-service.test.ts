/**
 * The grant service, the only writer of grants: each write applies the rules before anything is
 * stored, stores, revokes the attenuated instance of a revoked grant and announces the change, in
 * a fixed order. Then the detached path: an approved recommendation nobody waits for is performed
 * through the runtime's Dispatcher and the gate's approved-request gate (its grant's attenuated
 * instance, the host's scope, exactly the approved method). Then two structural guards: nothing
 * but the grant service calls the store's grant writers, and the grant and trust modules sit in
 * no import cycle (type-only imports included).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFs } from '../../capabilities/fs/index.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { PolicyGate } from '../../host/gate/policy-gate.js';
import type { RequestManager } from '../../host/gate/requests.js';
import { type GrantEvent, GrantService } from '../../host/grant-service.js';
import type { Grant } from '../../host/model.js';
import { openSqliteStore } from '../../host/store/sqlite-store.js';
import type { Store } from '../../host/store/store.js';
import { Dispatcher } from '../../runtime/dispatcher.js';
import { DIGEST, grant, request } from './store-fixtures.js';

const NOW = 1_900_000_000_000;
const ADMIN = { name: 'erin', role: 'admin' } as const;

let dir: string;
let store: Store;
let notes: CapabilityInstance;
let events: GrantEvent[];
let service: GrantService;

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'grant-service-'));
  mkdirSync(path.join(dir, 'notes', 'sub'), { recursive: true });
  writeFileSync(path.join(dir, 'notes', 'a.txt'), 'alpha');
  writeFileSync(path.join(dir, 'notes', 'sub', 'b.txt'), 'beta');
  store = await openSqliteStore(path.join(dir, 'store.db'));
  notes = createFs({ root: path.join(dir, 'notes') });
  events = [];
  service = new GrantService({ store, instances: new Map([['notes', notes]]), now: () => NOW, emit: (e) => events.push(e) });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const input = (over: Partial<Parameters<GrantService['add']>[0]> = {}): Parameters<GrantService['add']>[0] => ({
  subject: { digest: DIGEST },
  capability: 'notes',
  methods: ['read'],
  mode: 'contained',
  createdBy: 'erin',
  reason: 'reads notes',
  ...over,
});

describe('GrantService: rules, store, attenuated instance, event', () => {
  it('add: stored and announced; a refusal by the rules writes nothing', async () => {
    const { grant: added } = await service.add(input(), ADMIN);
    expect(await store.getGrant(added.id)).toEqual(added);
    expect(events).toEqual([{ type: 'grant', change: 'added', grant: added }]);

    await expect(service.add(input({ methods: ['remove'] }), ADMIN)).rejects.toMatchObject({ code: 'GRANT_REFUSED' });
    await expect(service.add(input(), { role: 'viewer' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(service.add(input({ scope: { root: '/' } }), ADMIN)).rejects.toMatchObject({ code: 'INVALID_SCOPE' });
    await expect(service.add(input({ capability: 'mail' }), ADMIN)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await store.listGrants()).toHaveLength(1);
    expect(events).toHaveLength(1);
  });

  it('revoke: stored, the attenuated instance revoked (calls through it fail CAPABILITY_REVOKED), announced; unknown: undefined', async () => {
    const { grant: added } = await service.add(input(), ADMIN);
    const via = service.instanceFor(added, notes);
    expect(service.instanceFor(added, notes)).toBe(via); // one per grant: budgets accumulate
    await expect(via.invoke('read', 'a.txt', { runId: 'r', signal: new AbortController().signal })).resolves.toBe('alpha');
    const revoked = await service.revoke(added.id, 'erin', 'leaked');
    expect(revoked).toMatchObject({ id: added.id, revokedBy: 'erin', revokeReason: 'leaked', revokedAt: NOW });
    await expect(via.invoke('read', 'a.txt', { runId: 'r', signal: new AbortController().signal })).rejects.toMatchObject({ code: 'CAPABILITY_REVOKED' });
    expect(service.instanceFor(added, notes)).not.toBe(via);
    expect(events.map((e) => e.change)).toEqual(['added', 'revoked']);
    expect(await service.revoke('grt_nothere', 'erin', 'x')).toBeUndefined();
    expect(events).toHaveLength(2);
  });

  it('narrow: the new grant is stored before the old one is revoked; widening is refused with nothing written', async () => {
    const { grant: old } = await service.add(input({ methods: ['read', 'list'], mode: 'executed' }), ADMIN);
    const via = service.instanceFor(old, notes);
    await expect(service.narrow(old.id, { mode: 'contained', reason: 'wider' }, ADMIN)).rejects.toMatchObject({ code: 'NOT_NARROWER', data: { field: 'mode' } });
    await expect(service.narrow(old.id, { methods: ['read', 'stat'], reason: 'wider' }, ADMIN)).rejects.toMatchObject({ code: 'NOT_NARROWER', data: { field: 'methods' } });
    expect(await store.listGrants()).toHaveLength(1);

    const { grant: narrowed, revoked } = await service.narrow(old.id, { methods: ['read'], mode: 'assisted', scope: { paths: ['sub'] }, reason: 'only sub' }, ADMIN);
    expect(narrowed).toMatchObject({ methods: ['read'], mode: 'assisted', scope: { paths: ['sub'] }, createdBy: 'erin', reason: `only sub (narrowed from ${old.id})` });
    expect(revoked).toMatchObject({ id: old.id, revokeReason: `narrowed into ${narrowed.id}: only sub` });
    expect(events.map((e) => [e.change, e.grant.id])).toEqual([
      ['added', old.id],
      ['added', narrowed.id],
      ['revoked', old.id],
    ]);
    await expect(via.invoke('read', 'a.txt', { runId: 'r', signal: new AbortController().signal })).rejects.toMatchObject({ code: 'CAPABILITY_REVOKED' });
    await expect(service.narrow(old.id, { reason: 'again' }, ADMIN)).rejects.toMatchObject({ code: 'ALREADY_RESOLVED' });
    await expect(service.narrow('grt_nothere', { reason: 'x' }, ADMIN)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('change (a demotion): every revocation first, then the additions; operators hear them in that order', async () => {
    const a = await service.issue(grant({ id: 'a', capability: 'notes', mode: 'executed' }), { announce: false });
    const b = grant({ id: 'b', capability: 'notes', methods: ['list'], mode: 'executed' });
    const c = grant({ id: 'c', capability: 'notes', methods: ['read'], mode: 'assisted' });
    const viaA = service.instanceFor(a, notes);
    const change = await service.change([{ id: 'a', by: 'carol', reason: 'critical' }], [b, c]);
    expect(change.revoked.map((g) => g.id)).toEqual(['a']);
    expect(change.added.map((g) => g.id)).toEqual(['b', 'c']);
    expect(events.map((e) => [e.change, e.grant.id])).toEqual([
      ['revoked', 'a'],
      ['added', 'b'],
      ['added', 'c'],
    ]);
    await expect(viaA.invoke('read', 'a.txt', { runId: 'r', signal: new AbortController().signal })).rejects.toMatchObject({ code: 'CAPABILITY_REVOKED' });
  });

  it('issue: a pre-built grant that does not match the schema is refused INTERNAL and not stored', async () => {
    await expect(service.issue({ ...grant({ id: 'x' }), mode: 'autonomous' } as unknown as Grant)).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(service.issue({ ...grant({ id: 'y' }), extra: 1 } as unknown as Grant)).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(await store.listGrants()).toEqual([]);
    expect(events).toEqual([]);
  });

  it('an event listener that throws does not undo the write', async () => {
    const loud = new GrantService({ store, instances: new Map([['notes', notes]]), now: () => NOW, emit: () => { throw new Error('listener'); } });
    const { grant: added } = await loud.add(input(), ADMIN);
    expect(await store.getGrant(added.id)).toEqual(added);
  });
});

describe('an approved recommendation nobody waits for goes through the Dispatcher', () => {
  async function perform(gate: PolicyGate, rec: ReturnType<typeof request>, args: unknown) {
    const dispatcher = new Dispatcher(gate.approvedRequestGate(rec), undefined);
    return dispatcher.dispatch(
      { runId: rec.runId, subject: rec.subject, capabilities: new Map([['notes', notes]]), signal: new AbortController().signal, pauseWallClock: () => () => undefined },
      { seq: 0, capability: rec.capability, method: rec.method ?? '', argJson: JSON.stringify(args), reason: rec.reason },
    );
  }

  it("through the grant's attenuated instance (its budget spent by the gate's calls counts), exactly the approved method, within the host's scope", async () => {
    const assisted = await service.issue(grant({ id: 'g-assisted', capability: 'notes', methods: ['read', 'list'], mode: 'assisted', budgets: { read: { maxCalls: 2 } } }));
    const gate = new PolicyGate({ grants: service, requests: {} as RequestManager, instances: new Map([['notes', notes]]), run: () => undefined, outOfScope: 'escalate', requestTimeoutMs: 1_000 });
    const rec = request({ capability: 'notes', definition: 'fs', method: 'read', args: 'a.txt', grantId: assisted.id, risk: notes.risk('read') });

    expect(await perform(gate, rec, 'a.txt')).toEqual({ ok: true, value: 'alpha' });
    // The same attenuated instance the gate performs live calls through.
    await service.instanceFor(assisted, notes).invoke('read', 'sub/b.txt', { runId: 'r', signal: new AbortController().signal });
    expect(await perform(gate, rec, 'a.txt')).toMatchObject({ ok: false, error: { code: 'BUDGET_EXCEEDED' } });

    const other = request({ ...rec, id: 'r2', grantId: undefined });
    expect(await perform(gate, other, '../outside.txt')).toMatchObject({ ok: false, error: { code: 'CAPABILITY_DENIED' } });
    expect(await perform(gate, other, 42)).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    const dispatcher = new Dispatcher(gate.approvedRequestGate(other), undefined);
    const run = { runId: rec.runId, subject: rec.subject, capabilities: new Map([['notes', notes]]), signal: new AbortController().signal, pauseWallClock: () => () => undefined };
    expect(await dispatcher.dispatch(run, { seq: 0, capability: 'notes', method: 'list', argJson: '"."', reason: undefined })).toMatchObject({ ok: false, error: { code: 'CAPABILITY_DENIED' } });
    expect(await dispatcher.dispatch({ ...run, runId: 'another-run' }, { seq: 0, capability: 'notes', method: 'read', argJson: '"a.txt"', reason: undefined })).toMatchObject({ ok: false, error: { code: 'CAPABILITY_DENIED' } });

    await service.revoke(assisted.id, 'erin', 'gone');
    const gone = request({ ...rec, id: 'r3', grantId: 'grt_deleted' });
    expect(await perform(gate, gone, 'a.txt')).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
  });
});

// Structural guards -------------------------------------------------------------------------------

const ROOT = path.resolve(import.meta.dirname, '../..');

function sources(folder: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(folder)) {
    const file = path.join(folder, entry);
    if (entry === 'static' || entry === 'node_modules') continue;
    if (statSync(file).isDirectory()) out.push(...sources(file));
    else if (file.endsWith('.ts')) out.push(file);
  }
  return out;
}

describe('structure', () => {
  it("nothing but the grant service calls the store's grant writers (insertGrant, revokeGrant)", () => {
    const writers = new Set<string>();
    for (const file of sources(path.join(ROOT, 'host'))) {
      const text = readFileSync(file, 'utf8');
      // A call on a store: `store.`, `s.`, `deps.store.`, `host.store.`… (the definitions in host/store have no receiver).
      if (/\b(?:store|s)\??\.(?:insertGrant|revokeGrant)\(/.test(text)) writers.add(path.relative(ROOT, file).split(path.sep).join('/'));
    }
    expect([...writers]).toEqual(['host/grant-service.ts']);
  });

  it('the grant and trust modules are in no import cycle (type-only imports count)', () => {
    const files = sources(path.join(ROOT, 'host'));
    const graph = new Map<string, string[]>();
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const deps = [...text.matchAll(/(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'/g)].map((m) => path.resolve(path.dirname(file), (m[1] ?? '').replace(/\.js$/, '.ts')));
      graph.set(file, deps.filter((d) => graph.has(d) || files.includes(d)));
    }
    const mine = (f: string): boolean => /host[\\/](trust[\\/]|grant[^\\/]*\.ts$|gate[\\/]policy-gate\.ts$|console[\\/](oversight|grants)\.ts$)/.test(f);
    // Every module reachable from `start`; a cycle through `start` comes back to it.
    const cycles: string[] = [];
    for (const start of files.filter(mine)) {
      const seen = new Set<string>();
      const stack = [...(graph.get(start) ?? [])];
      while (stack.length > 0) {
        const next = stack.pop() as string;
        if (next === start) {
          cycles.push(path.relative(ROOT, start));
          break;
        }
        if (seen.has(next)) continue;
        seen.add(next);
        stack.push(...(graph.get(next) ?? []));
      }
    }
    expect(cycles).toEqual([]);
  });
});
