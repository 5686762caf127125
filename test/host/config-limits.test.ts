/**
 * One configuration tree for the limits: the host config composes each module's options schema
 * (`http`, `sandbox`, `operator`, `console`, `audit`). Their defaults are today's numbers (the
 * modules' own defaults, unchanged), and a config setting one limit of each section reaches the
 * running host.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_HTTP_CONFIG } from '../../host/api/limits.js';
import { parseHostConfig } from '../../host/config.js';
import { SESSION_DEFAULTS } from '../../host/console/sessions.js';
import { OPERATOR_DEFAULTS } from '../../host/operator/server.js';
import * as sandboxModule from '../../runtime/sandbox.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

vi.mock('../../runtime/sandbox.js', async (importOriginal) => {
  const original = await importOriginal<typeof sandboxModule>();
  return { ...original, createSandbox: vi.fn(original.createSandbox) };
});

describe('composed config defaults', () => {
  const config = parseHostConfig({}, '/tmp');

  it('are the numbers the modules used before the config could set them', () => {
    expect(config.http).toEqual(DEFAULT_HTTP_CONFIG);
    expect(config.sandbox).toEqual({ maxRunsPerWorker: 32, heartbeatTimeoutMs: 5000, workerStartTimeoutMs: 30_000, maxWorkerOutputBytes: 64 * 1024, warmIsolates: 2 });
    expect(config.sandbox.workers).toBeUndefined();
    const { path: _path, maxConnectionsPerToken, ...operatorLimits } = OPERATOR_DEFAULTS;
    expect(config.operator).toEqual(operatorLimits);
    expect(maxConnectionsPerToken).toBe(config.http.maxOperatorConnectionsPerToken);
    expect(config.console).toEqual({ sessions: { ...SESSION_DEFAULTS }, sweepMs: 30_000 });
    expect(config.audit).toEqual({ lazyFlushMs: 10, checkpointEvery: 1000, checkpointIntervalMs: 60_000, maxBatch: 10_000, synchronous: 'full', busyTimeoutMs: 5000, inboxPollMs: 1000, publicKeyFiles: [] });
    expect(config.fleet).toEqual({ heartbeatMs: 2000, deadAfterMs: 15_000 });
    expect(config.store).toBeUndefined();
  });

  it('refuses unknown keys and out-of-range limits with the path', () => {
    expect(() => parseHostConfig({ sandbox: { heartbeatTimeout: 5 } }, '/tmp')).toThrow(/sandbox/);
    expect(() => parseHostConfig({ operator: { maxPayloadBytes: 0 } }, '/tmp')).toThrow(/operator\.maxPayloadBytes/);
    expect(() => parseHostConfig({ console: { sessions: { idleMs: -1 } } }, '/tmp')).toThrow(/console\.sessions\.idleMs/);
    expect(() => parseHostConfig({ audit: { synchronous: 'off' } }, '/tmp')).toThrow(/audit\.synchronous/);
    expect(() => parseHostConfig({ fleet: { heartbeatMs: 5000, deadAfterMs: 10_000 } }, '/tmp')).toThrow(/deadAfterMs must be at least three heartbeats/);
    expect(() => parseHostConfig({ store: 'postgres://[bad' }, '/tmp')).toThrow(/store: not a valid postgres:\/\/ URL/);
  });
});

describe('a config setting each section reaches the running host', () => {
  let f: Fixture | undefined;
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  it('sandbox, operator, console and audit limits', async () => {
    const createSandbox = vi.mocked(sandboxModule.createSandbox);
    createSandbox.mockClear();
    f = await startFixture({
      sandbox: { maxRunsPerWorker: 3, heartbeatTimeoutMs: 7000, warmIsolates: 1 },
      operator: { maxPayloadBytes: 32 * 1024, messagesPerSecond: 5 },
      console: { sessions: { codeTtlMs: 120_000 } },
      audit: { checkpointEvery: 1 },
    });
    // sandbox: the host's sandbox is created with the configured pool limits.
    expect(createSandbox).toHaveBeenCalledTimes(1);
    expect(createSandbox.mock.calls[0]?.[0]).toMatchObject({ maxRunsPerWorker: 3, heartbeatTimeoutMs: 7000, warmIsolates: 1, workerStartTimeoutMs: 30_000 });
    // operator: the hello announces the connection's limits.
    const alice = await f.operator('alice');
    expect(alice.hello.limits).toMatchObject({ maxPayloadBytes: 32 * 1024, messagesPerSecond: 5, messageBurst: 40, heartbeatMs: 15_000 });
    // console: a login code lives codeTtlMs.
    const before = Date.now();
    const link = await f.host.console?.loginLink(f.tokens.alice as string);
    expect(link).toBeDefined();
    expect((link?.expiresAt ?? 0) - before).toBeGreaterThanOrEqual(119_000);
    expect((link?.expiresAt ?? 0) - before).toBeLessThanOrEqual(121_000);
    // audit: a checkpoint after every record (the default signs one per 1000, and at close).
    const db = new Database(path.join(f.dir, 'contained.db'), { readonly: true });
    try {
      await vi.waitFor(() => expect((db.prepare('SELECT count(*) AS n FROM audit_checkpoints').get() as { n: number }).n).toBeGreaterThan(0), { timeout: 5000 });
    } finally {
      db.close();
    }
  });

  it('with the defaults no checkpoint is signed while the host runs (so the audit check above is the config)', async () => {
    f = await startFixture();
    const alice = await f.operator('alice');
    expect(alice.hello.limits).toEqual({ maxPayloadBytes: 64 * 1024, messagesPerSecond: 20, messageBurst: 40, heartbeatMs: 15_000 });
    await new Promise((r) => setTimeout(r, 300));
    const db = new Database(path.join(f.dir, 'contained.db'), { readonly: true });
    try {
      expect((db.prepare('SELECT count(*) AS n FROM audit_checkpoints').get() as { n: number }).n).toBe(0);
    } finally {
      db.close();
    }
  });
});
