/**
 * The source's import graph for the architecture tests: every `.ts` file under runtime/,
 * capabilities/, sandbox-images/ and host/, and the entry files at the root, parsed with the
 * TypeScript parser. An edge is a relative module specifier of `import … from`, `import type … from`,
 * `import '…'`, `export … from` or a `typeof import('…')` type. A lazy `await import('…')` is not
 * an edge: it loads when called, after both modules have finished loading.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export const ROOT = path.resolve('.');
const FOLDERS = ['runtime', 'capabilities', 'sandbox-images', 'host'];
const ENTRIES = ['index.ts', 'host-entry.ts', 'preflight.ts'];

export function sourceFiles(): string[] {
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
export function resolveSpecifier(from: string, specifier: string): string | undefined {
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  const candidates = [base.replace(/\.js$/, '.ts'), base.replace(/\.mjs$/, '.mts'), `${base}.ts`, path.posix.join(base, 'index.ts'), base];
  return candidates.find((c) => c.endsWith('.ts') && existsSync(path.join(ROOT, c)) && statSync(path.join(ROOT, c)).isFile());
}

/** File → the source files it imports (repository paths, sorted). */
export function importGraph(files: readonly string[] = sourceFiles()): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const targets = staticSpecifiers(file, readFileSync(path.join(ROOT, file), 'utf8'))
      .map((s) => resolveSpecifier(file, s))
      .filter((t): t is string => t !== undefined);
    graph.set(file, [...new Set(targets)].sort());
  }
  return graph;
}
