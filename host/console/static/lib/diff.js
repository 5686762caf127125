// Line diff for the edit-then-approve view: what the agent asked for (−) against what the operator
// will approve (+). LCS over lines, bounded so a huge argument cannot freeze the page.
import { h, visible } from './dom.js';

const MAX_CELLS = 250_000;

/** [{ op: ' ' | '-' | '+', line }] */
export function diffLines(before, after) {
  const a = before.split('\n');
  const b = after.split('\n');
  if (a.length * b.length > MAX_CELLS) {
    return [...a.map((line) => ({ op: '-', line })), ...b.map((line) => ({ op: '+', line }))];
  }
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: ' ', line: a[i] });
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push({ op: '-', line: a[i++] });
    else out.push({ op: '+', line: b[j++] });
  }
  while (i < n) out.push({ op: '-', line: a[i++] });
  while (j < m) out.push({ op: '+', line: b[j++] });
  return out;
}

/** Long runs of unchanged lines shrink to `CONTEXT` lines around each change and a "⋯ n unchanged" mark. */
const CONTEXT = 2;
export function collapse(lines) {
  const keep = lines.map((l) => l.op !== ' ');
  const near = lines.map((_, i) => keep.slice(Math.max(0, i - CONTEXT), i + CONTEXT + 1).some(Boolean));
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    if (near[i]) out.push(lines[i]);
    else if (out.length > 0 && out[out.length - 1].skipped) out[out.length - 1].skipped++;
    else out.push({ skipped: 1 });
  }
  return out;
}

/** A text form of a value for diffing: strings as they are, anything else as pretty JSON. */
export function asText(value) {
  return typeof value === 'string' ? value : (JSON.stringify(value, null, 2) ?? 'undefined');
}

/** Per top-level field of two argument objects: the fields that changed, as rendered diffs. */
export function renderArgsDiff(before, after) {
  const box = h('div.diffs');
  const plain = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const pairs = plain(before) && plain(after) ? [...new Set([...Object.keys(before), ...Object.keys(after)])].map((k) => [k, before[k], after[k]]) : [['(arguments)', before, after]];
  let changed = 0;
  for (const [key, was, now] of pairs) {
    const a = was === undefined ? '' : asText(was);
    const b = now === undefined ? '' : asText(now);
    if (a === b && (was === undefined) === (now === undefined)) continue;
    changed++;
    const lines = collapse(diffLines(a, b));
    box.append(
      h(
        'div.diff',
        h('div.diff-field', was === undefined ? `${key} (added)` : now === undefined ? `${key} (removed)` : key),
        h(
          'pre.diff-body',
          lines.map(({ op, line, skipped }) => (skipped ? h('span.gap', `⋯ ${skipped} unchanged line${skipped > 1 ? 's' : ''}\n`) : h(`span.${op === '-' ? 'del' : op === '+' ? 'ins' : 'ctx'}`, `${op} `, visible(line), '\n'))),
        ),
      ),
    );
  }
  if (changed === 0) box.append(h('p.muted', 'No changes yet: edit a field above.'));
  return { element: box, changed };
}
