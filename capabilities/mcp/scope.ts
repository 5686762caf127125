/**
 * The scope of an `mcp` capability instance: which of its methods (tools) may be called, and per
 * method, argument constraints — a top-level field fixed to one value (`equals`) or limited to a
 * set (`oneOf`). A grant narrows `createIssue` to one repository with
 * `{ "args": { "createIssue": { "repo": { "equals": "acme/web" } } } }`.
 *
 * Constraints are checked on the validated copy of the argument (defaults filled in), and fail
 * closed: a constrained field that is absent, or an argument that is not an object, is out of
 * scope. Intersection keeps every constraint of both sides; two constraints on one field meet
 * (equal values, or the common part of two sets) or the scopes do not intersect (`INVALID_SCOPE`).
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { IN_SCOPE, outOfScope, type ScopeCheck } from '../sdk/define.js';
import { canonicalJsonText, sameJson } from './schema.js';

const FIELD = /^[^\u0000-\u001f]{1,128}$/;

export const constraintSchema = z.union([
  z.strictObject({ equals: z.json() }),
  z.strictObject({ oneOf: z.array(z.json()).min(1).max(1000) }),
]);
export type Constraint = z.output<typeof constraintSchema>;
type JsonV = z.output<ReturnType<typeof z.json>>;

export const mcpScopeSchema = z.strictObject({
  /** Methods that may be called (default: every method of the instance). */
  tools: z.array(z.string().min(1).max(64)).min(1).max(10_000).optional(),
  /** Method → top-level argument field → constraint. */
  args: z.record(z.string().min(1).max(64), z.record(z.string().regex(FIELD), constraintSchema)).optional(),
});
export type McpScope = z.output<typeof mcpScopeSchema>;

function setOf(c: Constraint): JsonV[] {
  return 'equals' in c ? [c.equals] : c.oneOf;
}

/** Two constraints on one field, met; throws INVALID_SCOPE when nothing satisfies both. */
export function intersectConstraint(where: string, a: Constraint, b: Constraint): Constraint {
  const inB = new Set(setOf(b).map(canonicalJsonText));
  const common = setOf(a).filter((v) => inB.has(canonicalJsonText(v)));
  if (common.length === 0) throw new ContainedError('INVALID_SCOPE', `mcp: the constraints on ${where} have no value in common`);
  // The narrower form wins: a fixed value stays a fixed value.
  if ('equals' in a || 'equals' in b) return { equals: common[0] as JsonV };
  const seen = new Set<string>();
  return { oneOf: common.filter((v) => !seen.has(canonicalJsonText(v)) && seen.add(canonicalJsonText(v))) };
}

export function intersectMcpScopes(parent: McpScope, narrower: McpScope): McpScope {
  const out: McpScope = {};
  if (parent.tools && narrower.tools) {
    const allowed = new Set(parent.tools);
    const tools = [...new Set(narrower.tools)].filter((t) => allowed.has(t)).sort();
    if (tools.length === 0) throw new ContainedError('INVALID_SCOPE', 'mcp: the two scopes allow no tool in common');
    out.tools = tools;
  } else if (parent.tools || narrower.tools) {
    out.tools = [...new Set(parent.tools ?? narrower.tools)].sort();
  }
  const methods = new Set([...Object.keys(parent.args ?? {}), ...Object.keys(narrower.args ?? {})]);
  const args: NonNullable<McpScope['args']> = {};
  for (const m of [...methods].sort()) {
    const a = parent.args?.[m] ?? {};
    const b = narrower.args?.[m] ?? {};
    const fields: Record<string, Constraint> = {};
    for (const f of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const ca = Object.prototype.hasOwnProperty.call(a, f) ? a[f] : undefined;
      const cb = Object.prototype.hasOwnProperty.call(b, f) ? b[f] : undefined;
      fields[f] = ca && cb ? intersectConstraint(`${m}.${f}`, ca, cb) : ((ca ?? cb) as Constraint);
    }
    if (Object.keys(fields).length > 0) args[m] = fields;
  }
  if (Object.keys(args).length > 0) out.args = args;
  return out;
}

/** Is `method` allowed at all by the scope's tool list? */
export function toolAllowed(scope: McpScope, method: string): boolean {
  return scope.tools === undefined || scope.tools.includes(method);
}

/** Pure check of a validated argument against the scope, for one method. */
export function checkMcpCall(scope: McpScope, method: string, args: unknown): ScopeCheck {
  if (!toolAllowed(scope, method)) return outOfScope(`mcp: the scope does not allow the tool ${method}`);
  const constraints = scope.args && Object.prototype.hasOwnProperty.call(scope.args, method) ? scope.args[method] : undefined;
  if (!constraints) return IN_SCOPE;
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return outOfScope(`mcp: ${method} takes an object argument`);
  const a = args as Record<string, unknown>;
  for (const [field, c] of Object.entries(constraints)) {
    if (!Object.prototype.hasOwnProperty.call(a, field)) return outOfScope(`mcp: ${method}.${field} must be given (the scope constrains it)`);
    const ok = setOf(c).some((v) => sameJson(v, a[field]));
    if (!ok) return outOfScope(`mcp: ${method}.${field} is outside the scope (${describeConstraint(c)})`);
  }
  return IN_SCOPE;
}

function short(v: unknown): string {
  const t = JSON.stringify(v) ?? 'null';
  return t.length > 80 ? `${t.slice(0, 77)}…` : t;
}

export function describeConstraint(c: Constraint): string {
  if ('equals' in c) return `fixed to ${short(c.equals)}`;
  const shown = c.oneOf.slice(0, 10).map(short).join(', ');
  return `one of ${shown}${c.oneOf.length > 10 ? `, … (${c.oneOf.length} values)` : ''}`;
}

export function describeMcpScope(scope: McpScope): string {
  const parts = [scope.tools ? `tools ${scope.tools.join(', ')}` : 'every offered tool'];
  for (const [m, fields] of Object.entries(scope.args ?? {})) {
    for (const [f, c] of Object.entries(fields)) parts.push(`${m}.${f} ${describeConstraint(c)}`);
  }
  return parts.join('; ');
}

/** The narrowest scope admitting one call ("always" grants it): this tool only, constraints kept. */
export function narrowestMcpScope(scope: McpScope, method: string): McpScope {
  return { ...scope, tools: [method] };
}
