/** The package entries expose the documented API by name (explicit exports, no `export *`); the host is `ai-contained/host`. */
import { describe, expect, it } from 'vitest';
import * as host from '../host-entry.js';
import * as contained from '../index.js';

describe('package entry', () => {
  it('exports the library API the README documents', () => {
    for (const name of [
      'createSandbox', 'defineCapability', 'createInstance', 'ContainedError',
      'createFs', 'createHttp', 'createKv', 'createSql', 'createOutbox', 'parseGrantSpec', 'generateCapsDts',
      'buildImage', 'loadImage', 'computeDigest',
    ] as const) {
      expect(typeof (contained as Record<string, unknown>)[name], name).toBe('function');
    }
    expect(typeof contained.passThroughGate.decide).toBe('function');
    expect(contained.ERROR_CODES.CPU_LIMIT).toMatch(/CPU/);
    expect(Object.keys(contained.builtinCapabilities)).toEqual(expect.arrayContaining(['fs', 'http', 'kv', 'sql', 'outbox', 'clock', 'random', 'log']));
  });

  it('exports what a platform needs to add its own capability kinds (plugins)', () => {
    for (const name of ['createRegistry', 'definePlugin', 'scopeWithDataDir'] as const) expect(typeof contained[name], name).toBe('function');
    expect(contained.NO_HOST_OPTIONS.safeParse(undefined).success).toBe(true);
    expect(contained.NO_HOST_OPTIONS.safeParse({ any: 1 }).success).toBe(false);
    const registry = contained.createRegistry({ mine: contained.definePlugin({ definition: contained.builtinCapabilities.clock?.definition, hostOptions: contained.NO_HOST_OPTIONS, create: (scope, context, options) => contained.createClock(scope, { now: context.now }, options) }) });
    expect(Object.keys(registry)).toContain('mine');
    expect(typeof host.openCapabilities).toBe('function');
  });

  it('leaves the host to its own entry, ai-contained/host', async () => {
    for (const name of ['startHost', 'parseHostConfig', 'loadHostConfig', 'createToken']) {
      expect(name in contained, name).toBe(false);
      expect(typeof (host as Record<string, unknown>)[name], name).toBe('function');
    }
  });

  it('gives webhook receivers the host\'s signature check (docs/approvals.md)', () => {
    expect(host.verifyWebhook('a-secret-of-16-chars', '{}', {})).toEqual({ ok: false, reason: 'missing' });
    expect('verifyWebhook' in contained).toBe(false);
  });

  it('runs an agent through the entry in a few lines', async () => {
    const sandbox = contained.createSandbox({ isolation: 'in-process' });
    try {
      expect(await sandbox.run({ source: 'export default async (input) => input.a + 1', input: { a: 41 } })).toMatchObject({ status: 'ok', value: 42 });
    } finally {
      await sandbox.close();
    }
  });
});
