// Pending: the live list of requests waiting for a human (recommendations and escalations), from
// the channel's snapshot and created/updated/resolved events — no reload. Each card shows who asks,
// the exact action, risk, the agent's reason, its trust record and two-person progress; approvers
// get approve / edit-then-approve (with a diff) / deny, and once/run/always for escalations. Cards
// are keyed by request id and updated in place, so an open form survives events.
//
// What an approval approves: the card shows the request's current proposal — the arguments that run
// if it is approved now, "as the agent asked" or "edited by NAME" with the diff against what the
// agent asked, and their digest — and re-renders it on every update. Approvals are counted for that
// proposal only. Every approve sends the digest that was shown when its form opened, so an edit
// arriving meanwhile makes the host refuse it (STALE_REQUEST) instead of counting it for arguments
// nobody here read; the open form says so.
//
// A notification's link (`#/pending/<request id>`) opens this page on that request's card, selected
// and scrolled to; if it is no longer pending the page says so instead. At a phone's width the card
// stacks: arguments one per block, buttons full-width (style.css).
//
// Agent-written text (reason, arguments, requested scope) is only ever shown inside a framed,
// scrolling box labelled as written by the agent; the host's own line with risk and approvals
// comes first and holds none of it, so text imitating it ("2 of 2 approvals ✓") reads as a quote.
import { renderArgsDiff } from '../lib/diff.js';
import { renderChangeset } from '../lib/changeset.js';
import { digestOf, signApproval } from '../lib/passkey.js';
import { append, badge, clear, h, json, relative, section, shortDigest, time, toast, visible } from '../lib/dom.js';

const RISK_LABELS = [
  ['destructive', 'destructive', 'danger'],
  ['financial', 'financial', 'danger'],
  ['reversible', 'irreversible', 'warn', true],
  ['openWorld', 'open world', 'warn'],
  ['readOnly', 'read-only', 'ok'],
];

export function mount(root, state, linked) {
  const list = h('div.cards', { role: 'list' });
  const empty = h('p.empty', 'Nothing is waiting for a decision.');
  /** The request a link asked for, until its card is shown (or it is known not to be pending). */
  let target = linked;
  const linkNote = h('p.notice.warn.link-note', { role: 'status', hidden: true });
  const roleNote = state.can('approver') ? null : h('p.notice.info', `You are a ${state.me.role}: you can watch requests, not decide them.`);
  root.append(section('Pending requests', linkNote, roleNote, h('p.muted.hint', 'Live: new requests appear here as agents ask. Keys: j/k select · a approve · e edit · d deny · ? help'), empty, list));
  const cards = new Map();

  function render() {
    const requests = [...state.pending.values()].sort((a, b) => a.createdAt - b.createdAt);
    for (const [id, card] of cards) {
      if (!state.pending.has(id)) {
        const focused = card.contains(document.activeElement);
        const next = card.nextElementSibling ?? card.previousElementSibling;
        card.remove();
        cards.delete(id);
        if (focused && next) next.focus();
      }
    }
    let previous = null;
    for (const r of requests) {
      let card = cards.get(r.id);
      if (!card) {
        card = buildCard(r, state);
        cards.set(r.id, card);
      } else card.refresh(r);
      if (card.previousElementSibling !== previous || card.parentElement !== list) {
        if (previous) previous.after(card);
        else list.prepend(card);
      }
      previous = card;
    }
    empty.hidden = requests.length > 0;
    const card = target === undefined ? undefined : cards.get(target);
    if (card) {
      target = undefined;
      linkNote.hidden = true;
      card.classList.add('linked');
      card.scrollIntoView({ block: 'start' });
      card.focus({ preventScroll: true });
    }
  }

  /** The linked request is not among the pending ones the host sent: say so. */
  function linkGone() {
    if (target === undefined || state.pending.has(target)) return;
    linkNote.hidden = false;
    linkNote.replaceChildren('Request ', h('code', visible(target)), ' is not pending any more (decided, expired or withdrawn), or it is not yours to see. See Runs for what happened to it.');
    target = undefined;
  }

  const timer = setInterval(() => {
    for (const el of root.querySelectorAll('[data-expires]')) el.textContent = `expires ${relative(Number(el.dataset.expires))}`;
  }, 5000);

  render();
  if (document.getElementById('link-state')?.dataset.state === 'live') linkGone();
  return {
    update(event) {
      if (['snapshot.complete', 'created', 'updated', 'resolved', 'run', 'lists'].includes(event.type)) render();
      if (event.type === 'snapshot.complete') linkGone();
    },
    unmount() {
      clearInterval(timer);
    },
    key(event) {
      const all = [...list.children];
      if (all.length === 0) return;
      const at = all.findIndex((c) => c.contains(document.activeElement));
      const card = all[at] ?? all[0];
      if (event.key === 'j' || event.key === 'ArrowDown') (all[Math.min(all.length - 1, at + 1)] ?? card).focus();
      else if (event.key === 'k' || event.key === 'ArrowUp') (all[Math.max(0, at - 1)] ?? card).focus();
      else if (['a', 'e', 'd'].includes(event.key) && state.can('approver')) card.open(event.key);
      else return;
      event.preventDefault();
    },
  };
}

function agentName(r, state) {
  const run = state.runs.get(r.runId);
  return run?.imageName ?? 'agent';
}

/** The run that made the request is over: the view says so, or a `run` event has ended it since. */
function runEnded(r, state) {
  if (r.runEnded === true) return true;
  const run = state.runs.get(r.runId);
  return run !== undefined && run.status !== 'queued' && run.status !== 'running';
}

function riskBadges(risk) {
  if (!risk) return [badge('risk unknown (worst case)', 'danger')];
  const out = [];
  for (const [key, label, kind, negate] of RISK_LABELS) if (negate ? risk[key] === false : risk[key] === true) out.push(badge(label, kind));
  return out;
}

/** Arguments as a readable list: one row per field, long text in a scrollable block. */
export function renderArgs(args) {
  if (args === undefined) return h('p.muted', 'no arguments');
  const plain = args !== null && typeof args === 'object' && !Array.isArray(args);
  if (!plain) return h('pre.value', visible(json(args)));
  return h(
    'dl.args',
    Object.entries(args).map(([key, value]) => {
      const text = typeof value === 'string' ? value : json(value);
      const long = text.length > 200 || text.includes('\n');
      return [h('dt', visible(key)), h('dd', h(`pre.value${long ? '.long' : ''}`, visible(text)), long ? h('span.muted.size', `${text.length} characters, ${text.split('\n').length} lines`) : null)];
    }),
  );
}

function renderTrust(trust) {
  if (!trust || Object.keys(trust).length === 0) return h('p.muted', 'No trust record for this action yet.');
  return facts(trust, 0);
}

/** Nested figures as nested definition lists (two levels, then compact JSON). */
function facts(value, depth) {
  return h(
    'dl.trust',
    Object.entries(value).map(([k, v]) => [
      h('dt', visible(k)),
      h('dd', v !== null && typeof v === 'object' && !Array.isArray(v) && depth < 2 ? facts(v, depth + 1) : visible(typeof v === 'object' ? JSON.stringify(v) : String(v))),
    ]),
  );
}

/** A box of agent-written text: framed, labelled, scrolling (it cannot pass for the card's own lines). */
function agentText(label, ...content) {
  return h('div.agent-text', h('span.agent-label', label), ...content);
}

function buildCard(initial, state) {
  let r = initial;
  const id = `req-${r.id}`;
  const progress = h('div.progress');
  const proposalBox = h('div.block.proposal');
  const panel = h('div.panel');
  const actions = h('div.actions');
  const agent = h('strong');
  const runState = h('span.run-state', { title: 'The agent’s run has ended: approving performs the action with no agent waiting for the result.' });
  const title = r.method ? `${r.capability}.${r.method}` : `${r.capability}: more capability`;
  const card = h(
    'article.card',
    { tabindex: 0, role: 'listitem', 'aria-labelledby': `${id}-title`, dataset: { id: r.id } },
    h(
      'header.card-head',
      badge(r.kind, r.kind === 'escalation' ? 'esc' : 'rec'),
      h(`h2#${id}-title.action`, visible(title)),
      h('span.spacer'),
      h('span.expires', { dataset: { expires: String(r.expiresAt) }, title: `expires at ${time(r.expiresAt)}` }, `expires ${relative(r.expiresAt)}`),
    ),
    // The host's own line: risk and approvals. Nothing the agent wrote is ever put here.
    h('div.status-line.card-status', h('span.risks', riskBadges(r.risk)), runState, progress),
    h(
      'p.meta',
      agent,
      ' ',
      h('span.muted', { title: r.subject ?? '' }, shortDigest(r.subject)),
      ' · run ',
      h('code', r.runId.slice(0, 8)),
      ' · asked ',
      time(r.createdAt),
      ' · ',
      h('span.why', visible(r.why)),
    ),
    h('div.reason', r.reason ? agentText('Agent’s reason — written by the agent', h('blockquote', visible(r.reason))) : h('p.muted', 'The agent gave no reason.')),
    proposalBox,
    h('details.block', h('summary', 'Agent’s record for this action'), renderTrust(r.trust)),
    actions,
    panel,
  );
  /** The digest of the proposal an open form was opened on (undefined: no approve/edit form open). */
  let formDigest;
  let formNotice;

  /** What runs if approved now: its arguments, who proposed them, the diff from what the agent asked, the digest. */
  function refreshProposal() {
    clear(proposalBox);
    const p = r.proposal;
    const what = r.method ? 'Arguments' : 'Requested scope';
    const asked = r.method ? r.args : r.requestedScope;
    if (r.kind === 'changeset') {
      // A staged run's effects, as one review: committed exactly as shown (the digest binds it).
      proposalBox.append(
        h('span.label', 'Changeset — every effect of the staged run; committed as shown if approved, local effects first'),
        agentText('written by the agent', renderChangeset(p.args)),
      );
    } else if (p.by === undefined) {
      proposalBox.append(
        h('span.label', `${what} — as the agent asked; these run if approved`),
        agentText('written by the agent', h('div.proposal-args', renderArgs(p.args))),
      );
    } else {
      const diff = renderArgsDiff(asked, p.args);
      proposalBox.append(
        h('span.label', `${what} that will run — edited by `, visible(p.by)),
        agentText(`written by the agent, edited by ${p.by}`, h('div.proposal-args', renderArgs(p.args))),
        h('span.label', 'Changes from what the agent asked (− asked, + will run)'),
        diff.element,
      );
    }
    proposalBox.append(h('p.digest.muted', 'digest ', h('code', { title: 'sha256 of the arguments’ canonical JSON: what an approval approves' }, p.argsDigest)));
  }

  /** Approvals of the current proposal (the ones that count). */
  const counting = () => r.approvals.filter((a) => a.argsDigest === r.proposal.argsDigest && r.proposal.approvedBy.includes(a.operator));
  const mine = () => r.proposal.approvedBy.includes(state.me.name);
  /** Operators whose only approvals were of other arguments. */
  const outdated = () => [...new Set(r.approvals.map((a) => a.operator))].filter((name) => !r.proposal.approvedBy.includes(name));

  function refreshProgress() {
    clear(progress);
    const got = r.proposal.approvedBy.length;
    const need = r.approvalsRequired;
    append(progress, [
      h('span.label', need > 1 ? 'Two-person rule' : 'Approval'),
      h('span.pips', Array.from({ length: need }, (_, i) => h(`span.pip${i < got ? '.on' : ''}`, { 'aria-hidden': 'true' }))),
      h('span', `${got} of ${need} approval${need > 1 ? 's' : ''}`),
      counting().map((a) => h('span.approver', '✓ ', visible(a.operator), a.note ? h('span.muted', ' — ', visible(a.note)) : null, a.args !== undefined ? h('span.muted', ' (proposed these)') : null)),
      outdated().map((name) => h('span.stale-approver', visible(name), '’s approval was of other arguments: it no longer counts')),
    ]);
  }

  function refreshActions() {
    clear(actions);
    if (!state.can('approver')) return;
    if (mine()) {
      actions.append(h('p.muted', 'You approved this (these exact arguments); a second, different approver must complete it.'));
      actions.append(h('button', { type: 'button', on: { click: () => open('d') } }, 'Deny…'));
      return;
    }
    if (outdated().includes(state.me.name)) {
      actions.append(h('p.notice.warn', 'Your approval was of other arguments; it no longer counts. Review the arguments that will run, above, and approve them if they are right.'));
    }
    append(actions, [
      h('button.primary', { type: 'button', 'aria-keyshortcuts': 'a', on: { click: () => open('a') } }, 'Approve…'),
      r.method && r.kind !== 'changeset' ? h('button', { type: 'button', 'aria-keyshortcuts': 'e', on: { click: () => open('e') } }, 'Edit & approve…') : null,
      h('button.danger', { type: 'button', 'aria-keyshortcuts': 'd', on: { click: () => open('d') } }, 'Deny…'),
    ]);
  }

  async function decide(fields, errorLine, submit) {
    errorLine.textContent = '';
    submit.disabled = true;
    try {
      // An approval is signed with the operator's passkey when the host asks for it (or they have one):
      // over this request, the digest of the arguments it approves, and the verdict.
      if (fields.verdict === 'approve') {
        const digest = fields.args === undefined ? fields.argsDigest : await digestOf(fields.args);
        const assertion = await signApproval(r.id, digest);
        if (assertion) fields = { ...fields, assertion };
      }
      const result = await state.channel.request('decide', { requestId: r.id, ...fields });
      const after = result.request;
      if (after.status === 'pending') toast(`Approved; ${after.approvalsRequired - after.approvals.length} more approval needed`, 'ok');
      close();
    } catch (error) {
      errorLine.textContent = `${error.code ?? 'ERROR'}: ${error.message}`;
      submit.disabled = false;
    }
  }

  function close() {
    clear(panel);
    formDigest = undefined;
    formNotice = undefined;
    card.classList.remove('open');
    card.focus();
  }

  /** The arguments moved under an open approve/edit form: say so (the host refuses its approval). */
  function warnIfMoved() {
    if (formDigest === undefined || !formNotice) return;
    const moved = formDigest !== r.proposal.argsDigest;
    formNotice.hidden = !moved;
    if (moved) {
      formNotice.replaceChildren(
        'The arguments changed since you opened this',
        r.proposal.by ? [' (edited by ', visible(r.proposal.by), ')'] : '',
        ': what would run now is shown above. Approving from this form is refused; cancel and review them.',
      );
    }
  }

  function formKeys(form) {
    form.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        close();
      } else if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }

  function open(kind) {
    if (!state.can('approver')) return;
    clear(panel);
    card.classList.add('open');
    const errorLine = h('p.error', { role: 'alert' });
    const cancel = h('button', { type: 'button', on: { click: close } }, 'Cancel');
    if (kind === 'd') {
      const reason = h('textarea', { id: `${id}-deny`, rows: 3, required: true, maxlength: 2000, placeholder: 'Shown to the agent', on: { input: () => (errorLine.textContent = '') } });
      const submit = h('button.danger', { type: 'submit' }, 'Deny request');
      const form = h('form.decide', { on: { submit: (e) => (e.preventDefault(), reason.value.trim() ? decide({ verdict: 'deny', reason: reason.value.trim() }, errorLine, submit) : (errorLine.textContent = 'A denial needs a reason.')) } }, h('label', { for: `${id}-deny` }, 'Reason for denying (the agent sees it)'), reason, errorLine, h('div.row', submit, cancel));
      formKeys(form);
      panel.append(form);
      reason.focus();
      return;
    }
    if (mine()) return;
    // What this approval approves: the proposal shown now. The host refuses it if that moves.
    const seen = r.proposal.argsDigest;
    formDigest = seen;
    formNotice = h('p.notice.warn', { role: 'alert', hidden: true });
    const note = h('input', { id: `${id}-note`, type: 'text', maxlength: 2000, placeholder: 'optional' });
    const spans = r.kind === 'escalation' ? spanChooser(id) : null;
    if (kind === 'e' && r.method && r.kind !== 'changeset') {
      const asked = r.args;
      const editor = argsEditor(r.proposal.args, id);
      const diffBox = h('div.diffbox');
      const refreshDiff = () => {
        clear(diffBox);
        const parsed = editor.value();
        if (!parsed.ok) return diffBox.append(h('p.error', parsed.error));
        diffBox.append(h('span.label', 'Changes (− asked by the agent, + what you approve)'), renderArgsDiff(asked, parsed.value).element);
      };
      editor.element.addEventListener('input', () => {
        // An error about what was submitted is stale once the arguments change.
        errorLine.textContent = '';
        refreshDiff();
      });
      const submit = h('button.primary', { type: 'submit' }, 'Approve with edits');
      const form = h(
        'form.decide',
        {
          on: {
            submit: (e) => {
              e.preventDefault();
              const parsed = editor.value();
              if (!parsed.ok) return void (errorLine.textContent = parsed.error);
              void decide({ verdict: 'approve', args: parsed.value, argsDigest: seen, ...(note.value.trim() ? { note: note.value.trim() } : {}), ...(spans ? { span: spans.value() } : {}) }, errorLine, submit);
            },
          },
        },
        formNotice,
        h('span.label', 'Edit the arguments that will run (your edit is a new proposal: every approver approves it anew)'),
        editor.element,
        diffBox,
        spans?.element,
        h('label', { for: `${id}-note` }, 'Note (optional)'),
        note,
        errorLine,
        h('div.row', submit, cancel),
      );
      formKeys(form);
      panel.append(form);
      refreshDiff();
      editor.focus();
      return;
    }
    const submit = h('button.primary', { type: 'submit' }, r.approvalsRequired - r.approvals.length > 1 ? 'Approve (first of two)' : 'Approve');
    const form = h(
      'form.decide',
      { on: { submit: (e) => (e.preventDefault(), decide({ verdict: 'approve', argsDigest: seen, ...(note.value.trim() ? { note: note.value.trim() } : {}), ...(spans ? { span: spans.value() } : {}) }, errorLine, submit)) } },
      formNotice,
      h('p.muted', 'You approve the arguments shown above (digest ', h('code', seen.slice(0, 19), '…'), ').'),
      spans?.element,
      h('label', { for: `${id}-note` }, 'Note (optional)'),
      note,
      errorLine,
      h('div.row', submit, cancel),
    );
    formKeys(form);
    panel.append(form);
    submit.focus();
  }

  card.open = open;
  card.refresh = (next) => {
    r = next;
    agent.replaceChildren(visible(agentName(r, state)));
    runState.replaceChildren(...(runEnded(r, state) ? [badge('run ended', 'warn')] : []));
    refreshProposal();
    refreshProgress();
    refreshActions();
    warnIfMoved();
  };
  card.refresh(r);
  return card;
}

function spanChooser(id) {
  const options = [
    ['once', 'Once', 'this call only'],
    ['run', 'This run', 'until this run ends'],
    ['always', 'Always', 'writes a new, narrowest grant for this agent'],
  ];
  const element = h(
    'fieldset.spans',
    h('legend', 'How far does the approval reach?'),
    options.map(([value, label, hint], i) => h('label.radio', h('input', { type: 'radio', name: `${id}-span`, value, checked: i === 0 }), ` ${label} `, h('span.muted', `— ${hint}`))),
  );
  return { element, value: () => element.querySelector('input:checked')?.value ?? 'once' };
}

/** One field per top-level argument (strings as text, anything else as JSON); or one JSON box. */
function argsEditor(args, id) {
  const plain = args !== null && typeof args === 'object' && !Array.isArray(args);
  const entries = plain ? Object.entries(args) : [['(arguments)', args]];
  const fields = entries.map(([key, value], i) => {
    const isString = typeof value === 'string';
    const text = isString ? value : json(value);
    const rows = Math.min(14, Math.max(1, text.split('\n').length + (text.length > 80 ? 1 : 0)));
    const input = rows === 1 && isString ? h('input', { id: `${id}-f${i}`, type: 'text', value: text }) : h('textarea', { id: `${id}-f${i}`, rows, spellcheck: 'false' }, text);
    if (input.tagName === 'INPUT') input.value = text;
    return { key, isString, input, label: h('label', { for: `${id}-f${i}` }, visible(key), isString ? '' : h('span.muted', ' (JSON)')) };
  });
  const element = h('div.editor', fields.map((f) => h('div.field', f.label, f.input)));
  return {
    element,
    focus: () => fields[0]?.input.focus(),
    value() {
      const out = {};
      for (const f of fields) {
        if (f.isString) out[f.key] = f.input.value;
        else {
          try {
            out[f.key] = JSON.parse(f.input.value);
          } catch {
            return { ok: false, error: `${f.key}: not valid JSON` };
          }
        }
      }
      return { ok: true, value: plain ? out : out['(arguments)'] };
    },
  };
}
