// A staged run's changeset as a diff view (docs/changesets.md): one block per effect, in the order
// the host commits them (local first, open-world last) — a file's line diff, a kv value before and
// after, an SQL statement with each row it removes (−) or adds (+), an e-mail as it will be sent,
// an HTTP request. Everything in it was written by the agent: shown with `visible`, never as HTML.
import { collapse, diffLines } from './diff.js';
import { badge, h, json, visible } from './dom.js';

const MAX_ROWS = 200;

function diffBody(lines) {
  return h(
    'pre.diff-body',
    lines.map(({ op, line, skipped }) => (skipped ? h('span.gap', `⋯ ${skipped} unchanged line${skipped > 1 ? 's' : ''}\n`) : h(`span.${op === '-' ? 'del' : op === '+' ? 'ins' : 'ctx'}`, `${op} `, visible(line), '\n'))),
  );
}

function textDiff(before, after) {
  const lines = collapse(diffLines(before ?? '', after ?? '')).filter((l) => l.skipped || !(l.line === '' && l.op !== ' ' && (before === null || after === null)));
  return diffBody(lines);
}

function detailOf(e) {
  const d = e.detail ?? {};
  if (e.definition === 'fs' && ('before' in d || 'after' in d)) {
    const what = d.before === null ? ' (new file)' : d.after === null ? ' (removed)' : '';
    return [h('div.diff-field', visible(String(d.path)), what), textDiff(d.before, d.after)];
  }
  if (e.definition === 'fs' && 'from' in d) return [h('div.diff-field', visible(`${d.from} → ${d.to}`))];
  if (e.definition === 'fs' && 'created' in d) return [h('div.diff-field', 'folders ', visible(d.created.join(', ')))];
  if (e.definition === 'kv') return [h('div.diff-field', 'key ', visible(String(d.key))), diffBody([{ op: '-', line: json(d.before) }, { op: '+', line: json(d.after) }])];
  if (e.definition === 'sql') {
    const rows = Array.isArray(d.rows) ? d.rows : [];
    const lines = [];
    for (const r of rows.slice(0, MAX_ROWS)) {
      if (r.before !== null) lines.push({ op: '-', line: `${r.table}#${r.rowid} ${json(r.before)}` });
      if (r.after !== null) lines.push({ op: '+', line: `${r.table}#${r.rowid} ${json(r.after)}` });
    }
    if (rows.length > MAX_ROWS) lines.push({ skipped: rows.length - MAX_ROWS });
    return [h('pre.value.sql', visible(String(d.sql))), h('p.muted', 'params ', h('code', visible(json(d.params)))), diffBody(lines)];
  }
  if (e.definition === 'outbox') {
    return [
      h('p.mail-head', 'To ', visible((d.to ?? []).join(', ')), d.cc && d.cc.length ? [' · Cc ', visible(d.cc.join(', '))] : null, ' · Subject ', h('strong', visible(String(d.subject)))),
      h('pre.value.mail-body', visible(String(d.text ?? ''))),
    ];
  }
  if (e.definition === 'http') return [h('p', h('code', visible(`${d.method} ${d.url}`))), d.body !== null ? h('pre.value', visible(String(d.body))) : h('p.muted', 'no body')];
  return [h('pre.value', visible(json(e.args)))];
}

/** The changeset of a request's proposal: every effect, local first. */
export function renderChangeset(changeset) {
  const effects = Array.isArray(changeset?.effects) ? changeset.effects : [];
  const ordered = [...effects.filter((e) => !e.risk?.openWorld), ...effects.filter((e) => e.risk?.openWorld)];
  return h(
    'ol.changeset',
    ordered.map((e) =>
      h(
        'li.effect',
        { dataset: { seq: String(e.seq) } },
        h(
          'div.effect-head',
          h('code', visible(`${e.capability}.${e.method}`)),
          ' ',
          visible(e.summary ?? ''),
          e.risk?.destructive ? badge('destructive', 'warn') : null,
          e.risk?.financial ? badge('financial', 'warn') : null,
          e.risk?.openWorld ? badge('sent last, never undone', '') : null,
        ),
        h('div.diff', detailOf(e)),
      ),
    ),
  );
}
