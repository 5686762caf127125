/**
 * `contained grant …` and `contained token …` through the real dispatcher (`main` with captured
 * io) against a real host config and a real SQLite file: round trips, the risk policy as a user
 * meets it, exit codes (0 ok, 2 usage/invalid argument, 1 refused/not found) and `CODE: message`.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../host/cli/main.js';
import { loadHostConfig, loadSecrets, openCapabilities, parseHostConfig } from '../../host/config.js';
import { grantCovers } from '../../host/grants.js';
import type { Grant } from '../../host/model.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { createTokenVerifier } from '../../host/tokens.js';
import { ContainedError } from '../../runtime/errors.js';
import { generateSigningKeys } from '../../sandbox-images/signature.js';
import { DIGEST, KEY, OTHER_DIGEST } from './store-fixtures.js';

let dir: string;
let config: string;
let reports: string;
let stateFile: string;
const cwd = process.cwd();

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

const add = (...extra: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  cli('grant', 'add', '--config', config, '--subject', DIGEST, '--capability', 'reports', '--reason', 'weekly report', '--by', 'alice', ...extra);

async function storedGrants(): Promise<Grant[]> {
  const store = await openSqliteStore(stateFile);
  try {
    return await store.listGrants();
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-cli-state-'));
  reports = path.join(dir, 'reports');
  await mkdir(path.join(reports, '2024'), { recursive: true });
  config = path.join(dir, 'contained.config.json');
  await writeFile(
    config,
    JSON.stringify({
      dataDir: './state',
      capabilities: {
        reports: { kind: 'fs', scope: { root: reports } },
        notes: { kind: 'kv', scope: { file: 'notes.db', namespace: 'notes' } },
      },
    }),
  );
  stateFile = defaultStorePath(path.join(dir, 'state'));
});
afterEach(() => {
  process.chdir(cwd);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('contained grant', () => {
  it('add → list → covers → revoke round trip, with the store where the config says', async () => {
    const added = await add('--methods', 'read,list', '--mode', 'contained', '--expires', '+7d', '--budget', 'read=maxCalls:100,perSecond:2');
    expect(added).toMatchObject({ code: 0, stderr: '' });
    const id = /granted (grt_[0-9a-f]{16})/.exec(added.stdout)?.[1];
    expect(id).toBeDefined();
    expect(added.stdout).toContain('read, list');
    expect(existsSync(stateFile)).toBe(true);

    const [stored] = await storedGrants();
    expect(stored).toMatchObject({ id, subject: { digest: DIGEST }, capability: 'reports', methods: ['read', 'list'], mode: 'contained', approvals: 1, createdBy: 'alice', reason: 'weekly report', budgets: { read: { maxCalls: 100, perSecond: 2 } } });
    expect(stored?.expiresAt).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    const run = { digest: DIGEST, name: undefined, signers: [] };
    expect(stored && grantCovers(stored, { subject: run, capability: 'reports', method: 'read', now: Date.now() })).toBe(true);

    const listed = await cli('grant', 'list', '--config', config);
    expect(listed.code).toBe(0);
    expect(listed.stdout.split('\n')[0]).toMatch(/^ID\s+SUBJECT\s+CAPABILITY\s+METHODS\s+MODE\s+APPROVALS\s+EXPIRES\s+STATUS\s+REASON$/);
    expect(listed.stdout).toMatch(new RegExp(`${id}\\s+sha256:abababababab…\\s+reports\\s+read,list\\s+contained\\s+-\\s+\\d{4}-\\d\\d-\\d\\dT[\\d:]+Z\\s+active\\s+weekly report`));
    const json = JSON.parse((await cli('grant', 'list', '--config', config, '--json')).stdout) as Grant[];
    expect(json.map((g) => g.id)).toContain(id);

    const revoked = await cli('grant', 'revoke', id ?? '', '--reason', 'report retired', '--config', config, '--by', 'bob');
    expect(revoked).toMatchObject({ code: 0 });
    expect(revoked.stdout).toMatch(/^revoked grt_/);
    expect((await cli('grant', 'revoke', id ?? '', '--reason', 'again', '--config', config)).stdout).toMatch(/already revoked .* by bob: report retired/);
    expect((await cli('grant', 'list', '--config', config)).stdout).not.toContain(id);
    expect((await cli('grant', 'list', '--config', config, '--all')).stdout).toMatch(new RegExp(`${id}.*revoked`));
    expect((await storedGrants()).find((g) => g.id === id)).toMatchObject({ revokedBy: 'bob', revokeReason: 'report retired' });
  });

  it('refuses a destructive method as contained (exit 1, GRANT_REFUSED) unless forced with a recorded reason', async () => {
    const refused = await add('--methods', 'read,remove', '--mode', 'contained');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^GRANT_REFUSED: reports\.remove is destructive or financial and cannot be granted "contained"/);
    expect(refused.stdout).toBe('');

    const forced = await add('--methods', 'read,remove', '--mode', 'contained', '--force-reason', 'nightly cleanup, audited');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain('forced      by alice: nightly cleanup, audited');
    expect(forced.stderr).toMatch(/warning: risk policy overridden by alice/);
    expect((await cli('grant', 'list', '--config', config)).stdout).toMatch(/read,remove\s+contained.*active \(forced\)/);
  });

  it('assisted destructive: approvals raised to 2 with a note; an explicit 1 is refused', async () => {
    const raised = await add('--methods', 'remove', '--mode', 'assisted', '--json');
    expect(raised.code).toBe(0);
    expect((JSON.parse(raised.stdout) as Grant).approvals).toBe(2);
    expect(raised.stderr).toMatch(/note: approvals set to 2/);
    const one = await add('--methods', 'remove', '--mode', 'assisted', '--approvals', '1');
    expect(one.code).toBe(1);
    expect(one.stderr).toMatch(/^GRANT_REFUSED: .*2 distinct approvers/);
  });

  it('executed only for reversible methods', async () => {
    expect((await add('--methods', 'append', '--mode', 'executed')).stderr).toMatch(/^GRANT_REFUSED: reports\.append is not reversible/);
    expect((await add('--methods', 'move,mkdir', '--mode', 'executed', '--review-sample', '0.25')).code).toBe(0);
  });

  it('narrows the scope (inline or @file) and refuses a wider one (exit 2, INVALID_SCOPE)', async () => {
    const narrow = await add('--methods', 'read', '--mode', 'contained', '--scope', JSON.stringify({ root: path.join(reports, '2024') }), '--json');
    expect(narrow.code).toBe(0);
    expect((JSON.parse(narrow.stdout) as Grant).scope).toEqual({ root: path.join(reports, '2024') });
    const scopeFile = path.join(dir, 'scope.json');
    await writeFile(scopeFile, JSON.stringify({ root: path.join(reports, '2024'), readOnly: true }));
    expect((await add('--methods', 'read', '--mode', 'contained', '--scope', `@${scopeFile}`)).code).toBe(0);
    const wide = await add('--methods', 'read', '--mode', 'contained', '--scope', JSON.stringify({ root: '/etc' }));
    expect(wide.code).toBe(2);
    expect(wide.stderr).toMatch(/^INVALID_SCOPE: /);
    expect((await add('--methods', 'read', '--mode', 'contained', '--scope', '[1]')).stderr).toMatch(/^INVALID_ARGUMENT: --scope: must be a JSON object/);
  });

  it('refuses a scope wider than the configured instance, field by field (exit 2, INVALID_SCOPE naming the field)', async () => {
    // The payments example: the instance refunds at most 50000 cents. A grant of 90000 must not be
    // stored (it would show 90000 while the limit stays 50000); a narrower one is stored as written.
    const payDir = path.join(dir, 'pay');
    await mkdir(payDir, { recursive: true });
    const payConfig = path.join(payDir, 'contained.config.json');
    await writeFile(
      payConfig,
      JSON.stringify({
        dataDir: './state',
        capabilities: {
          payments: { kind: 'payments', scope: { maxAmountCents: 50_000, currency: 'EUR' }, host: { ledger: { file: 'shop.db', currency: 'EUR' } } },
          docs: { kind: 'fs', scope: { root: reports, readOnly: true, maxFileBytes: 4096 } },
        },
      }),
    );
    const grantTo = (capability: string, methods: string, scope: unknown) =>
      cli('grant', 'add', '--config', payConfig, '--subject', DIGEST, '--capability', capability, '--methods', methods, '--mode', 'assisted', '--approvals', '2', '--reason', 'refund desk', '--scope', JSON.stringify(scope), '--json');
    for (const wider of [{ maxAmountCents: 90_000 }, { maxAmountCents: 90_000, currency: 'EUR' }, { maxAmountCents: 50_001 }]) {
      const res = await grantTo('payments', 'refund', wider);
      expect(res, JSON.stringify(wider)).toMatchObject({ code: 2, stdout: '' });
      expect(res.stderr).toMatch(/^INVALID_SCOPE: .*maxAmountCents/);
    }
    for (const [wider, field] of [[{ readOnly: false }, 'readOnly'], [{ maxFileBytes: 8192 }, 'maxFileBytes'], [{ root: path.dirname(reports) }, '']] as const) {
      const res = await grantTo('docs', 'read', wider);
      expect(res, JSON.stringify(wider)).toMatchObject({ code: 2, stdout: '' });
      expect(res.stderr).toMatch(new RegExp(`^INVALID_SCOPE: .*${field}`));
    }
    const narrower = await grantTo('payments', 'refund', { maxAmountCents: 20_000 });
    expect(narrower.code).toBe(0);
    expect((JSON.parse(narrower.stdout) as Grant).scope).toEqual({ maxAmountCents: 20_000 });
    expect((await grantTo('payments', 'refund', { maxAmountCents: 50_000, currency: 'EUR' })).code).toBe(0);
    expect((await grantTo('docs', 'read', { maxFileBytes: 1024 })).code).toBe(0);
  });

  it('matches grants by signed image name', async () => {
    const res = await cli('grant', 'add', '--config', config, '--subject', `refund-desk@${KEY}`, '--capability', 'notes', '--methods', 'get,list', '--mode', 'contained', '--reason', 'notes');
    expect(res.code).toBe(0);
    const listed = await cli('grant', 'list', '--config', config, '--subject', `refund-desk@${KEY}`, '--json');
    const grants = JSON.parse(listed.stdout) as Grant[];
    expect(grants.map((g) => g.capability)).toEqual(['notes']);
    expect(JSON.parse((await cli('grant', 'list', '--config', config, '--subject', `refund-desk@sha256:${'99'.repeat(32)}`, '--json')).stdout)).toEqual([]);
    expect(JSON.parse((await cli('grant', 'list', '--config', config, '--subject', OTHER_DIGEST, '--json')).stdout)).toEqual([]);
  });

  it.each([
    [['--subject', 'sha256:short'], 2, /^INVALID_ARGUMENT: subject "sha256:short"/],
    [['--methods', 'read,delete'], 2, /^INVALID_ARGUMENT: reports has no method "delete"/],
    [['--mode', 'autonomous'], 2, /^USAGE: --mode is contained, executed or assisted/],
    [['--capability', 'secrets'], 1, /^NOT_FOUND: the host config has no capability "secrets" \(it has: reports, notes\)/],
    [['--expires', '2001-01-01T00:00:00Z'], 2, /^INVALID_ARGUMENT: the expiry must be in the future/],
    [['--expires', 'next week'], 2, /^INVALID_ARGUMENT: expiry "next week"/],
    [['--budget', 'list=maxCalls:5'], 2, /^INVALID_ARGUMENT: a budget for reports\.list/],
    [['--approvals', 'two'], 2, /^USAGE: --approvals takes a positive whole number/],
    [['--review-sample', '2'], 2, /^USAGE: --review-sample/],
    [['--frobnicate'], 2, /^USAGE: Unknown option '--frobnicate'/],
    [['extra'], 2, /^USAGE: unexpected argument "extra"/],
  ])('refuses %j with exit %i', async (override, code, stderr) => {
    const flags = new Map<string, string | undefined>([
      ['--subject', DIGEST],
      ['--capability', 'reports'],
      ['--methods', 'read'],
      ['--mode', 'contained'],
      ['--reason', 'x'],
      ['--config', config],
    ]);
    const extra: string[] = [];
    for (let i = 0; i < override.length; i++) {
      const flag = override[i] ?? '';
      if (!flag.startsWith('--')) extra.push(flag);
      else if (flags.has(flag)) flags.set(flag, override[++i]);
      else if (flag === '--frobnicate') extra.push(flag);
      else extra.push(flag, override[++i] ?? '');
    }
    const argv = ['grant', 'add', ...[...flags].flatMap(([k, v]) => [k, v ?? '']), ...extra];
    const before = (await storedGrants()).length;
    const res = await cli(...argv);
    expect(res.code).toBe(code);
    expect(res.stderr).toMatch(stderr);
    expect(res.stdout).toBe('');
    expect((await storedGrants()).length).toBe(before);
  });

  it('refuses to add without a host config (USAGE naming it) and without a reason', async () => {
    const empty = path.join(dir, 'empty');
    await mkdir(empty, { recursive: true });
    process.chdir(empty);
    const res = await cli('grant', 'add', '--subject', DIGEST, '--capability', 'reports', '--methods', 'read', '--mode', 'contained', '--reason', 'x', '--data-dir', path.join(dir, 'state'));
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^USAGE: grant add needs the host config .*contained\.config\.json.*--config FILE/);
    const missing = await cli('grant', 'add', '--config', path.join(empty, 'nope.json'), '--subject', DIGEST, '--capability', 'reports', '--methods', 'read', '--mode', 'contained', '--reason', 'x');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^USAGE: cannot read host config .*nope\.json/);
    const noReason = await cli('grant', 'add', '--config', config, '--subject', DIGEST, '--capability', 'reports', '--methods', 'read', '--mode', 'contained');
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/^USAGE: --reason is required/);
  });

  it('uses ./contained.config.json when present, and lists nothing (creating nothing) where there is no store', async () => {
    process.chdir(dir);
    const res = await cli('grant', 'add', '--subject', OTHER_DIGEST, '--capability', 'reports', '--methods', 'stat', '--mode', 'contained', '--reason', 'default config');
    expect(res.code).toBe(0);
    expect((await storedGrants()).some((g) => g.reason === 'default config')).toBe(true);
    const nowhere = path.join(dir, 'nowhere');
    const listed = await cli('grant', 'list', '--data-dir', nowhere);
    expect(listed).toMatchObject({ code: 0, stdout: 'no active grants (--all shows revoked and expired ones)\n' });
    expect(existsSync(nowhere)).toBe(false);
  });

  it('revoke: unknown id (exit 1), missing reason or id (exit 2); help and unknown subcommands', async () => {
    expect(await cli('grant', 'revoke', 'grt_nope', '--reason', 'x', '--config', config)).toMatchObject({ code: 1, stderr: expect.stringMatching(/^NOT_FOUND: no grant grt_nope/) });
    expect((await cli('grant', 'revoke', 'grt_nope', '--config', config)).code).toBe(2);
    expect((await cli('grant', 'revoke', '--reason', 'x', '--config', config)).stderr).toMatch(/^USAGE: grant revoke takes one grant ID/);
    expect(await cli('grant', '--help')).toMatchObject({ code: 0, stdout: expect.stringContaining('contained grant add') });
    expect((await cli('grant')).code).toBe(2);
    expect((await cli('grant', 'bogus')).stderr).toMatch(/^USAGE: unknown grant command "bogus"/);
    expect((await cli('--help')).stdout).toMatch(/grant add\|list\|revoke/);
  });
});

describe('contained token', () => {
  const dataDir = (): string => path.join(dir, 'tokens');

  it('create prints the token once (stdout) with a warning; only the hash is stored; verify, list, revoke', async () => {
    const created = await cli('token', 'create', '--name', 'alice', '--role', 'approver', '--data-dir', dataDir(), '--by', 'root');
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^ctd_[A-Za-z0-9_-]{43}\n$/);
    expect(created.stderr).toMatch(/only time the token is shown; it is not stored/);
    const token = created.stdout.trim();

    const store = await openSqliteStore(defaultStorePath(dataDir()));
    let operator;
    try {
      operator = await createTokenVerifier(store).verify(token);
    } finally {
      await store.close();
    }
    expect(operator).toMatchObject({ name: 'alice', role: 'approver' });
    const fileBytes = await readFile(defaultStorePath(dataDir()));
    expect(fileBytes.includes(Buffer.from(token))).toBe(false);

    const listed = await cli('token', 'list', '--data-dir', dataDir());
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^ID\s+NAME\s+ROLE\s+CREATED\s+BY\s+STATUS\n/);
    expect(listed.stdout).toMatch(/tok_[0-9a-f]{16}\s+alice\s+approver\s+\S+\s+root\s+active/);
    expect(listed.stdout).not.toContain(token);
    const json = await cli('token', 'list', '--data-dir', dataDir(), '--json');
    expect(json.stdout).not.toMatch(/hash|[0-9a-f]{64}/);
    const [record] = JSON.parse(json.stdout) as Array<{ id: string }>;

    const dup = await cli('token', 'create', '--name', 'alice', '--role', 'admin', '--data-dir', dataDir());
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/^INVALID_ARGUMENT: an active token named "alice" exists/);

    expect(await cli('token', 'revoke', record?.id ?? '', '--data-dir', dataDir())).toMatchObject({ code: 0, stdout: expect.stringMatching(/^revoked tok_/) });
    expect((await cli('token', 'revoke', record?.id ?? '', '--data-dir', dataDir())).stdout).toMatch(/already revoked/);
    expect((await cli('token', 'list', '--data-dir', dataDir())).stdout).toMatch(/alice\s+approver.*revoked \d{4}-/);
    const again = await openSqliteStore(defaultStorePath(dataDir()));
    try {
      expect(await createTokenVerifier(again).verify(token)).toBeUndefined();
    } finally {
      await again.close();
    }
    // The name is free again.
    expect((await cli('token', 'create', '--name', 'alice', '--role', 'viewer', '--data-dir', dataDir(), '--json')).code).toBe(0);
  });

  it('--json create carries the token but no hash', async () => {
    const res = await cli('token', 'create', '--name', 'ci', '--role', 'platform', '--data-dir', dataDir(), '--json');
    const body = JSON.parse(res.stdout) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['createdAt', 'createdBy', 'id', 'name', 'role', 'token']);
  });

  it.each([
    [['token', 'create', '--name', 'bob', '--role', 'root'], 2, /^USAGE: --role is one of viewer, approver, admin, platform/],
    [['token', 'create', '--role', 'viewer'], 2, /^USAGE: --name is required/],
    [['token', 'create', '--name', 'bad name', '--role', 'viewer'], 2, /^INVALID_ARGUMENT: token name "bad name"/],
    [['token', 'revoke', 'tok_nope'], 1, /^NOT_FOUND: no token tok_nope/],
    [['token', 'revoke'], 2, /^USAGE: token revoke takes one token ID/],
    [['token', 'frob'], 2, /^USAGE: unknown token command "frob"/],
  ])('%j exits %i', async (argv, code, stderr) => {
    const res = await cli(...argv, '--data-dir', dataDir());
    expect(res.code).toBe(code);
    expect(res.stderr).toMatch(stderr);
  });

  it('list on a data folder that does not exist says so and creates nothing', async () => {
    const nowhere = path.join(dir, 'no-tokens-here');
    expect(await cli('token', 'list', '--data-dir', nowhere)).toMatchObject({ code: 0, stdout: 'no tokens\n' });
    expect(existsSync(nowhere)).toBe(false);
  });
});

describe('host config', () => {
  function fails(f: () => unknown, code: string, message?: RegExp): void {
    let error: unknown;
    try {
      f();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ContainedError);
    expect((error as ContainedError).code).toBe(code);
    if (message) expect((error as ContainedError).message).toMatch(message);
  }

  it('fills the defaults and resolves top-level paths against the config folder', () => {
    expect(parseHostConfig({}, '/etc/contained')).toEqual({
      dataDir: '/etc/contained/.contained',
      configDir: '/etc/contained',
      listen: { host: '127.0.0.1', port: 7420 },
      capabilities: {},
      allowedOrigins: [],
      requestTimeoutMs: 900_000,
      outOfScope: 'escalate',
      trustedKeys: [],
      requireSignature: false,
      maxConcurrentRuns: 32,
      maxQueuedRuns: 1000,
      metricsPublic: false,
      http: {
        headersTimeoutMs: 10_000,
        requestTimeoutMs: 120_000,
        keepAliveTimeoutMs: 5_000,
        maxConnections: 512,
        maxEventStreamsPerClient: 64,
        maxOperatorConnectionsPerToken: 16,
        crossClientReaders: [],
        maxImageBytes: 32 * 1024 * 1024,
        maxRunBodyBytes: 48 * 1024 * 1024,
        maxWaitMs: 120_000,
        sseHeartbeatMs: 15_000,
        sseMaxBufferedBytes: 4 * 1024 * 1024,
      },
      trust: { minAssistedReviews: 200, maxEditRate: 0.1, autoAccept: false, demoteErrorRate: 0.05, demoteWindow: 50, windowDays: 30, windowCount: 200, phase3MinReviews: 50, promotedReviewSample: 1 },
      sandbox: { maxRunsPerWorker: 32, heartbeatTimeoutMs: 5_000, workerStartTimeoutMs: 30_000, maxWorkerOutputBytes: 64 * 1024, warmIsolates: 2 },
      operator: {
        maxPayloadBytes: 64 * 1024,
        messagesPerSecond: 20,
        messageBurst: 40,
        abuseWindowMs: 10_000,
        heartbeatMs: 15_000,
        maxBufferedBytes: 4 * 1024 * 1024,
        closeTimeoutMs: 5_000,
        snapshotChunkSize: 500,
      },
      console: { sessions: { idleMs: 1_800_000, maxAgeMs: 28_800_000, codeTtlMs: 3_600_000, maxSessions: 1000 }, sweepMs: 30_000 },
      audit: { lazyFlushMs: 10, checkpointEvery: 1000, checkpointIntervalMs: 60_000, maxBatch: 10_000, synchronous: 'full', busyTimeoutMs: 5_000, inboxPollMs: 1_000, publicKeyFiles: [] },
      mcp: { maxSourceBytes: 262_144, maxConcurrentRuns: 4, runsPerMinute: 60, progressIntervalMs: 10_000, maxSessions: 100, sessionIdleMs: 1_800_000, maxBodyBytes: 1_048_576 },
      notify: { webhooks: [], maxAttempts: 12, initialDelayMs: 2_000, maxDelayMs: 600_000, maxConcurrent: 4, pollMs: 1_000, keepMs: 604_800_000 },
      approvals: { signed: 'off', userVerification: 'required', rpName: 'contained', registrationTimeoutMs: 120_000 },
      dataFlow: { afterSensitive: 'escalate', sensitive: [] },
      staging: { maxEffects: 1000, maxBytes: 8_388_608, undoWindowMs: 86_400_000 },
      fleet: { heartbeatMs: 2_000, deadAfterMs: 15_000 },
    });
    const config = parseHostConfig(
      {
        dataDir: 'state',
        capabilities: {
          mail: { kind: 'outbox', scope: {}, host: { folder: 'mail' } },
          api: { kind: 'http', scope: {}, secrets: { file: 'secrets.json' } },
          inline: { kind: 'http', scope: {}, secrets: { file: 'a.json', other: 'b' } },
        },
      },
      '/srv/host',
    );
    // Paths outside scopes are relative to the config file's folder: secrets files now, host options when the kind opens.
    expect(config).toMatchObject({ dataDir: '/srv/host/state', configDir: '/srv/host', capabilities: { mail: { host: { folder: 'mail' } }, api: { secrets: { file: '/srv/host/secrets.json' } }, inline: { secrets: { file: 'a.json', other: 'b' } } } });
    expect(parseHostConfig({ listen: { port: 0 } }, '/x').listen).toEqual({ host: '127.0.0.1', port: 0 });
  });

  it('is strict: unknown keys, bad values and bad capability names are INVALID_ARGUMENT with the path', () => {
    fails(() => parseHostConfig({ datadir: 'x' }, '/x'), 'INVALID_ARGUMENT', /datadir|Unrecognized/);
    fails(() => parseHostConfig({ listen: { port: 70_000 } }, '/x'), 'INVALID_ARGUMENT', /listen\.port/);
    fails(() => parseHostConfig({ capabilities: { 'Bad-Name': { kind: 'fs' } } }, '/x'), 'INVALID_ARGUMENT', /capabilities/);
    fails(() => parseHostConfig({ capabilities: { reports: { kind: 'fs', scope: {}, mode: 'contained' } } }, '/x'), 'INVALID_ARGUMENT', /capabilities\.reports/);
    fails(() => parseHostConfig({ outOfScope: 'ignore' }, '/x'), 'INVALID_ARGUMENT', /outOfScope/);
    fails(() => parseHostConfig({ requestTimeoutMs: 0 }, '/x'), 'INVALID_ARGUMENT', /requestTimeoutMs/);
  });

  it('reads trusted keys from PEM files and refuses anything that is not an ed25519 public key', async () => {
    const keys = generateSigningKeys();
    await writeFile(path.join(dir, 'signer.pub.pem'), keys.publicKeyPem);
    expect(parseHostConfig({ trustedKeys: ['signer.pub.pem', keys.publicKeyPem] }, dir).trustedKeys).toEqual([keys.publicKeyPem, keys.publicKeyPem]);
    await writeFile(path.join(dir, 'garbage.pem'), 'hello');
    fails(() => parseHostConfig({ trustedKeys: ['garbage.pem'] }, dir), 'INVALID_ARGUMENT', /trustedKeys\.0/);
    fails(() => parseHostConfig({ trustedKeys: ['missing.pem'] }, dir), 'USAGE', /trusted key file/);
  });

  it("secrets: a capability's own, inline or a file of name → value", async () => {
    const secretsOf = (secrets: unknown) => loadSecrets(parseHostConfig({ capabilities: { api: { kind: 'http', secrets } } }, dir).capabilities.api?.secrets);
    expect(secretsOf({ API_KEY: 'k1' })?.get('API_KEY')).toBe('k1');
    await writeFile(path.join(dir, 'secrets.json'), JSON.stringify({ API_KEY: 'k2' }));
    const fromFile = secretsOf({ file: 'secrets.json' });
    expect(fromFile?.get('API_KEY')).toBe('k2');
    expect(fromFile?.get('file')).toBeUndefined();
    await writeFile(path.join(dir, 'bad-secrets.json'), JSON.stringify({ API_KEY: 1 }));
    fails(() => secretsOf({ file: 'bad-secrets.json' }), 'INVALID_ARGUMENT', /secrets file/);
  });

  it('mail, secrets and paymentsLedger moved into the capabilities: the old top-level keys say where', () => {
    fails(() => parseHostConfig({ mail: { folder: 'mail' } }, dir), 'INVALID_ARGUMENT', /mail: .*capabilities\.<name>\.host/);
    fails(() => parseHostConfig({ secrets: { API_KEY: 'k' } }, dir), 'INVALID_ARGUMENT', /secrets: .*capabilities\.<name>\.secrets/);
    fails(() => parseHostConfig({ paymentsLedger: { file: 'shop.db', currency: 'EUR' } }, dir), 'INVALID_ARGUMENT', /paymentsLedger: .*"ledger"/);
  });

  it('loadHostConfig: USAGE for a missing file, INVALID_ARGUMENT for bad JSON', async () => {
    await expect(loadHostConfig(path.join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'USAGE' });
    await writeFile(path.join(dir, 'broken.json'), '{');
    await expect(loadHostConfig(path.join(dir, 'broken.json'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((await loadHostConfig(config)).dataDir).toBe(path.join(dir, 'state'));
  });

  it('openCapabilities: one instance per binding, with the configured methods; bad kinds, scopes and host options name the capability', async () => {
    const loaded = parseHostConfig({ dataDir: 'state', capabilities: { reports: { kind: 'fs', scope: { root: reports }, methods: ['read', 'list'] }, clock: { kind: 'clock' } } }, dir);
    const { instances, close } = await openCapabilities(loaded);
    expect([...instances.keys()]).toEqual(['reports', 'clock']);
    expect(instances.get('reports')?.methodNames()).toEqual(['read', 'list']);
    expect(instances.get('reports')?.name).toBe('reports');
    await close();
    const open = (capabilities: unknown) => openCapabilities(parseHostConfig({ capabilities }, dir));
    await expect(open({ x: { kind: 'teleport' } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/capability "x": unknown kind "teleport"/) });
    await expect(open({ x: { kind: 'fs', scope: { root: 7 } } })).rejects.toMatchObject({ code: 'INVALID_SCOPE', message: expect.stringMatching(/capability "x"/) });
    await expect(open({ x: { kind: 'fs', scope: { root: reports }, host: { strategy: 'paths' } } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/capability "x": fs: invalid host options/),
      data: { path: ['capabilities', 'x', 'host'] },
    });
    await expect(open({ m: { kind: 'outbox', scope: { from: 'a@example.com', allowedRecipients: ['@example.com'] }, host: { folder: 7 } } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/capability "m": outbox: invalid host options/),
      data: { path: ['capabilities', 'm', 'host'] },
    });
  });
});
