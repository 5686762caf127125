/**
 * The registry (runtime/errors.ts) and the code that throws agree: every error code named anywhere
 * in the source or the docs is registered with its metadata, and every registered code is thrown,
 * returned or checked somewhere (or says why it is `reserved`).
 *
 * The type system already holds `new ContainedError('X')` and anything typed `ErrorCode` to the
 * registry; this test reaches what it cannot: untyped `code: 'X'` objects, the console's page
 * JavaScript, CLI output written as `X: message`, comments and the Markdown docs.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERRORS, type ErrorSpec } from '../../runtime/errors.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const REGISTRY_FILE = 'runtime/errors.ts';

/** Source the project ships: TypeScript and the console's page JavaScript. Tests and benches are not. */
const SOURCE_DIRS = ['runtime', 'capabilities', 'host', 'sandbox-images', 'bin'];
const SOURCE_FILES = ['index.ts', 'host-entry.ts', 'preflight.ts'];
const DOC_FILES = ['README.md'];
const DOC_DIRS = ['docs'];

/**
 * Names that are not error codes, by shape: errno codes (`ENOENT`), environment variables, SQLite
 * result codes, open(2) flags, Node's own error codes, and our constants (limits, units).
 */
const NOT_A_CODE_SHAPE = /^E[A-Z]+$|^(?:CONTAINED|NODE|LC|SQLITE|ERR|O)_|^(?:MAX|MIN|DEFAULT)_|_(?:MS|BYTES|CHARS|RUNS|DEFAULTS|VERSION|OPERATIONS)$/;
/** ...and by name, each with where it comes from. */
const NOT_A_CODE = new Set([
  'CODE', // the placeholder in "`CODE: message` on stderr"
  'OK', // `contained audit verify`'s success line
  'SQLITE', // capabilities/sql: `data.reason` of CAPABILITY_FAILED when SQLite gave no code
  'QUERY_PROCESS', // capabilities/sql: `data.reason` of CAPABILITY_FAILED (the query process could not start)
  'NOT_UTF8', // capabilities/fs: `data.reason` of CAPABILITY_FAILED (a file read as text is not UTF-8)
  'IN_SCOPE', // capabilities/sdk: the in-scope verdict a capability's inScope returns (docs)
  'HOST_LAYERS', // docs/architecture.md: the layer table in test/architecture/layers.test.ts
  'NO_HOST_OPTIONS', // capabilities/plugin.ts: the host-options schema of a kind that takes none
  'EAI_AGAIN', // host/store/pg-store.ts: Node's DNS error for a database host that cannot be resolved now (STORE_UNAVAILABLE)
  'AUDIT_LOCK_KEY', // host/audit/pg.ts: the advisory lock key of the fleet's audit chain
]);

function walk(dir: string, ext: RegExp): string[] {
  let names: string[];
  try {
    names = readdirSync(path.join(ROOT, dir), { recursive: true }) as string[];
  } catch {
    return [];
  }
  return names.filter((n) => ext.test(n) && !n.split(path.sep).includes('node_modules')).map((n) => path.join(dir, n));
}

const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8');
const sourceFiles = [...SOURCE_DIRS.flatMap((d) => walk(d, /\.(?:ts|js|mjs)$/)), ...SOURCE_FILES].filter((f) => f !== REGISTRY_FILE);
const docFiles = [...DOC_FILES, ...DOC_DIRS.flatMap((d) => walk(d, /\.md$/))];

const SNAKE = String.raw`[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+`;
const WORD = String.raw`[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*`;
const isRegistered = (name: string): boolean => Object.prototype.hasOwnProperty.call(ERRORS, name);
const isCandidate = (name: string): boolean => !NOT_A_CODE_SHAPE.test(name) && !NOT_A_CODE.has(name);

/** Names used as error codes in source text (code, strings and comments alike). */
function namedInSource(text: string): string[] {
  const found: string[] = [];
  const add = (re: RegExp): void => {
    for (const m of text.matchAll(re)) if (m[1] !== undefined) found.push(m[1]);
  };
  add(new RegExp(String.raw`ContainedError\(\s*['"\`](${WORD})['"\`]`, 'g')); // new ContainedError('X', …)
  add(new RegExp(String.raw`\bcode\??\s*(?:[:=]|[!=]==?)\s*['"](${WORD})['"]`, 'g')); // code: 'X', code === 'X'
  add(new RegExp(String.raw`\bcode\??\s*:\s*(?:['"]${WORD}['"]\s*\|\s*)+['"](${WORD})['"]`, 'g')); // code: 'A' | 'X' (the last)
  add(new RegExp(String.raw`\b(?:deny|refuse|makeError|errorReport|errorMessage)\(\s*['"](${WORD})['"]`, 'g')); // helpers taking a code first
  add(new RegExp(String.raw`['"\`](${SNAKE})['"\`]`, 'g')); // any quoted or backticked SCREAMING_SNAKE name
  add(new RegExp(String.raw`['"\`](${WORD}): `, 'g')); // CLI output: \`X: message\`
  return found.filter(isCandidate);
}

/** Names used as error codes in Markdown: backticked SCREAMING_SNAKE names, JSON `"code"` values, `X: message` output lines. */
function namedInDoc(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(new RegExp(String.raw`\`(${SNAKE})\``, 'g'))) found.push(m[1] as string);
  for (const m of text.matchAll(new RegExp(String.raw`"code":\s*"(${WORD})"`, 'g'))) found.push(m[1] as string);
  for (const m of text.matchAll(new RegExp(String.raw`^(${SNAKE}): `, 'gm'))) found.push(m[1] as string);
  return found.filter(isCandidate);
}

/** Source without comments: what a code must appear in to count as thrown, returned or checked. */
function withoutComments(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .map((line) => line.replace(/(^|\s)\/\/.*$/, ''))
    .join('\n');
}

function usedIn(text: string, code: string): boolean {
  return new RegExp(String.raw`['"\`]${code}(?:['"\`]|: )`).test(text);
}

describe('error codes in the source and docs are the registry\'s', () => {
  it('finds the files it scans', () => {
    expect(sourceFiles.length).toBeGreaterThan(100);
    expect(sourceFiles.some((f) => f.endsWith('.js'))).toBe(true); // the console's page
    expect(docFiles).toContain(path.join('docs', 'errors.md'));
  });

  it('every code the source names is registered', () => {
    const unknown = sourceFiles.flatMap((file) => namedInSource(read(file)).filter((n) => !isRegistered(n)).map((n) => `${file}: ${n}`));
    expect([...new Set(unknown)], 'register it in runtime/errors.ts, or list it in NOT_A_CODE if it is no error code').toEqual([]);
  });

  it('every code the docs name is registered', () => {
    const unknown = docFiles.flatMap((file) => namedInDoc(read(file)).filter((n) => !isRegistered(n)).map((n) => `${file}: ${n}`));
    expect([...new Set(unknown)], 'register it in runtime/errors.ts, or list it in NOT_A_CODE if it is no error code').toEqual([]);
  });

  it('every registered code is thrown, returned or checked somewhere, or says why it is reserved', () => {
    const code = sourceFiles.map((file) => withoutComments(read(file))).join('\n');
    const entries = Object.entries(ERRORS) as Array<[string, ErrorSpec]>;
    const unused = entries.filter(([name, spec]) => spec.reserved === undefined && !usedIn(code, name)).map(([name]) => name);
    expect(unused, 'throw it, remove it, or mark it reserved with a reason').toEqual([]);
    const reservedButUsed = entries.filter(([name, spec]) => spec.reserved !== undefined && usedIn(code, name)).map(([name]) => name);
    expect(reservedButUsed, 'a reserved code is in use: drop its `reserved`').toEqual([]);
  });

  it('the scan itself: it sees codes where they hide, and only there', () => {
    expect(namedInSource("throw new ContainedError(\n  'NO_SUCH_CODE', 'x')")).toEqual(['NO_SUCH_CODE', 'NO_SUCH_CODE']);
    expect(namedInSource("if (error.code === 'DENIED') return;")).toEqual(['DENIED']);
    expect(new Set(namedInSource("type R = { ok: false; code: 'NOT_FOUND' | 'GONE' };"))).toEqual(new Set(['GONE', 'NOT_FOUND']));
    expect(namedInSource('io.stderr(`TAMPERED: first bad record`)')).toEqual(['TAMPERED']);
    expect(namedInSource("env['CONTAINED_URL']; flags('O_RDONLY'); e.code === 'SQLITE_BUSY'; const MAX_X_BYTES = 1;")).toEqual([]);
    expect(namedInDoc('refused `NO_SUCH_CODE` naming the field; see `VERIFY_CACHE_MS`')).toEqual(['NO_SUCH_CODE']);
    expect(namedInDoc('{ "type": "error", "code": "GONE" }\nSTALE_THING: request r1 moved')).toEqual(['GONE', 'STALE_THING']);
    expect(usedIn(withoutComments("// throws 'CPU_LIMIT'\nconst x = 1;"), 'CPU_LIMIT')).toBe(false);
    expect(usedIn(withoutComments("return { code: 'CPU_LIMIT' }; // why"), 'CPU_LIMIT')).toBe(true);
  });
});
