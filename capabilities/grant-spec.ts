/**
 * Grant specs: one command-line string that names a capability instance.
 *
 *   <name>=<kind>[:<scope>][;<option>]...
 *
 *   name     the binding the agent sees (`caps.<name>`), lower camel case
 *   kind     a registry kind: fs, kv, sql, clock, random, log, …
 *   scope    a JSON object, or `@<file>` to read the JSON from a file (path relative to `cwd`;
 *            it cannot contain `;`). Omitted: `{}`.
 *   option   methods=<m>[,<m>...]                  expose only these methods
 *            expires=<ISO-8601 date | +<n>s|m|h|d>  absolute, or relative to now
 *            budget.<method>=<field>:<n>[,...]     fields maxCalls, perSecond, maxBytes
 *
 *   reports=fs:{"root":"/srv/reports","readOnly":true};methods=read,list;expires=+1h
 *   db=sql:@grants/db.json;budget.execute=maxCalls:5
 *
 * A spec carries no host options: `GrantSpecOptions.hostOptions` gives them per kind (`contained run
 * --smtp` → every outbox grant's). A kind with a start-up step (`prepare`, e.g. mcp) is the host's
 * to start and cannot be granted by a spec.
 *
 * Fails with `INVALID_ARGUMENT` (syntax, unknown kind, option or method, bad host options; `data.spec`
 * names the spec) or `INVALID_SCOPE` (the scope does not validate for the kind).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ContainedError } from '../runtime/errors.js';
import { type Budget, budgetSchema } from './sdk/budget.js';
import type { CapabilityInstance, InstanceOptions } from './sdk/instance.js';
import type { CapabilityHost } from './plugin.js';
import { builtinCapabilities, type CapabilityRegistry, lookupKind, openKind } from './registry.js';

/** A parsed, not yet instantiated, grant spec. */
export interface GrantSpec {
  name: string;
  kind: string;
  /** Inline scope, or the file to read it from. */
  scope: { inline: unknown } | { file: string };
  methods?: string[];
  /** Absolute epoch ms, or `{ inMs }` relative to the time of instantiation. */
  expires?: { at: number } | { inMs: number };
  budgets?: Record<string, Budget>;
}

export interface GrantSpecOptions {
  registry?: CapabilityRegistry;
  /** What the host offers every kind (data folder, logger, clock, secrets). */
  host?: CapabilityHost;
  /** Host options per kind (`{ outbox: { folder: "./mail" } }`), parsed by the kind's schema. */
  hostOptions?: Readonly<Record<string, unknown>>;
  /** Base of `@file` scopes; default `process.cwd()`. */
  cwd?: string;
  /** Reads `@file` scopes; default `fs.promises.readFile` (utf8). */
  readScopeFile?: (file: string) => Promise<string>;
  /** Epoch ms for relative expiry; default `host.now` or `Date.now`. */
  now?: () => number;
}

const NAME = /^[a-z][a-zA-Z0-9]{0,63}$/;
const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Largest scope file read, in bytes. */
export const MAX_SCOPE_FILE_BYTES = 1024 * 1024;

function bad(spec: string, message: string): ContainedError {
  return new ContainedError('INVALID_ARGUMENT', `grant "${spec.length > 200 ? `${spec.slice(0, 197)}...` : spec}": ${message}`, {
    data: { spec },
  });
}

/** Index just past the JSON value starting at `start` (an object or array), or -1. */
function jsonEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{' || c === '[') {
      depth++;
    } else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** Parse the text of a grant spec (no I/O, no registry). */
export function parseGrantSpecText(spec: string): GrantSpec {
  const eq = spec.indexOf('=');
  const name = eq < 0 ? '' : spec.slice(0, eq);
  if (!NAME.test(name)) throw bad(spec, 'expected <name>=<kind>[:<scope>][;option...], name in lower camel case');
  let i = eq + 1;
  const kindMatch = /^[a-z][a-zA-Z0-9]*/.exec(spec.slice(i));
  if (!kindMatch) throw bad(spec, 'missing capability kind after "="');
  const kind = kindMatch[0];
  i += kind.length;
  let scope: GrantSpec['scope'] = { inline: {} };
  if (spec[i] === ':') {
    i++;
    if (spec[i] === '@') {
      const end = spec.indexOf(';', i);
      const file = spec.slice(i + 1, end < 0 ? spec.length : end);
      if (file === '') throw bad(spec, 'missing file name after "@"');
      scope = { file };
      i = end < 0 ? spec.length : end;
    } else if (spec[i] === '{') {
      const end = jsonEnd(spec, i);
      if (end < 0) throw bad(spec, 'the scope JSON is not closed');
      try {
        scope = { inline: JSON.parse(spec.slice(i, end)) as unknown };
      } catch {
        throw bad(spec, 'the scope is not valid JSON');
      }
      i = end;
    } else {
      throw bad(spec, 'the scope must be a JSON object or @file');
    }
  }
  const out: GrantSpec = { name, kind, scope };
  if (i === spec.length) return out;
  if (spec[i] !== ';') throw bad(spec, `unexpected text after the scope: "${spec.slice(i, i + 20)}"`);
  const seen = new Set<string>();
  for (const option of spec.slice(i + 1).split(';')) {
    const oeq = option.indexOf('=');
    const key = oeq < 0 ? option : option.slice(0, oeq);
    const value = oeq < 0 ? '' : option.slice(oeq + 1);
    if (seen.has(key)) throw bad(spec, `option "${key}" given twice`);
    seen.add(key);
    if (value === '') throw bad(spec, `option "${key}" needs a value`);
    if (key === 'methods') {
      const methods = value.split(',');
      if (methods.some((m) => !NAME.test(m))) throw bad(spec, 'methods=<m>[,<m>...] with method names in lower camel case');
      out.methods = methods;
    } else if (key === 'expires') {
      out.expires = parseExpiry(spec, value);
    } else if (key.startsWith('budget.')) {
      const m = key.slice('budget.'.length);
      if (!NAME.test(m)) throw bad(spec, `budget.<method>: "${m}" is not a method name`);
      out.budgets = { ...out.budgets, [m]: parseBudget(spec, value) };
    } else {
      throw bad(spec, `unknown option "${key}" (methods, expires, budget.<method>)`);
    }
  }
  return out;
}

function parseExpiry(spec: string, value: string): NonNullable<GrantSpec['expires']> {
  const rel = /^\+(\d{1,9})([smhd])$/.exec(value);
  if (rel?.[1] !== undefined && rel[2] !== undefined) return { inMs: Number(rel[1]) * (UNITS[rel[2]] ?? 0) };
  // Only full ISO dates with a time zone: a bare date or local time would depend on the host.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value) || Number.isNaN(Date.parse(value))) {
    throw bad(spec, 'expires=<ISO-8601 date-time with zone> or +<n>s|m|h|d');
  }
  return { at: Date.parse(value) };
}

function parseBudget(spec: string, value: string): Budget {
  const budget: Record<string, number> = {};
  for (const part of value.split(',')) {
    const [field, n, ...rest] = part.split(':');
    if (field === undefined || n === undefined || rest.length > 0 || !/^\d+(\.\d+)?$/.test(n)) {
      throw bad(spec, 'budget.<method>=<field>:<n>[,<field>:<n>] with fields maxCalls, perSecond, maxBytes');
    }
    budget[field] = Number(n);
  }
  const parsed = budgetSchema.safeParse(budget);
  if (!parsed.success) throw bad(spec, `invalid budget: ${parsed.error.issues[0]?.message ?? ''} (fields maxCalls, perSecond, maxBytes)`);
  return parsed.data;
}

/** Parse a grant spec and create its instance through the registry. */
export async function parseGrantSpec(spec: string, options: GrantSpecOptions = {}): Promise<CapabilityInstance> {
  const grant = parseGrantSpecText(spec);
  const registry = options.registry ?? builtinCapabilities;
  const entry = lookupKind(registry, grant.kind);
  if (!entry) throw bad(spec, `unknown capability kind "${grant.kind}" (known: ${Object.keys(registry).join(', ')})`);
  let scope: unknown;
  if ('file' in grant.scope) {
    const file = path.resolve(options.cwd ?? process.cwd(), grant.scope.file);
    let text: string;
    try {
      text = await (options.readScopeFile ?? ((f: string) => readFile(f, 'utf8')))(file);
    } catch (e) {
      throw new ContainedError('INVALID_ARGUMENT', `grant "${grant.name}": cannot read scope file ${grant.scope.file}`, { cause: e, data: { spec } });
    }
    if (Buffer.byteLength(text, 'utf8') > MAX_SCOPE_FILE_BYTES) throw bad(spec, 'the scope file is too large');
    try {
      scope = JSON.parse(text) as unknown;
    } catch {
      throw bad(spec, `scope file ${grant.scope.file} is not valid JSON`);
    }
  } else {
    scope = grant.scope.inline;
  }
  if (entry.prepare !== undefined) throw bad(spec, `"${grant.kind}" is started by the host: offer it in the host config's capabilities`);
  const host = options.host ?? {};
  const now = options.now ?? host.now ?? Date.now;
  const instanceOptions: InstanceOptions = { name: grant.name };
  if (grant.methods) instanceOptions.methods = grant.methods;
  if (grant.budgets) instanceOptions.budgets = grant.budgets;
  if (grant.expires) instanceOptions.expiresAt = 'at' in grant.expires ? grant.expires.at : now() + grant.expires.inMs;
  const kindHostOptions = options.hostOptions !== undefined && Object.prototype.hasOwnProperty.call(options.hostOptions, grant.kind) ? options.hostOptions[grant.kind] : undefined;
  try {
    const kind = await openKind(grant.kind, entry, { name: grant.name, hostOptions: kindHostOptions, host });
    return kind.create(scope, instanceOptions);
  } catch (e) {
    if (e instanceof ContainedError && (e.code === 'INVALID_ARGUMENT' || e.code === 'INVALID_SCOPE')) {
      throw new ContainedError(e.code, `grant "${grant.name}": ${e.message}`, { cause: e, data: { spec } });
    }
    throw e;
  }
}
