/**
 * A host started with a platform's registry (HostOptions.registry): a configured kind with a
 * prepare step starts with the host, its instance is offered, and its close runs at host shutdown.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { definePlugin } from '../../capabilities/plugin.js';
import { createRegistry } from '../../capabilities/registry.js';
import { createInstance, defineCapability, method } from '../../capabilities/sdk/index.js';
import { parseHostConfig } from '../../host/config.js';
import { startHost } from '../../host/host.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'host-plugins-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a host with a platform registry', () => {
  it('starts a prepared kind with the host, offers its instance, closes it at shutdown', async () => {
    const events: string[] = [];
    const server = definePlugin({
      hostOptions: z.strictObject({ greeting: z.string() }),
      async prepare(context) {
        events.push(`start ${context.name}`);
        return defineCapability<Record<string, never>, unknown>({
          name: 'greeter',
          description: 'greets',
          scope: z.strictObject({}),
          intersect: () => ({}),
          describeScope: () => 'all',
          methods: { greet: method({ description: 'greet', args: z.undefined(), result: z.string(), risk: { readOnly: true }, run: () => context.hostOptions.greeting }) },
        });
      },
      create: (scope, _context, options, definition) => createInstance(definition, scope, {}, options),
      async close(_definition, context) {
        events.push(`close ${context.name}`);
      },
    });
    const config = parseHostConfig({ dataDir: dir, capabilities: { hello: { kind: 'greeter', host: { greeting: 'hi' } } } }, dir);
    const host = await startHost({ config, registry: createRegistry({ greeter: server }), isolation: 'in-process', listen: false, logger: pino({ level: 'silent' }) });
    try {
      expect(events).toEqual(['start hello']);
      expect(host.instances.get('hello')?.methodNames()).toEqual(['greet']);
    } finally {
      await host.close();
    }
    expect(events).toEqual(['start hello', 'close hello']);
  });

  it('a config naming a kind the registry lacks fails at start-up, naming the capability', async () => {
    const config = parseHostConfig({ dataDir: dir, capabilities: { hello: { kind: 'greeter' } } }, dir);
    await expect(startHost({ config, isolation: 'in-process', listen: false, logger: pino({ level: 'silent' }) })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/capability "hello": unknown kind "greeter"/),
    });
  });
});
