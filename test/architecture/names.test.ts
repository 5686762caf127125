/**
 * Each exported name is declared in one module only (runtime/, capabilities/, sandbox-images/,
 * host/ and the entry files), so a name in an import, a stack trace or a review means one thing:
 * two `RequestView`s or two `CapabilityRequest`s that differ in one field are how a check ends up
 * reading the wrong one. Re-exports (`export { x } from`) are the same declaration and do not
 * count; overloads of one function in one file count once.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT, sourceFiles } from './imports.js';

/** Names declared twice in files other engineers are changing now; to be renamed there. This list may only shrink. */
const PENDING = new Set<string>([]);

/** Names a file declares with `export` (not re-exports). */
export function exportedDeclarations(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const names = new Set<string>();
  for (const statement of source.statements) {
    const modifiers = ts.canHaveModifiers(statement) ? ts.getModifiers(statement) : undefined;
    if (!modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) continue;
    if (ts.isVariableStatement(statement)) {
      for (const d of statement.declarationList.declarations) if (ts.isIdentifier(d.name)) names.add(d.name.text);
    } else if (
      (ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement) || ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement) || ts.isEnumDeclaration(statement)) &&
      statement.name
    ) {
      names.add(statement.name.text);
    }
  }
  return [...names];
}

describe('exported names', () => {
  it('reads declarations, not re-exports (the check itself)', () => {
    const text = `export interface A {}\nexport type B = 1;\nexport const c = 1, d = 2;\nexport function e(): void;\nexport function e(x?: 1): void {}\nexport class F {}\nexport { G } from './g.js';\nexport type { H } from './h.js';\nconst i = 1;\nexport { i };`;
    expect(exportedDeclarations('x.ts', text).sort()).toEqual(['A', 'B', 'F', 'c', 'd', 'e']);
  });

  it('each is declared in one module only', () => {
    const where = new Map<string, string[]>();
    for (const file of sourceFiles()) {
      for (const name of exportedDeclarations(file, readFileSync(path.join(ROOT, file), 'utf8'))) where.set(name, [...(where.get(name) ?? []), file]);
    }
    const twice = [...where].filter(([name, files]) => files.length > 1 && !PENDING.has(name)).map(([name, files]) => `${name}: ${files.join(', ')}`);
    expect(twice, `exported names declared in more than one module:\n${twice.join('\n')}`).toEqual([]);
    for (const name of PENDING) expect(where.get(name)?.length ?? 0, `${name} is unique now: take it off PENDING`).toBeGreaterThan(1);
  });
});
