// Review: the after-the-fact queue of actions performed in `executed` mode (review.list over the
// channel, then live `review` events). Approvers mark each ok / error / critical (review.mark);
// error and critical need a note, and a critical verdict demotes the action to assisted at once.
import { renderArgs } from './pending.js';
import { badge, clear, h, section, shortDigest, time, toast, visible } from '../lib/dom.js';
import { hostSupports, notAvailable } from '../lib/feature.js';

const STATUS_KIND = { pending: 'info', ok: 'ok', error: 'warn', critical: 'danger' };

export function mount(root, state) {
  const box = h('div', h('p.muted', 'asking the host…'));
  const filter = h('select', { id: 'rv-filter', on: { change: () => void load() } }, ['pending', 'ok', 'error', 'critical', 'all'].map((s) => h('option', { value: s }, s)));
  root.append(section('Review', h('p.muted.hint', 'Actions agents performed on their own (executed mode), for an after-the-fact verdict. A critical verdict moves the action back to assisted at once.'), box));
  let reviews = [];
  let available = false;

  if (!state.can('approver')) {
    box.replaceChildren(h('p.notice.info', `The review queue is for approvers and admins; you are a ${state.me.role}.`));
    return {};
  }

  async function load() {
    try {
      const result = await state.channel.request('review.list', { status: filter.value, limit: 200 });
      reviews = result.reviews;
      render();
    } catch (error) {
      box.replaceChildren(error.code === 'NOT_FOUND' ? notAvailable('The review queue') : h('p.error', `${error.code}: ${error.message}`));
    }
  }

  function render() {
    const list = h('div.cards');
    box.replaceChildren(h('div.row', h('label.inline', { for: 'rv-filter' }, 'Show'), filter, h('span.muted', `${reviews.length} action${reviews.length === 1 ? '' : 's'}`)), list);
    if (reviews.length === 0) list.append(h('p.empty', filter.value === 'pending' ? 'Nothing to review.' : 'None.'));
    for (const r of reviews) list.append(reviewCard(r));
  }

  function reviewCard(r) {
    const run = state.runs.get(r.runId);
    const panel = h('div.panel');
    const action = r.action ?? {};
    const { args, argsSha256, argsBytes, reason, outcome } = action;
    const card = h(
      'article.card',
      { tabindex: 0, dataset: { id: r.id } },
      h('header.card-head', badge(r.status, STATUS_KIND[r.status] ?? ''), h('h2.action', visible(`${r.capability}.${r.method}`)), h('span.spacer'), h('span.expires', `performed ${time(r.createdAt)}`)),
      h('p.meta', h('strong', visible(run?.imageName ?? 'agent')), ' ', h('span.muted', shortDigest(r.subject)), ' · run ', h('code', r.runId.slice(0, 8)), ' · grant ', h('code', r.grantId)),
      reason ? h('div.reason', h('span.label', 'Agent’s reason'), h('blockquote', visible(reason))) : null,
      h('div.block', h('span.label', 'Arguments'), argsSha256 ? h('p.muted', `${argsBytes} bytes, sha256 ${argsSha256.slice(0, 16)}… (too large to keep inline)`) : renderArgs(args)),
      h('div.block', h('span.label', 'Outcome'), outcome ? (outcome.ok ? h('span', badge('succeeded', 'ok'), ' ', visible(outcome.summary ?? '')) : h('span', badge('failed', 'danger'), ' ', visible(outcome.error ?? ''))) : h('span.muted', '—')),
      r.status !== 'pending' ? h('p.meta', `Marked ${r.status} by `, visible(r.markedBy ?? '?'), ` at ${time(r.markedAt)}`, r.note ? [' — ', visible(r.note)] : null) : null,
      r.status === 'pending'
        ? h(
            'div.actions',
            h('button', { type: 'button', on: { click: () => open('ok') } }, 'OK'),
            h('button', { type: 'button', on: { click: () => open('error') } }, 'Error…'),
            h('button.danger', { type: 'button', on: { click: () => open('critical') } }, 'Critical…'),
          )
        : null,
      panel,
    );

    function open(verdict) {
      clear(panel);
      const note = h('textarea', { id: `rv-note-${r.id}`, rows: 2, maxlength: 2000, required: verdict !== 'ok', placeholder: verdict === 'ok' ? 'optional' : 'what went wrong' });
      const error = h('p.error', { role: 'alert' });
      const submit = h(verdict === 'critical' ? 'button.danger' : 'button.primary', { type: 'submit' }, verdict === 'critical' ? 'Mark critical (demotes the action)' : `Mark ${verdict}`);
      const form = h(
        'form.decide',
        {
          on: {
            submit: async (e) => {
              e.preventDefault();
              const text = note.value.trim();
              if (verdict !== 'ok' && !text) return void (error.textContent = `An ${verdict} verdict needs a note.`);
              submit.disabled = true;
              try {
                const result = await state.channel.request('review.mark', { reviewId: r.id, verdict, ...(text ? { note: text } : {}) });
                if (result.demotion) toast(`${r.capability}.${r.method} demoted to assisted`, 'warn');
                else toast(`marked ${verdict}`, 'ok');
                await load();
              } catch (err) {
                error.textContent = `${err.code}: ${err.message}`;
                submit.disabled = false;
              }
            },
            keydown: (e) => {
              if (e.key === 'Escape') clear(panel);
              else if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) e.currentTarget.requestSubmit();
            },
          },
        },
        h('label', { for: `rv-note-${r.id}` }, 'Note'),
        note,
        error,
        h('div.row', submit, h('button', { type: 'button', on: { click: () => clear(panel) } }, 'Cancel')),
      );
      panel.append(form);
      (verdict === 'ok' ? submit : note).focus();
    }
    return card;
  }

  void hostSupports(state.channel, 'review.list', { limit: 1 }).then((ok) => {
    available = ok;
    if (ok) void load();
    else box.replaceChildren(notAvailable('The review queue'));
  });

  return {
    update(event) {
      if (available && (event.type === 'review' || event.type === 'demotion' || event.type === 'lists')) void load();
    },
  };
}
