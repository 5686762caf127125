/**
 * Host liveness in a fleet on a real PostgreSQL (host/fleet.ts): a host that stops beating is
 * reaped by exactly one other; a database outage longer than the dead-host timeout makes no live
 * host reap another; and a host reaped while it stalled stops with HOST_REAPED.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseHostConfig } from '../../host/config.js';
import { createFleet, type Fleet } from '../../host/fleet.js';
import { startHost } from '../../host/host.js';
import { openPgStore } from '../../host/store/pg-store.js';
import type { Store } from '../../host/store/store.js';
import type { ContainedError } from '../../runtime/errors.js';
import { pgAvailable, type PgServer, startPostgres } from '../helpers/postgres.js';
import { waitUntil } from './helpers/wait.js';

const logger = pino({ level: 'silent' });
let pg: PgServer;
const stores: Store[] = [];
const fleets: Fleet[] = [];

beforeAll(async () => {
  if (pgAvailable) pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
});
afterEach(async () => {
  for (const f of fleets.splice(0)) await f.stop().catch(() => undefined);
  for (const s of stores.splice(0)) await s.close().catch(() => undefined);
});

async function member(url: string, reaped: string[], onReaped: () => void = () => undefined): Promise<{ fleet: Fleet; store: Store }> {
  const store = await openPgStore(url);
  stores.push(store);
  const fleet = createFleet({
    store,
    config: { heartbeatMs: 100, deadAfterMs: 600 },
    shared: true,
    now: Date.now,
    logger,
    onReap: async (id) => void reaped.push(id),
    onReaped,
  });
  fleets.push(fleet);
  await fleet.start();
  return { fleet, store };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!pgAvailable)('fleet liveness', () => {
  it('a host that stops beating is reaped once, by one live host; live hosts are not', async () => {
    const url = await pg.createDatabase();
    const reaped: string[] = [];
    const a = await member(url, reaped);
    const b = await member(url, reaped);
    const c = await member(url, reaped);
    // c goes silent: its store is gone, so its heartbeats fail (as a host that froze or died).
    await c.store.close();
    await waitUntil(() => (reaped.length > 0 ? true : undefined), 'the reap', 10_000);
    await sleep(800);
    expect(reaped).toEqual([c.fleet.hostId]);
    expect(a.fleet.alive(b.fleet.hostId)).toBe(true);
    expect((await a.store.listHosts()).find((h) => h.id === c.fleet.hostId)).toMatchObject({ reapedBy: expect.stringMatching(new RegExp(`^(${a.fleet.hostId}|${b.fleet.hostId})$`)) });
  });

  it('a database outage longer than the dead-host timeout makes no live host reap another', async () => {
    const url = await pg.createDatabase();
    const reaped: string[] = [];
    await member(url, reaped);
    await member(url, reaped);
    await sleep(700); // both past their first healthy timeout: reaping is armed
    await pg.halt();
    await sleep(1_500); // every heartbeat is now older than deadAfterMs
    await pg.resume();
    await sleep(2_000); // beats resume; without the healthy-since rule the first sweep reaps the other
    expect(reaped).toEqual([]);
  });

  it('a host reaped while it stalled stops itself with HOST_REAPED', async () => {
    const url = await pg.createDatabase();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-reaped-'));
    try {
      const config = parseHostConfig({ dataDir: dir, store: url, listen: { host: '127.0.0.1', port: 0 }, fleet: { heartbeatMs: 100, deadAfterMs: 600 } }, dir);
      let stopped: ContainedError | undefined;
      const host = await startHost({ config, isolation: 'in-process', logger, listen: false, onStopped: (reason) => (stopped = reason) });
      const other = await openPgStore(url);
      stores.push(other);
      const [self] = await other.listHosts();
      // Another host declares it dead (as after a stall longer than deadAfterMs).
      expect(await other.reapHost(self?.id as string, 'h_other', Date.now())).toBe(true);
      await waitUntil(() => stopped, 'the host to stop', 5_000);
      expect(stopped?.code).toBe('HOST_REAPED');
      await host.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
