/**
 * A changeset in words, for operators: one block per effect — a file's diff, a kv value before and
 * after, an SQL statement with its parameters and the rows it changed, an e-mail as it will be
 * sent, an HTTP request — in the order they are committed (local first, open-world last). The
 * terminal client and `contained pending` print it; the console renders the same data as HTML.
 * Values are printed with JSON.stringify, so no agent-written text can move the terminal's cursor.
 */
import type { StagedEffect } from '../../capabilities/sdk/index.js';

/** Lines shown per value before it is cut. */
const MAX_LINES = 40;

const show = (v: unknown): string => JSON.stringify(v) ?? 'undefined';

/** A line diff: the common head and tail kept as context (at most 2 lines each), the middle as - and +. */
export function lineDiff(before: string | null, after: string | null): string[] {
  const a = before === null ? [] : before.split('\n');
  const b = after === null ? [] : after.split('\n');
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const out = [
    ...a.slice(Math.max(0, head - 2), head).map((l) => `  ${show(l)}`),
    ...a.slice(head, a.length - tail).map((l) => `- ${show(l)}`),
    ...b.slice(head, b.length - tail).map((l) => `+ ${show(l)}`),
    ...a.slice(a.length - tail, Math.min(a.length, a.length - tail + 2)).map((l) => `  ${show(l)}`),
  ];
  return out.length > MAX_LINES ? [...out.slice(0, MAX_LINES), `… ${out.length - MAX_LINES} more lines`] : out;
}

function riskWords(e: StagedEffect): string {
  const words = (['destructive', 'financial', 'openWorld'] as const).filter((k) => e.risk[k]);
  return words.length ? `  [${words.join(', ')}]` : '';
}

/** The lines describing one effect's detail (capability-specific shapes, anything else as JSON). */
export function effectLines(e: StagedEffect): string[] {
  const d = (e.detail ?? {}) as Record<string, unknown>;
  if (e.definition === 'fs' && ('before' in d || 'after' in d)) {
    return [`--- ${show(d.path)}${d.before === null ? ' (new file)' : ''}${d.after === null ? ' (removed)' : ''}`, ...lineDiff((d.before as string | null) ?? null, (d.after as string | null) ?? null)];
  }
  if (e.definition === 'fs' && 'from' in d) return [`${show(d.from)} → ${show(d.to)}`];
  if (e.definition === 'fs' && 'created' in d) return [`folders: ${show(d.created)}`];
  if (e.definition === 'kv') return [`key ${show(d.key)}`, `- ${show(d.before)}`, `+ ${show(d.after)}`];
  if (e.definition === 'sql') {
    const rows = (d.rows ?? []) as Array<{ table: string; rowid: number; before: unknown; after: unknown }>;
    const lines = [`sql: ${show(d.sql)}`, `params: ${show(d.params)}`];
    for (const r of rows.slice(0, MAX_LINES)) {
      if (r.before !== null) lines.push(`- ${r.table}#${r.rowid} ${show(r.before)}`);
      if (r.after !== null) lines.push(`+ ${r.table}#${r.rowid} ${show(r.after)}`);
    }
    if (rows.length > MAX_LINES) lines.push(`… ${rows.length - MAX_LINES} more rows`);
    return lines;
  }
  if (e.definition === 'outbox') {
    const text = typeof d.text === 'string' ? d.text.split('\n') : [];
    return [`From: ${show(d.from)}  To: ${show(d.to)}${Array.isArray(d.cc) && d.cc.length ? `  Cc: ${show(d.cc)}` : ''}`, `Subject: ${show(d.subject)}`, ...text.slice(0, MAX_LINES).map((l) => `| ${show(l)}`)];
  }
  if (e.definition === 'http') return [`${String(d.method)} ${show(d.url)}`, `headers: ${show(d.headers)}`, `body: ${show(d.body)}`];
  return [`args: ${show(e.args)}`];
}

/** Every effect, local ones first, as the commit applies them. */
export function formatChangeset(effects: readonly StagedEffect[]): string[] {
  const ordered = [...effects.filter((e) => !e.risk.openWorld), ...effects.filter((e) => e.risk.openWorld)];
  const out: string[] = [];
  for (const e of ordered) {
    out.push(`[${e.seq}] ${e.capability}.${e.method}: ${show(e.summary)}${riskWords(e)}`);
    out.push(...effectLines(e).map((l) => `    ${l}`));
  }
  return out;
}
