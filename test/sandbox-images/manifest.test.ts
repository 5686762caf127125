/** The manifest schema: strict at every level, and each rule tested with a lookalike input. */
import { describe, expect, it } from 'vitest';
import { manifestSchema, parseManifest } from '../../sandbox-images/manifest.js';
import { expectCode, manifestJson } from './helpers.js';

const base = JSON.parse(manifestJson()) as Record<string, unknown>;
const request = (overrides: Record<string, unknown>): Record<string, unknown> => ({
  ...base,
  requests: [{ capability: 'files', kind: 'fs', scope: {}, methods: ['read'], why: 'Read.', ...overrides }],
});

describe('manifest schema', () => {
  it('accepts the minimal manifest and optional limits and input schema', () => {
    expect(manifestSchema.safeParse(base).success).toBe(true);
    expect(manifestSchema.safeParse({ ...base, requests: [], limits: { cpuMs: 10, memoryMb: 8 }, input: { type: 'object' } }).success).toBe(true);
  });

  const rejected: [string, Record<string, unknown>][] = [
    ['an unknown top-level key', { ...base, scripts: {} }],
    ['format 2', { ...base, format: 2 }],
    ['format "1"', { ...base, format: '1' }],
    ['an upper-case name', { ...base, name: 'Agent' }],
    ['a version that is not semver', { ...base, version: 'v1' }],
    ['an entry with ./', { ...base, entry: './agent/main.js' }],
    ['an entry with ..', { ...base, entry: '../main.js' }],
    ['an absolute entry', { ...base, entry: '/agent/main.js' }],
    ['an entry that is not a module', { ...base, entry: 'agent/main.json' }],
    ['an unknown key in a request', request({ grantAll: true })],
    ['a binding that is not an identifier', request({ capability: 'my-files' })],
    ['an upper-case kind', request({ kind: 'FS' })],
    ['a scope that is not an object', request({ scope: ['/'] })],
    ['no methods', request({ methods: [] })],
    ['duplicate methods', request({ methods: ['read', 'read'] })],
    ['an empty why', request({ why: '   ' })],
    ['duplicate bindings', { ...base, requests: [...(request({}).requests as unknown[]), ...(request({}).requests as unknown[])] }],
    ['an unknown limit', { ...base, limits: { cpuSeconds: 1 } }],
    ['a zero limit', { ...base, limits: { wallMs: 0 } }],
    ['a fractional limit', { ...base, limits: { maxCalls: 1.5 } }],
    ['memoryMb under the isolate minimum', { ...base, limits: { memoryMb: 4 } }],
    ['an input schema that is not an object', { ...base, input: 'string' }],
  ];
  for (const [what, manifest] of rejected) {
    it(`refuses ${what}`, async () => {
      expect(manifestSchema.safeParse(manifest).success).toBe(false);
      const error = await expectCode(Promise.resolve().then(() => parseManifest(Buffer.from(JSON.stringify(manifest)))), 'IMAGE_MANIFEST_INVALID');
      expect(Array.isArray(error.data?.issues)).toBe(true);
    });
  }

  it('refuses bytes that are not UTF-8 JSON', async () => {
    await expectCode(Promise.resolve().then(() => parseManifest(Buffer.from([0xff, 0xfe]))), 'IMAGE_MANIFEST_INVALID');
    await expectCode(Promise.resolve().then(() => parseManifest(Buffer.from('{'))), 'IMAGE_MANIFEST_INVALID');
  });
});
