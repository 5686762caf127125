/**
 * Capability kinds as plugins (capabilities/plugin.ts, registry.ts): host options parsed by the
 * kind's own schema, a prepare step per configured instance that can produce the definition (the
 * shape the mcp kind needs), close at shutdown and when a sibling fails to open, one scope parse.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseGrantSpec } from '../../capabilities/grant-spec.js';
import { type CapabilityContext, definePlugin, NO_HOST_OPTIONS } from '../../capabilities/plugin.js';
import { builtinCapabilities, createRegistry, lookupKind, openKind } from '../../capabilities/registry.js';
import { createInstance, defineCapability, method } from '../../capabilities/sdk/index.js';
import { openCapabilities, parseHostConfig } from '../../host/config.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'plugins-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A kind that learns its one method's name at start, as mcp learns a server's tools. */
function discoveringKind(log: string[]) {
  const hostOptions = z.strictObject({ tool: z.string().regex(/^[a-z]+$/), tokenSecret: z.string().optional(), cwd: z.string().optional() });
  return definePlugin({
    hostOptions,
    async prepare(context: CapabilityContext<z.output<typeof hostOptions>>) {
      const { tool, tokenSecret, cwd } = context.hostOptions;
      log.push(`prepare ${context.name}: ${tool} token=${tokenSecret === undefined ? '-' : (context.secrets?.get(tokenSecret) ?? 'missing')} cwd=${cwd === undefined ? '-' : context.resolvePath(cwd)}`);
      const definition = defineCapability<Record<string, never>, { calls: number }>({
        name: 'discovered',
        description: 'methods found at start',
        scope: z.strictObject({}),
        intersect: () => ({}),
        describeScope: () => 'everything',
        methods: { [tool]: method({ description: 'the tool', args: z.undefined(), result: z.string(), risk: { readOnly: true }, run: () => `${tool} ran` }) },
      });
      return { definition, closed: false };
    },
    create: (scope, _context, options, prepared) => createInstance(prepared.definition, scope, { calls: 0 }, options),
    async close(prepared, context) {
      prepared.closed = true;
      log.push(`close ${context.name}`);
    },
  });
}

describe('capability plugins', () => {
  it('a prepared kind: host options parsed, prepare once per instance with its secrets and paths, the definition it built, close once', async () => {
    const log: string[] = [];
    writeFileSync(path.join(dir, 'tool-secrets.json'), JSON.stringify({ token: 's3cret' }));
    const registry = createRegistry({ tools: discoveringKind(log) });
    const config = parseHostConfig(
      {
        dataDir: 'state',
        capabilities: {
          search: { kind: 'tools', host: { tool: 'search', tokenSecret: 'token', cwd: 'servers' }, secrets: { file: 'tool-secrets.json' } },
          fetch: { kind: 'tools', host: { tool: 'fetch' } },
          clock: { kind: 'clock' },
        },
      },
      dir,
    );
    const opened = await openCapabilities(config, { registry });
    expect([...opened.instances.keys()]).toEqual(['search', 'fetch', 'clock']);
    expect(opened.instances.get('search')?.methodNames()).toEqual(['search']);
    expect(await opened.instances.get('fetch')?.invoke('fetch', undefined, { runId: 'r', signal: new AbortController().signal })).toBe('fetch ran');
    expect(log.sort()).toEqual(['prepare fetch: fetch token=- cwd=-', `prepare search: search token=s3cret cwd=${path.join(dir, 'servers')}`]);
    log.length = 0;
    await Promise.all([opened.close(), opened.close()]);
    expect(log.sort()).toEqual(['close fetch', 'close search']);
  });

  it('when one instance fails to open, the ones that did are closed and the error names the failing one', async () => {
    const log: string[] = [];
    const registry = createRegistry({ tools: discoveringKind(log) });
    const config = parseHostConfig({ capabilities: { ok: { kind: 'tools', host: { tool: 'ok' } }, bad: { kind: 'tools', host: { tool: 'Not-A-Name' } } } }, dir);
    await expect(openCapabilities(config, { registry })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/^config: capability "bad": tools: invalid host options at tool/),
      data: { path: ['capabilities', 'bad', 'host', 'tool'] },
    });
    expect(log).toEqual(['prepare ok: ok token=- cwd=-', 'close ok']);
  });

  it('a kind with a prepare step is the host\'s to start: a grant spec cannot name it', async () => {
    const registry = createRegistry({ tools: discoveringKind([]) });
    await expect(parseGrantSpec('t=tools', { registry })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/started by the host/) });
  });

  it('host options: a kind that takes none refuses any; grant specs get theirs per kind', async () => {
    const fs = lookupKind(builtinCapabilities, 'fs');
    if (!fs) throw new Error('fs');
    await expect(openKind('fs', fs, { name: 'files', hostOptions: { strategy: 'paths' } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', data: { path: ['host'] } });
    const mail = path.join(dir, 'spec-mail');
    const outbox = await parseGrantSpec('mail=outbox:{"from":"a@example.com","allowedRecipients":["@example.com"]}', { hostOptions: { outbox: { folder: mail } } });
    await outbox.invoke('send', { to: 'b@example.com', subject: 's', text: 't' }, { runId: 'r1', signal: new AbortController().signal });
    expect(readdirSync(path.join(mail, 'new'))).toHaveLength(1);
    await expect(parseGrantSpec('mail=outbox:{"from":"a@example.com","allowedRecipients":["@example.com"]}')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/no mail transport is configured/),
    });
  });

  it('an outbox folder in the host config is relative to the config file, not to dataDir', async () => {
    const config = parseHostConfig({ dataDir: 'state', capabilities: { mail: { kind: 'outbox', scope: { from: 'a@example.com', allowedRecipients: ['@example.com'] }, host: { folder: 'letters' } } } }, dir);
    const { instances, close } = await openCapabilities(config);
    await instances.get('mail')?.invoke('send', { to: 'b@example.com', subject: 's', text: 't' }, { runId: 'r1', signal: new AbortController().signal });
    expect(readdirSync(path.join(dir, 'letters', 'new'))).toHaveLength(1);
    await close();
  });

  it('a scope is parsed once, by createInstance; resources that depend on it are computed from that parse', async () => {
    let parses = 0;
    const counted = z.strictObject({ root: z.string() }).transform((s) => {
      parses++;
      return s;
    });
    const definition = defineCapability<{ root: string }, { opened: string }>({
      name: 'counted',
      description: 'counts scope parses',
      scope: counted,
      intersect: (p) => p,
      describeScope: (s) => s.root,
      methods: { get: method({ description: 'get', args: z.undefined(), result: z.string(), run: (_a, ctx: { deps: { opened: string } }) => ctx.deps.opened }) },
    });
    const plugin = definePlugin({ definition, hostOptions: NO_HOST_OPTIONS, create: (scope, _context, options) => createInstance(definition, scope, (parsed) => ({ opened: parsed.root }), options) });
    const instance = (await openKind('counted', plugin, { name: 'counted' })).create({ root: '/srv' });
    expect(parses).toBe(1);
    expect(instance.scope).toEqual({ root: '/srv' });
    expect(await instance.invoke('get', undefined, { runId: 'r', signal: new AbortController().signal })).toBe('/srv');
    // fs, the kind that used to parse its own scope first: a relative root is the data folder's, else refused by the one parse.
    mkdirSync(path.join(dir, 'files'), { recursive: true });
    const fs = lookupKind(builtinCapabilities, 'fs');
    if (!fs) throw new Error('fs');
    expect((await openKind('fs', fs, { name: 'files', host: { dataDir: dir } })).create({ root: 'files' }).scope).toMatchObject({ root: path.join(dir, 'files') });
    await expect(openKind('fs', fs, { name: 'files' }).then((k) => k.create({ root: 'files' }))).rejects.toMatchObject({ code: 'INVALID_SCOPE', message: expect.stringMatching(/invalid scope for fs at root/) });
  });
});
