// Trust: per agent and action, the ledger's figures (GET /console/api/trust: mode, phase, assisted
// verdicts, executed reviews, rates, whether the promotion bar is met), and the promotion proposals
// (promotion.list over the channel); admins accept or decline them (promotion.decide) with a reason.
import { api } from '../lib/api.js';
import { badge, clear, h, section, shortDigest, time, toast, visible } from '../lib/dom.js';
import { notAvailable } from '../lib/feature.js';

export function mount(root, state) {
  const figures = h('div', h('p.muted', 'asking the host…'));
  const proposals = h('div');
  root.append(section('Trust', h('p.muted.hint', 'Scope follows evidence: an action moves from assisted to executed only on a proposal an admin accepts; destructive and financial actions never do.'), h('h2', 'Promotion proposals'), proposals, h('h2', 'Agents and their actions'), figures));

  const nameOf = (subject) => [...state.runs.values()].find((r) => r.subject === subject)?.imageName;

  async function loadFigures() {
    try {
      const { subjects } = await api.get('/console/api/trust');
      clear(figures);
      if (subjects.length === 0) figures.append(h('p.empty', 'No agent has a grant or a track record yet.'));
      for (const s of subjects) {
        figures.append(
          h(
            'div.detail',
            h('h3', h('strong', visible(nameOf(s.subject) ?? 'agent')), ' ', h('span.muted', shortDigest(s.subject)), ' ', badge(`phase ${s.phase.phase}`, s.phase.phase > 1 ? 'ok' : 'info')),
            h('p.muted', visible(s.phase.why)),
            h(
              'table.list',
              h('thead', h('tr', ['Action', 'Mode', 'Assisted: as-is / edited / denied', 'Edit rate', 'Executed: ok / error / critical', 'Error rate', 'Would the policy allow it now?', 'Promotion bar'].map((t) => h('th', { scope: 'col' }, t)))),
              h(
                'tbody',
                s.actions.map((a) =>
                  h(
                    'tr',
                    h('td', h('code', visible(a.action))),
                    h('td', badge(a.mode, a.mode === 'executed' ? 'warn' : a.mode === 'assisted' ? 'info' : '')),
                    h('td', `${a.assisted?.approvedAsIs ?? 0} / ${a.assisted?.edited ?? 0} / ${a.assisted?.denied ?? 0}`),
                    h('td', String(a.assisted?.editRate ?? '—')),
                    h('td', `${a.executed?.ok ?? 0} / ${a.executed?.error ?? 0} / ${a.executed?.critical ?? 0}`),
                    h('td', String(a.executed?.errorRate ?? '—')),
                    h('td', a.shadow?.wouldAllowNow ? badge('yes', 'ok') : badge('no', '')),
                    h('td', a.bar === 'met' ? badge('met', 'ok') : h('span.muted', visible(String(a.bar ?? '—')))),
                  ),
                ),
              ),
            ),
          ),
        );
      }
    } catch (error) {
      figures.replaceChildren(error.status === 404 ? notAvailable('The trust ledger') : h('p.error', `${error.code}: ${error.message}`));
    }
  }

  async function loadProposals() {
    try {
      const { proposals: list } = await state.channel.request('promotion.list', {});
      clear(proposals);
      const open = list.filter((p) => p.status === 'proposed');
      if (open.length === 0) proposals.append(h('p.muted', 'No open proposals.'));
      for (const p of open) proposals.append(proposalCard(p));
      const decided = list.filter((p) => p.status !== 'proposed').slice(0, 10);
      if (decided.length > 0) {
        proposals.append(
          h('details.block', h('summary', `Decided (${decided.length})`), h('ul', decided.map((p) => h('li', badge(p.status, p.status === 'accepted' ? 'ok' : ''), ' ', h('code', `${p.capability}.${p.method}`), ' ', visible(nameOf(p.subject) ?? shortDigest(p.subject)), ` — ${p.decidedBy ?? ''} ${time(p.decidedAt)}`, p.reason ? [': ', visible(p.reason)] : null)))),
        );
      }
    } catch (error) {
      proposals.replaceChildren(error.code === 'NOT_FOUND' || (error.code === 'INVALID_ARGUMENT' && /unknown message type/.test(error.message)) ? notAvailable('Promotion') : h('p.error', `${error.code}: ${error.message}`));
    }
  }

  function proposalCard(p) {
    const panel = h('div.panel');
    const card = h(
      'article.card',
      { tabindex: 0 },
      h('header.card-head', badge('proposal', 'rec'), h('h2.action', visible(`${p.capability}.${p.method}`)), h('span', 'assisted → executed'), h('span.spacer'), h('span.expires', `proposed ${time(p.createdAt)}`)),
      h('p.meta', h('strong', visible(nameOf(p.subject) ?? 'agent')), ' ', h('span.muted', shortDigest(p.subject)), ' · evidence gathered under grant ', h('code', p.grantId)),
      h('details.block', { open: true }, h('summary', 'Evidence'), h('pre.value', visible(JSON.stringify(p.evidence, null, 2)))),
      state.can('admin')
        ? h('div.actions', h('button.primary', { type: 'button', on: { click: () => open('accept') } }, 'Accept…'), h('button', { type: 'button', on: { click: () => open('decline') } }, 'Decline…'))
        : h('p.muted', 'Admins accept or decline proposals.'),
      panel,
    );
    function open(verdict) {
      clear(panel);
      const reason = h('input', { id: `pr-${p.id}`, type: 'text', required: true, maxlength: 2000 });
      const error = h('p.error', { role: 'alert' });
      const form = h(
        'form.decide',
        {
          on: {
            submit: async (e) => {
              e.preventDefault();
              try {
                await state.channel.request('promotion.decide', { proposalId: p.id, verdict, reason: reason.value.trim() });
                toast(`proposal ${verdict === 'accept' ? 'accepted' : 'declined'}`, 'ok');
              } catch (err) {
                error.textContent = `${err.code}: ${err.message}`;
              }
            },
            keydown: (e) => e.key === 'Escape' && clear(panel),
          },
        },
        h('label', { for: `pr-${p.id}` }, verdict === 'accept' ? 'Why accept (an executed grant is written)' : 'Why decline'),
        reason,
        error,
        h('div.row', h(verdict === 'accept' ? 'button.primary' : 'button', { type: 'submit' }, verdict === 'accept' ? 'Accept proposal' : 'Decline proposal')),
      );
      panel.append(form);
      reason.focus();
    }
    return card;
  }

  void loadFigures();
  const live = () => state.channel?.state === 'live';
  if (live()) void loadProposals();
  return {
    update(event) {
      if (event.type === 'state' && event.state === 'live') void loadProposals();
      if (['promotion', 'demotion', 'review', 'grant', 'resolved'].includes(event.type)) {
        void loadFigures();
        if (event.type === 'promotion' || event.type === 'demotion') void loadProposals();
      }
      if (event.type === 'lists') void loadFigures();
    },
  };
}
