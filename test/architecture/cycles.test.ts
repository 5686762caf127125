/**
 * No import cycles in the source, type-only ones included (docs/architecture.md: every layer
 * imports downwards only). The graph is imports.ts's: static imports and re-exports of every
 * source file, `import type` included; a lazy `await import('…')` is not an edge.
 *
 * A failure names each cycle as a chain of repository paths, first file repeated at the end.
 */
import { describe, expect, it } from 'vitest';
import { importGraph, sourceFiles, staticSpecifiers } from './imports.js';

/** Strongly connected components of more than one file (or a file importing itself), by Tarjan. */
export function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const connect = (v: string): void => {
    indices.set(v, index);
    low.set(v, index);
    index += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indices.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) ?? 0, indices.get(w) ?? 0));
      }
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop();
        if (w === undefined) break;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!indices.has(v)) connect(v);
  return out;
}

/** One shortest cycle through the component's first file, as a path that ends where it starts. */
export function exampleCycle(graph: ReadonlyMap<string, readonly string[]>, component: readonly string[]): string[] {
  const members = new Set(component);
  const start = component[0] ?? '';
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift() ?? '';
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const chain = [v];
        while (chain[0] !== start) chain.unshift(previous.get(chain[0] ?? '') ?? start);
        return [...chain, start];
      }
      if (!previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

describe('the import graph of the source', () => {
  it('finds cycles when there are some (the check itself)', () => {
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
      ['e.ts', ['e.ts']],
    ]);
    expect(cycles(graph).map((c) => exampleCycle(graph, c).join(' -> ')).sort()).toEqual(['a.ts -> b.ts -> c.ts -> a.ts', 'e.ts -> e.ts']);
    const specifiers = staticSpecifiers(
      'x.ts',
      `import type { A } from './a.js';\nimport { type B } from "./b.js";\nexport { C } from './c.js';\nexport type * as D from './d.js';\nimport './e.js';\ntype F = typeof import('./f.js');\nconst g = await import('./g.js');\nimport h from 'node:fs';`,
    );
    expect(specifiers).toEqual(['./a.js', './b.js', './c.js', './d.js', './e.js', './f.js']);
  });

  it('has no cycle, type-only imports included', () => {
    const files = sourceFiles();
    expect(files.length).toBeGreaterThan(100);
    const graph = importGraph(files);
    const found = cycles(graph).map((component) => `${exampleCycle(graph, component).join(' -> ')}${component.length > 2 ? `  (${component.length} files in this knot: ${component.join(', ')})` : ''}`);
    expect(found, `import cycles:\n${found.join('\n')}`).toEqual([]);
  });
});
