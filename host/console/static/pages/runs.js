// Runs: every run the host knows (runs.list over the channel, then live `run` events) with status,
// agent, duration and usage; selecting one shows its input, outcome, logs, usage and the requests it
// made (GET /console/api/runs/:id/requests). Admins can cancel a live run (runs.cancel).
import { api } from '../lib/api.js';
import { append, badge, clear, duration, h, json, section, shortDigest, time, toast, visible } from '../lib/dom.js';

const STATUS_KIND = { ok: 'ok', error: 'danger', cancelled: 'warn', running: 'info', queued: 'info' };

export function mount(root, state) {
  const body = h('tbody');
  const detail = h('div.detail', { 'aria-live': 'polite' });
  const empty = h('p.empty', 'No runs yet.');
  let selected;
  root.append(
    section(
      'Runs',
      h('p.muted.hint', 'Select a run (Enter) to see its outcome, logs, usage and requests. j/k move.'),
      empty,
      h('table.list', h('thead', h('tr', ['Started', 'Agent', 'Status', 'Duration', 'Calls', 'CPU', 'Submitted by'].map((t) => h('th', { scope: 'col' }, t)))), body),
      detail,
    ),
  );

  function render() {
    const focused = body.contains(document.activeElement) ? document.activeElement.dataset.id : undefined;
    clear(body);
    const runs = [...state.runs.values()].sort((a, b) => b.createdAt - a.createdAt);
    empty.hidden = runs.length > 0;
    for (const run of runs) {
      const usage = run.outcome?.usage;
      const row = h(
        'tr.selectable',
        { tabindex: 0, dataset: { id: run.id }, 'aria-selected': String(run.id === selected), on: { click: () => select(run.id), keydown: (e) => e.key === 'Enter' && select(run.id) } },
        h('td', time(run.createdAt)),
        h('td', h('strong', visible(run.imageName ?? '—')), ' ', h('span.muted', shortDigest(run.subject))),
        h('td', badge(run.status, STATUS_KIND[run.status] ?? '')),
        h('td', run.endedAt ? duration(run.endedAt - run.createdAt) : '…'),
        h('td', usage ? String(usage.calls) : '—'),
        h('td', usage ? `${Math.round(usage.cpuMs)} ms` : '—'),
        h('td', visible(run.submittedBy ?? '—')),
      );
      body.append(row);
      if (run.id === focused) row.focus();
    }
  }

  /** A performed request; a committed changeset also says whether it was undone, or offers its undo (approvers and admins; refused by the host after a later change or past the window). */
  function performed(r) {
    if (r.kind !== 'changeset') return 'yes';
    const undone = r.execution.undone;
    if (undone) return h('span', 'committed, ', badge('undone', 'warn'), h('span.muted', ' by ', visible(undone.by), ' ', time(undone.at)));
    if (!state.can('approver')) return 'committed';
    const undo = h(
      'button.undo',
      {
        type: 'button',
        on: {
          click: () => {
            undo.disabled = true;
            state.channel.request('changeset.undo', { requestId: r.id }).then(
              (result) => {
                toast(`changeset undone: ${result.restored} restored`, 'ok');
                if (selected) void select(selected);
              },
              (e) => {
                undo.disabled = false;
                toast(`${e.code}: ${e.message}`, 'error');
              },
            );
          },
        },
      },
      'Undo',
    );
    return h('span', 'committed ', undo);
  }

  async function select(id) {
    selected = id;
    render();
    const run = state.runs.get(id);
    if (!run) return;
    clear(detail);
    const outcome = run.outcome;
    const requestsBox = h('div', h('p.muted', 'loading requests…'));
    append(detail, [
      h('h2', 'Run ', h('code', run.id)),
      h(
        'dl.facts',
        h('dt', 'Agent'),
        h('dd', visible(run.imageName ?? '—'), ' ', h('code', run.subject ?? '')),
        h('dt', 'Status'),
        h('dd', badge(run.status, STATUS_KIND[run.status] ?? '')),
        h('dt', 'Started'),
        h('dd', time(run.createdAt)),
        h('dt', 'Ended'),
        h('dd', time(run.endedAt)),
        // The data-flow rule: what this run read that is marked sensitive (its value and logs may carry it).
        ...(run.sensitiveSources?.length ? [h('dt', 'Read sensitive'), h('dd', visible(run.sensitiveSources.join(', ')))] : []),
      ),
      state.can('admin') && run.status === 'running'
        ? h('button.danger', { type: 'button', on: { click: () => state.channel.request('runs.cancel', { runId: run.id }).then(() => toast('run cancelled', 'warn'), (e) => toast(`${e.code}: ${e.message}`, 'error')) } }, 'Cancel run')
        : null,
      h('h3', 'Input'),
      h('pre.value', visible(json(run.input))),
      h('h3', 'Outcome'),
      outcome
        ? outcome.status === 'ok'
          ? h('pre.value', visible(json(outcome.value)))
          : h('p.error', visible(`${outcome.error?.code}: ${outcome.error?.message}`))
        : h('p.muted', 'still running'),
      outcome?.usage ? [h('h3', 'Usage'), h('dl.facts', Object.entries(outcome.usage).map(([k, v]) => [h('dt', k), h('dd', String(v))]))] : null,
      h('h3', 'Logs'),
      outcome?.logs?.length ? h('pre.logs', outcome.logs.map((l) => h(`span.log.${/^[a-z]{1,10}$/.test(l.level) ? l.level : 'log'}`, '[', visible(String(l.level ?? 'log')), '] ', visible(l.message ?? JSON.stringify(l)), '\n'))) : h('p.muted', 'no logs'),
      h('h3', 'Requests this run made'),
      requestsBox,
    ]);
    try {
      const { requests } = await api.get(`/console/api/runs/${encodeURIComponent(id)}/requests`);
      clear(requestsBox);
      if (requests.length === 0) requestsBox.append(h('p.muted', 'none: every call was inside its grants'));
      else
        requestsBox.append(
          h(
            'table.list',
            h('thead', h('tr', ['Asked', 'Action', 'Kind', 'Status', 'Decided by', 'Performed'].map((t) => h('th', { scope: 'col' }, t)))),
            h(
              'tbody',
              requests.map((r) =>
                h(
                  'tr',
                  h('td', time(r.createdAt)),
                  h('td', h('code', visible(`${r.capability}${r.method ? `.${r.method}` : ''}`))),
                  h('td', r.kind),
                  h('td', badge(r.status, r.status === 'approved' ? 'ok' : r.status === 'pending' ? 'info' : 'warn'), r.denyReason ? h('span.muted', ' ', visible(r.denyReason)) : null),
                  h('td', visible((r.resolvedBy ?? r.approvals.map((a) => a.operator)).join(', ') || '—'), r.approvals.some((a) => a.args !== undefined) ? h('span.muted', ' (edited)') : null),
                  h('td', r.execution ? (r.execution.ok ? performed(r) : visible(`failed: ${r.execution.error?.code ?? ''}`)) : '—'),
                ),
              ),
            ),
          ),
        );
    } catch (error) {
      clear(requestsBox);
      requestsBox.append(h('p.error', `${error.code}: ${error.message}`));
    }
  }

  render();
  return {
    update(event) {
      if (event.type === 'run' || event.type === 'lists') {
        render();
        if (event.type === 'run' && event.run.id === selected) void select(selected);
      }
    },
    key(event) {
      const rows = [...body.children];
      const at = rows.indexOf(document.activeElement);
      if (event.key === 'j') (rows[at + 1] ?? rows[0])?.focus();
      else if (event.key === 'k') (rows[at - 1] ?? rows[0])?.focus();
      else return;
      event.preventDefault();
    },
  };
}
