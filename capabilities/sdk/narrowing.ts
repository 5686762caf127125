/**
 * Narrowing checks, pure. A capability's own `intersect` is trusted to compute the intersection,
 * not to be right about it: `attenuate` checks that its answer allows no more than the parent and
 * than the fields the child named, and `restrict` (grants, capability requests) checks that the
 * scope asked for is *exactly* what the instance ends up with — anything wider is refused
 * `INVALID_SCOPE` with `data.fields` naming the top-level fields that ask for more, instead of
 * being intersected away (a grant that shows 90000 while 50000 applies misleads its reader).
 *
 * "No wider" is decided by the definition's own `intersect`: `x` lies within `p` when
 * `intersect(p, x)` gives `x` back. Scopes are compared as JSON: key order does not matter,
 * `undefined` members are absent, arrays compare as sets (scopes list allowlists — extensions,
 * tables, origins, recipients). Fails closed: an intersect that throws, or a value that is not
 * JSON, counts as wider.
 */
import { ContainedError } from '../../runtime/errors.js';
import type { CapabilityDefinition } from './define.js';

/** Canonical JSON text of a scope value (`undefined` as absent), or `undefined` when it is not plain JSON. */
function canonical(value: unknown, depth = 0): string | undefined {
  if (depth > 32) return undefined;
  if (value === undefined) return '(absent)';
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : undefined;
  if (Array.isArray(value)) {
    const items: string[] = [];
    for (const item of value) {
      const text = canonical(item, depth + 1);
      if (text === undefined) return undefined;
      items.push(text);
    }
    return `[${[...new Set(items)].sort().join(',')}]`;
  }
  if (isPlainObject(value)) {
    const parts: string[] = [];
    for (const key of Object.keys(value).sort()) {
      if (value[key] === undefined) continue;
      const text = canonical(value[key], depth + 1);
      if (text === undefined) return undefined;
      parts.push(`${JSON.stringify(key)}:${text}`);
    }
    return `{${parts.join(',')}}`;
  }
  return undefined;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The same scope, compared as JSON (arrays as sets). Anything not comparable is not the same. */
export function sameScope(a: unknown, b: unknown): boolean {
  const ca = canonical(a);
  return ca !== undefined && ca === canonical(b);
}

/** Top-level fields where two object scopes differ (`['(scope)']` for scopes that are not objects). */
export function differingFields(a: unknown, b: unknown): string[] {
  if (!isPlainObject(a) || !isPlainObject(b)) return sameScope(a, b) ? [] : ['(scope)'];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.filter((k) => {
    const ca = canonical(a[k]);
    return ca === undefined || ca !== canonical(b[k]);
  });
}

/**
 * A narrower scope written as the fields it changes: `fields` over `base` when both are objects
 * (`{ "readOnly": true }` keeps the parent's root); otherwise `fields` as given.
 */
export function mergeScopeFields(base: unknown, fields: unknown): unknown {
  return isPlainObject(base) && isPlainObject(fields) ? { ...base, ...fields } : fields;
}

/**
 * The fields of `scope` that differ from `base`, for storing a narrowing as what it changes.
 * Scopes that are not objects are returned whole.
 */
export function changedFields(base: unknown, scope: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(scope)) return scope;
  return Object.fromEntries(Object.entries(scope).filter(([k, v]) => v !== undefined && !sameScope(v, base[k])));
}

/**
 * The smaller of two optional limits, where an unset parent limit means its default (not
 * "unlimited"): a child cannot raise a limit past the default its parent runs with. Unset when
 * neither sets one.
 */
export function narrowerLimit(parent: number | undefined, narrower: number | undefined, fallback: number): number | undefined {
  if (parent === undefined && narrower === undefined) return undefined;
  return Math.min(parent ?? fallback, narrower ?? Infinity);
}

function intersectOrRefuse<S>(definition: CapabilityDefinition<S>, parent: S, narrower: S): S {
  try {
    return definition.intersect(parent, narrower);
  } catch (error) {
    if (error instanceof ContainedError && error.code === 'INVALID_SCOPE') throw error;
    throw new ContainedError('INVALID_SCOPE', `${definition.name}: the scopes do not intersect`, { cause: error });
  }
}

function tryIntersect<S>(definition: CapabilityDefinition<S>, parent: S, narrower: S): { ok: true; scope: S } | { ok: false } {
  try {
    return { ok: true, scope: definition.intersect(parent, narrower) };
  } catch {
    return { ok: false };
  }
}

/**
 * `intersect(parent, narrower)`, checked: the answer must lie within the parent
 * (`intersect(parent, answer)` gives it back) and within every field the narrower scope names
 * (`intersect(narrower, answer)` agrees on those fields — unnamed fields inherit, so they are not
 * compared). A definition that answers the parent for a child outside it, or anything wider than
 * the parent, is refused `INVALID_SCOPE`.
 */
export function checkedIntersect<S>(definition: CapabilityDefinition<S>, parent: S, narrower: S): S {
  const answer = intersectOrRefuse(definition, parent, narrower);
  const inParent = tryIntersect(definition, parent, answer);
  const inChild = tryIntersect(definition, narrower, answer);
  let named = inChild.ok;
  if (inChild.ok) {
    if (isPlainObject(narrower) && isPlainObject(answer) && isPlainObject(inChild.scope)) {
      const again = inChild.scope;
      named = Object.keys(narrower).every((k) => narrower[k] === undefined || sameScope(again[k], answer[k]));
    } else {
      named = sameScope(inChild.scope, answer);
    }
  }
  if (!inParent.ok || !sameScope(inParent.scope, answer) || !named) {
    throw new ContainedError('INVALID_SCOPE', `${definition.name}: the intersection of the two scopes allows more than one of them (a fault in the capability's intersect)`);
  }
  return answer;
}

export type WithinCheck<S> = { ok: true; scope: S } | { ok: false; code: 'INVALID_SCOPE'; message: string; fields: string[] };

/**
 * Is `narrower` (a parsed full scope, in the parent's frame) within `parent`, exactly? Yes when the
 * checked intersection is `narrower` itself (as the definition normalises it:
 * `intersect(narrower, narrower)`); otherwise the fields where they differ.
 */
export function checkWithin<S>(definition: CapabilityDefinition<S>, parent: S, narrower: S): WithinCheck<S> {
  let answer: S;
  try {
    answer = checkedIntersect(definition, parent, narrower);
  } catch (error) {
    const message = error instanceof ContainedError ? error.message : `${definition.name}: the scopes do not intersect`;
    return { ok: false, code: 'INVALID_SCOPE', message, fields: [] };
  }
  const normal = tryIntersect(definition, narrower, narrower);
  const asked = normal.ok ? normal.scope : narrower;
  if (sameScope(answer, asked)) return { ok: true, scope: answer };
  const fields = differingFields(asked, answer);
  return {
    ok: false,
    code: 'INVALID_SCOPE',
    message: `${definition.name}: the scope asks for more than this instance allows (${fields.join(', ')}); a narrower scope can only keep or lower what its parent allows`,
    fields,
  };
}
