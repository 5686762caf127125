/**
 * Agent-facing docs, generated from the capability instances an agent holds: a TypeScript
 * declaration (`caps.d.ts`) and a compact Markdown reference. This text goes into a model's
 * prompt, so it says exactly what the agent holds — binding names, methods (only those exposed),
 * argument and result types, risk, scope, budgets and expiry in words — and nothing else: no host
 * paths, no secrets (scopes are described by each definition's `describeScope`, which is written
 * to leave them out).
 *
 * Types come from zod 4's `z.toJSONSchema()` printed by a small JSON-Schema→TypeScript printer that
 * falls back to `unknown` for anything it does not understand (never to something wider-looking).
 * A schema given as JSON Schema (an MCP tool's, capabilities/mcp/) rides along as the zod schema's
 * metadata and is printed the same way.
 */
import { z } from 'zod';
import type { CapabilityDescription, CapabilityInstance, MethodDescription } from './sdk/instance.js';
import type { RiskAnnotations } from './sdk/risk.js';
import type { Budget } from './sdk/budget.js';

type Schema = Record<string, unknown>;

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
/** Depth at which nested or recursive types print as `unknown`. */
const MAX_DEPTH = 8;

function printSchema(schema: unknown, defs: Record<string, Schema>, depth: number): string {
  if (schema === true || schema === undefined) return 'unknown';
  if (schema === false) return 'never';
  if (typeof schema !== 'object' || schema === null || depth > MAX_DEPTH) return 'unknown';
  const s = schema as Schema;
  if (typeof s.tsType === 'string') return s.tsType;
  if (typeof s.$ref === 'string') {
    // `#/$defs/` (2020-12, what zod prints) or `#/definitions/` (draft-07, what many MCP servers send).
    const prefix = ['#/$defs/', '#/definitions/'].find((p) => (s.$ref as string).startsWith(p));
    const name = prefix === undefined ? '' : s.$ref.slice(prefix.length);
    return Object.prototype.hasOwnProperty.call(defs, name) ? printSchema(defs[name], defs, depth + 1) : 'unknown';
  }
  if ('const' in s) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const union = (Array.isArray(s.anyOf) ? s.anyOf : Array.isArray(s.oneOf) ? s.oneOf : undefined) as unknown[] | undefined;
  if (union) return dedupe(union.map((u) => printSchema(u, defs, depth + 1))).join(' | ');
  if (Array.isArray(s.allOf)) return s.allOf.map((u) => wrap(printSchema(u, defs, depth + 1))).join(' & ');
  if (Array.isArray(s.type)) return dedupe(s.type.map((t) => printSchema({ ...s, type: t }, defs, depth))).join(' | ');
  switch (s.type) {
    case 'string':
      return 'string';
    case 'number':
    case 'integer':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'null':
      return 'null';
    case 'array': {
      if (Array.isArray(s.prefixItems)) return `[${s.prefixItems.map((i) => printSchema(i, defs, depth + 1)).join(', ')}]`;
      return `${wrap(printSchema(s.items, defs, depth + 1))}[]`;
    }
    case 'object':
      return printObject(s, defs, depth);
    default:
      return 'unknown';
  }
}

function printObject(s: Schema, defs: Record<string, Schema>, depth: number): string {
  const props = (s.properties ?? {}) as Record<string, unknown>;
  const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
  const keys = Object.keys(props);
  const extra = s.additionalProperties;
  if (keys.length === 0) {
    if (extra === false) return '{}';
    return `Record<string, ${typeof extra === 'object' && extra !== null ? printSchema(extra, defs, depth + 1) : 'unknown'}>`;
  }
  const fields = keys.map((k) => {
    const p = props[k] as Schema | undefined;
    const doc = typeof p?.description === 'string' ? `/** ${oneLine(p.description)} */ ` : '';
    return `${doc}${IDENT.test(k) ? k : JSON.stringify(k)}${required.has(k) ? '' : '?'}: ${printSchema(p, defs, depth + 1)}`;
  });
  return `{ ${fields.join('; ')} }`;
}

/** Parenthesise a union or intersection (at its top level only) before `[]` or `&`. */
function wrap(t: string): string {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '(' || c === '[' || c === '{' || c === '<') depth++;
    else if (c === ')' || c === ']' || c === '}' || c === '>') depth--;
    else if (depth === 0 && (c === '|' || c === '&')) return `(${t})`;
  }
  return t;
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').replace(/\*\//g, '* /').trim();
}

/** The TypeScript type of a zod schema, as the agent passes it (`input`) or receives it (`output`). */
export function schemaToTs(schema: z.ZodType, io: 'input' | 'output'): string {
  let json: Schema;
  try {
    json = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Schema;
  } catch {
    return 'unknown';
  }
  return printSchema(json, { ...((json.definitions ?? {}) as Record<string, Schema>), ...((json.$defs ?? {}) as Record<string, Schema>) }, 0);
}

function takesNoArgument(schema: z.ZodType): boolean {
  const type = (schema as unknown as { _zod?: { def?: { type?: string } } })._zod?.def?.type;
  return type === 'undefined' || type === 'void';
}

function isOptional(schema: z.ZodType): boolean {
  return schema.safeParse(undefined).success;
}

/** The risk of a method in a few words, for people and models. */
export function riskInWords(r: RiskAnnotations): string {
  if (r.readOnly && !r.openWorld && !r.financial) return 'read-only';
  const words = [r.readOnly ? 'read-only' : 'writes'];
  if (r.destructive) words.push('destructive');
  if (!r.readOnly) words.push(r.reversible ? 'reversible' : 'irreversible');
  if (r.openWorld) words.push('reaches the outside world');
  if (r.financial) words.push('moves money');
  return words.join(', ');
}

export function budgetInWords(b: Budget | undefined): string | undefined {
  if (!b) return undefined;
  const parts: string[] = [];
  if (b.maxCalls !== undefined) parts.push(`at most ${b.maxCalls} call${b.maxCalls === 1 ? '' : 's'}`);
  if (b.perSecond !== undefined) parts.push(`${b.perSecond}/s`);
  if (b.maxBytes !== undefined) parts.push(`${b.maxBytes} bytes in total`);
  return parts.length ? parts.join(', ') : undefined;
}

/** `read(path: string, options?: CallOptions): Promise<string>`; without options, the Markdown form `` `read(path: string)` → `string` ``. */
export function methodSignature(m: MethodDescription, withOptions = true): string {
  const params: string[] = [];
  if (takesNoArgument(m.args)) {
    if (withOptions) params.push('arg?: undefined');
  } else {
    params.push(`${m.argName}${isOptional(m.args) ? '?' : ''}: ${schemaToTs(m.args, 'input')}`);
  }
  if (!withOptions) return `\`${m.name}(${params.join(', ')})\` → \`${schemaToTs(m.result, 'output')}\``;
  params.push('options?: CallOptions');
  return `${m.name}(${params.join(', ')}): Promise<${schemaToTs(m.result, 'output')}>`;
}

const PREAMBLE = `/** Data that survives JSON: what every argument and result is made of. */
type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
/** Optional last argument of every method: say why you make the call (reviewers read it). */
interface CallOptions { reason?: string }
/** What every failed call rejects with; branch on \`code\` (e.g. CAPABILITY_DENIED, BUDGET_EXCEEDED). */
interface CapabilityError extends Error { name: 'CapabilityError'; code: string; data?: Record<string, unknown> }`;

const EPILOGUE = `/** Your program is an ES module: \`export default async function main(input, caps)\`. Return JSON. */
type Main = (input: JsonValue, caps: Caps) => Promise<JsonValue | undefined>;
/**
 * Ask an operator for a capability you do not hold (name, scope as for a grant, and why).
 * Resolves once granted; rejects with ESCALATION_DENIED or ESCALATION_TIMEOUT.
 */
declare function requestCapability(name: string, scope: object, reason: string): Promise<void>;`;

function capabilityHeader(d: CapabilityDescription): string[] {
  const lines = [`${d.capability}: ${d.description}`, `Scope: ${d.scope}.`];
  if (d.expiresAt !== undefined) lines.push(`Expires ${new Date(d.expiresAt).toISOString()}.`);
  return lines;
}

function methodNote(m: MethodDescription): string {
  const budget = budgetInWords(m.budget);
  return `${m.description} Risk: ${riskInWords(m.risk)}.${budget ? ` Budget: ${budget}.` : ''}`;
}

/** `caps.d.ts`: the `Caps` interface for exactly these instances. */
export function generateCapsDts(instances: readonly CapabilityInstance[]): string {
  const out = ['// Capabilities granted to this program (generated). Every method returns a Promise.', PREAMBLE, '', 'interface Caps {'];
  for (const inst of instances) {
    const d = inst.describe();
    out.push('  /**', ...capabilityHeader(d).map((l) => `   * ${oneLine(l)}`), '   */', `  ${IDENT.test(d.name) ? d.name : JSON.stringify(d.name)}: {`);
    for (const m of d.methods) out.push(`    /** ${oneLine(methodNote(m))} */`, `    ${methodSignature(m)};`);
    out.push('  };');
  }
  out.push('}', '', EPILOGUE, '');
  return out.join('\n');
}

/** A compact Markdown reference for exactly these instances. */
export function generateCapsMarkdown(instances: readonly CapabilityInstance[]): string {
  const out = [
    '# Capabilities',
    '',
    'Your program: `export default async function main(input, caps)`, returning JSON. Call `await caps.<name>.<method>(arg, { reason })`; ' +
      'a failed call rejects with an error whose `code` says why (e.g. `CAPABILITY_DENIED`, `BUDGET_EXCEEDED`, `CAPABILITY_REVOKED`).',
    'To ask for a capability you do not hold: `await requestCapability(name, scope, reason)`. `JsonValue` is any JSON value.',
  ];
  for (const inst of instances) {
    const d = inst.describe();
    out.push('', `## caps.${d.name} (${d.capability})`, '', d.description, `Scope: ${d.scope}.`);
    if (d.expiresAt !== undefined) out.push(`Expires ${new Date(d.expiresAt).toISOString()}.`);
    out.push('');
    for (const m of d.methods) out.push(`- ${methodSignature(m, false)} — ${methodNote(m)}`);
  }
  out.push('');
  return out.join('\n');
}
