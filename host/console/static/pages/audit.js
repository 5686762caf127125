// Audit: the hash chain's verification status (GET /console/api/audit/verify) and a search over the
// audit log (GET /console/api/audit: run, agent, capability[.method], type, time range), newest
// first. Read-only: nothing here can change the log.
import { api } from '../lib/api.js';
import { badge, clear, h, section, shortDigest, time, visible } from '../lib/dom.js';
import { notAvailable } from '../lib/feature.js';

const FIELDS = [
  ['run', 'Run id', 'text'],
  ['subject', 'Agent (image digest)', 'text'],
  ['capability', 'Capability or capability.method', 'text'],
  ['type', 'Record type', 'text'],
  ['since', 'Since', 'datetime-local'],
  ['until', 'Until', 'datetime-local'],
];

export function mount(root, state) {
  const status = h('div.status-line', h('span.muted', 'verifying the chain…'));
  const results = h('div');
  const inputs = Object.fromEntries(FIELDS.map(([key, , type]) => [key, h('input', { id: `au-${key}`, name: key, type, spellcheck: 'false' })]));
  const form = h(
    'form.card',
    { on: { submit: (e) => (e.preventDefault(), void search()) } },
    h('div.grid.two', FIELDS.map(([key, label]) => [h('label', { for: `au-${key}` }, label), inputs[key]])),
    h('div.row', h('button.primary', { type: 'submit' }, 'Search'), h('button', { type: 'button', on: { click: () => (form.reset(), void search()) } }, 'Clear')),
  );
  root.append(section('Audit', h('p.muted.hint', 'Every gate event, hash-chained: intent before an action, outcome after, decisions, grants, reviews, promotions.'), status, form, results));

  async function verify() {
    try {
      const v = await api.get('/console/api/audit/verify');
      clear(status);
      status.append(
        v.ok ? badge('chain verified', 'ok') : badge('TAMPERING DETECTED', 'danger'),
        h('span', `${v.records} records · head seq ${v.headSeq} · ${v.checkpoints} signed checkpoints${v.lastCheckpointSeq !== undefined ? ` (last at seq ${v.lastCheckpointSeq})` : ''} · ${v.unsignedTail} after the last checkpoint · checked ${time(v.checkedAt)}`),
      );
      if (v.firstBad) status.append(h('p.notice.danger', `First bad record: seq ${v.firstBad.seq} (${v.firstBad.kind}): `, visible(v.firstBad.message)));
      for (const w of v.warnings ?? []) status.append(h('span.muted', visible(w)));
    } catch (error) {
      status.replaceChildren(error.status === 404 ? notAvailable('The audit log') : h('p.error', `${error.code}: ${error.message}`));
    }
  }

  async function search() {
    const params = new URLSearchParams();
    for (const [key, , type] of FIELDS) {
      const v = inputs[key].value.trim();
      if (v) params.set(key, type === 'datetime-local' ? String(new Date(v).getTime()) : v);
    }
    params.set('limit', '200');
    try {
      const { records } = await api.get(`/console/api/audit?${params}`);
      clear(results);
      results.append(
        h('p.muted', `${records.length} record${records.length === 1 ? '' : 's'}${records.length === 200 ? ' (the newest 200)' : ''}`),
        h(
          'table.list',
          h('thead', h('tr', ['Seq', 'Time', 'Type', 'Run', 'Agent', 'Action', 'Data'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            records.map((r) => {
              const data = JSON.stringify(r.data) ?? '';
              return h(
                'tr',
                h('td', String(r.seq)),
                h('td', time(r.at)),
                h('td', h('code', visible(r.type))),
                h('td', r.runId ? h('code', r.runId.slice(0, 8)) : '—'),
                h('td', r.subject ? visible(nameOf(r.subject) ?? shortDigest(r.subject)) : '—'),
                h('td', r.capability ? h('code', visible(`${r.capability}${r.method ? `.${r.method}` : ''}`)) : '—'),
                h('td', data.length > 160 ? h('details', h('summary', h('code.scope', visible(`${data.slice(0, 120)}…`))), h('pre.value', visible(JSON.stringify(r.data, null, 2)))) : h('code.scope', visible(data))),
              );
            }),
          ),
        ),
      );
    } catch (error) {
      results.replaceChildren(error.status === 404 ? notAvailable('The audit log') : h('p.error', `${error.code}: ${error.message}`));
    }
  }

  const nameOf = (subject) => [...state.runs.values()].find((r) => r.subject === subject)?.imageName;
  void verify();
  void search();
  return {};
}
