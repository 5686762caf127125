/**
 * The guest bootstrap's top-level functions are written `const f = (function f(…) {…});` so V8
 * compiles them while a warm isolate is prepared, not on their first call inside a run (~220 µs of
 * every warm start; docs/performance.md). A plain `function f(…)` declaration at the top level
 * would silently bring the lazy compilation back into the run.
 */
import { describe, expect, it } from 'vitest';
import { BOOTSTRAP_SOURCE } from '../../runtime/guest/bootstrap.guest.js';

describe('the guest bootstrap', () => {
  it('declares its top-level functions as parenthesised expressions (compiled while preparing)', () => {
    const declarations = BOOTSTRAP_SOURCE.split('\n').filter((line) => /^(async\s+)?function\b/.test(line));
    expect(declarations).toEqual([]);
    const eager = BOOTSTRAP_SOURCE.split('\n').filter((line) => /^const (\w+) = \(function \1\(/.test(line));
    expect(eager.length).toBeGreaterThanOrEqual(20);
  });
});
