/**
 * The host's layers import downwards only (docs/architecture.md has the picture). Each file of
 * host/ belongs to one layer — named here as a file, or by its folder — and may import files of
 * its own layer or of layers below it, never above: the adapters get ports, so nothing below the
 * composition root (host/host.ts) imports it. A new file in an existing folder takes that folder's
 * layer; a file no layer names fails the test until it is placed.
 *
 * And below the host: runtime/, capabilities/ and sandbox-images/ never import host/.
 */
import { describe, expect, it } from 'vitest';
import { importGraph } from './imports.js';

/** Bottom first. A member ending in `/` is a folder; an exact file wins over its folder. */
export const HOST_LAYERS: ReadonlyArray<{ name: string; members: readonly string[] }> = [
  {
    name: 'foundations (data shapes, option schemas, pure helpers)',
    members: [
      'host/model.ts',
      'host/trust/model.ts',
      'host/event-hub.ts',
      'host/logger.ts',
      'host/audit/canonical.ts',
      'host/audit/config.ts',
      'host/trust/policy.ts',
      'host/api/limits.ts',
      'host/console/limits.ts',
      'host/operator/limits.ts',
      'host/mcp/limits.ts',
      'host/notify/config.ts',
      'host/gate/data-flow-config.ts',
      'host/changesets/config.ts',
      'host/approvals/config.ts',
      'host/approvals/challenge.ts',
      'host/fleet-config.ts',
    ],
  },
  { name: 'config', members: ['host/config.ts'] },
  { name: 'store', members: ['host/store/', 'host/tokens.ts'] },
  { name: 'grants', members: ['host/grants.ts', 'host/grant-scope.ts', 'host/grant-choice.ts', 'host/grant-narrowing.ts', 'host/grant-service.ts', 'host/grant-index.ts', 'host/agents.ts'] },
  { name: 'gate and requests', members: ['host/gate/', 'host/changesets/', 'host/fleet.ts'] },
  { name: 'audit, trust and metrics', members: ['host/audit/', 'host/trust/', 'host/metrics.ts', 'host/notify/', 'host/approvals/'] },
  { name: 'runs', members: ['host/runs/'] },
  { name: 'operator backend', members: ['host/operator/backend.ts', 'host/host-backend.ts'] },
  { name: 'adapters (HTTP API, web console, operator channel, MCP server)', members: ['host/api/', 'host/http.ts', 'host/console/', 'host/operator/', 'host/mcp/'] },
  { name: 'composition root', members: ['host/host.ts'] },
  { name: 'CLI', members: ['host/cli/'] },
];

/** The layer index of a host file (-1: none names it). */
export function layerOf(file: string, layers = HOST_LAYERS): number {
  const exact = layers.findIndex((l) => l.members.includes(file));
  if (exact >= 0) return exact;
  let best = -1;
  let bestLength = -1;
  layers.forEach((l, i) => {
    for (const m of l.members) {
      if (m.endsWith('/') && file.startsWith(m) && m.length > bestLength) {
        best = i;
        bestLength = m.length;
      }
    }
  });
  return best;
}

/** Imports from a host file to a file of a higher layer, as `from (layer) -> to (layer)`. */
export function upwardImports(graph: ReadonlyMap<string, readonly string[]>, layers = HOST_LAYERS): string[] {
  const out: string[] = [];
  for (const [from, targets] of graph) {
    if (!from.startsWith('host/')) continue;
    const own = layerOf(from, layers);
    for (const to of targets) {
      if (!to.startsWith('host/')) continue;
      const theirs = layerOf(to, layers);
      if (theirs > own) out.push(`${from} (${layers[own]?.name}) -> ${to} (${layers[theirs]?.name})`);
    }
  }
  return out.sort();
}

describe('the host in layers', () => {
  it('finds an upward import and places files by folder (the check itself)', () => {
    const layers = [
      { name: 'low', members: ['host/low/', 'host/low-file.ts'] },
      { name: 'high', members: ['host/high/', 'host/low/exception.ts'] },
    ];
    expect(layerOf('host/low/a.ts', layers)).toBe(0);
    expect(layerOf('host/low/exception.ts', layers)).toBe(1);
    expect(layerOf('host/elsewhere.ts', layers)).toBe(-1);
    const graph = new Map([
      ['host/low/a.ts', ['host/low-file.ts', 'host/high/b.ts']],
      ['host/high/b.ts', ['host/low/a.ts', 'runtime/x.ts']],
    ]);
    expect(upwardImports(graph, layers)).toEqual(['host/low/a.ts (low) -> host/high/b.ts (high)']);
  });

  it('every file of host/ is in a layer', () => {
    const unplaced = [...importGraph().keys()].filter((f) => f.startsWith('host/') && layerOf(f) < 0);
    expect(unplaced, 'host files in no layer (add them to HOST_LAYERS and docs/architecture.md)').toEqual([]);
  });

  it('every import goes to the same layer or one below', () => {
    const up = upwardImports(importGraph());
    expect(up, `imports that go up a layer:\n${up.join('\n')}`).toEqual([]);
  });

  it('runtime/, capabilities/ and sandbox-images/ never import host/', () => {
    const found: string[] = [];
    for (const [from, targets] of importGraph()) {
      if (from.startsWith('host/') || !/^(runtime|capabilities|sandbox-images)\//.test(from)) continue;
      for (const to of targets) if (to.startsWith('host/')) found.push(`${from} -> ${to}`);
    }
    expect(found).toEqual([]);
  });
});
