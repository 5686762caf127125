/**
 * No import cycles in the source, type-only ones included (docs/architecture.md: every layer
 * imports downwards only). Every `.ts` file under runtime/, capabilities/, sandbox-images/ and
 * host/, and the entry files at the root, is parsed with the TypeScript parser; its edges are the
 * relative module specifiers of `import … from`, `import type … from`, `import '…'`,
 * `export … from` and `typeof import('…')` types. A lazy `await import('…')` is not an edge: it
 * loads when called, after both modules have finished loading (the CLI loads its commands so).
 *
 * A failure names each cycle as a chain of repository paths, first file repeated at the end.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve('.');
const FOLDERS = ['runtime', 'capabilities', 'sandbox-images', 'host'];
const ENTRIES = ['index.ts', 'host-entry.ts', 'preflight.ts'];

function sourceFiles(): string[] {
  const out: string[] = ENTRIES.filter((f) => existsSync(path.join(ROOT, f)));
  const walk = (dir: string): void => {
    for (const name of readdirSync(path.join(ROOT, dir))) {
      const rel = path.posix.join(dir, name);
      if (name === 'node_modules' || name === 'dist') continue;
      if (statSync(path.join(ROOT, rel)).isDirectory()) walk(rel);
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(rel);
    }
  };
  for (const folder of FOLDERS) walk(folder);
  return out.sort();
}

/** The relative module specifiers a file imports statically (values and types). */
export function staticSpecifiers(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push(node.moduleReference.expression.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found.filter((s) => s.startsWith('.'));
}

/** A relative specifier of `from` as a repository path, or undefined when it names no source file. */
function resolve(from: string, specifier: string): string | undefined {
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  const candidates = [base.replace(/\.js$/, '.ts'), base.replace(/\.mjs$/, '.mts'), `${base}.ts`, path.posix.join(base, 'index.ts'), base];
  return candidates.find((c) => c.endsWith('.ts') && existsSync(path.join(ROOT, c)) && statSync(path.join(ROOT, c)).isFile());
}

export function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const targets = staticSpecifiers(file, readFileSync(path.join(ROOT, file), 'utf8'))
      .map((s) => resolve(file, s))
      .filter((t): t is string => t !== undefined);
    graph.set(file, [...new Set(targets)].sort());
  }
  return graph;
}

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
