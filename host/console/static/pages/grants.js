// Grants (admins): the stored grants (grants.list over the channel, then live `grant` events); add a
// grant and narrow one through the console's JSON API (the host's grant rules apply: risk policy,
// approvals, scope); revoke over the channel (grants.revoke). Other roles see why they cannot.
import { api } from '../lib/api.js';
import { badge, clear, h, section, shortDigest, time, toast, visible } from '../lib/dom.js';

const MODES = ['contained', 'executed', 'assisted'];

export function mount(root, state) {
  if (!state.can('admin')) {
    root.append(section('Grants', h('p.notice.info', `Grants are managed by admins; you are ${state.me.role === 'approver' ? 'an' : 'a'} ${state.me.role}. The host refuses grant changes from other roles, here and over the operator channel.`)));
    return {};
  }
  let capabilities = [];
  let showAll = false;
  const body = h('tbody');
  const formBox = h('div');
  const toggle = h('input', { type: 'checkbox', id: 'grants-all', on: { change: () => ((showAll = toggle.checked), render()) } });
  root.append(
    section(
      'Grants',
      h('div.row', h('button.primary', { type: 'button', on: { click: () => openAdd() } }, 'Add a grant…'), h('label.inline', toggle, ' show revoked and expired')),
      formBox,
      h('table.list', h('thead', h('tr', ['Agent', 'Capability', 'Methods', 'Mode', 'Scope', 'Expires', 'Reason', 'Status', ''].map((t) => h('th', { scope: 'col' }, t)))), body),
    ),
  );
  api.get('/console/api/capabilities').then((r) => (capabilities = r.capabilities), (e) => toast(`capabilities: ${e.message}`, 'error'));

  function agentOf(subject) {
    if (!subject) return '—';
    if (subject.name) return `${subject.name} (signed by ${shortDigest(subject.signer)})`;
    const run = [...state.runs.values()].find((r) => r.subject === subject.digest);
    return run?.imageName ? `${run.imageName} ${shortDigest(subject.digest)}` : shortDigest(subject.digest);
  }

  function status(g) {
    if (g.revokedAt) return badge('revoked', 'warn');
    if (g.expiresAt && g.expiresAt <= Date.now()) return badge('expired', 'warn');
    return badge(g.forced ? 'active (forced)' : 'active', 'ok');
  }

  function render() {
    clear(body);
    if (!state.grants) return body.append(h('tr', h('td', { colspan: 9 }, 'loading…')));
    const grants = [...state.grants.values()].filter((g) => showAll || (!g.revokedAt && !(g.expiresAt && g.expiresAt <= Date.now()))).sort((a, b) => b.createdAt - a.createdAt);
    if (grants.length === 0) body.append(h('tr', h('td.muted', { colspan: 9 }, 'No grants.')));
    for (const g of grants) {
      const active = !g.revokedAt && !(g.expiresAt && g.expiresAt <= Date.now());
      const slot = h('tr.slot', h('td', { colspan: 9 }));
      slot.hidden = true;
      body.append(
        h(
          'tr',
          { dataset: { id: g.id } },
          h('td', visible(agentOf(g.subject))),
          h('td', h('code', visible(g.capability))),
          h('td', visible(g.methods.join(', '))),
          h(
            'td',
            badge(g.mode, g.mode === 'assisted' ? 'info' : g.mode === 'executed' ? 'warn' : ''),
            g.mode === 'assisted' ? ` ${g.approvals} approval${g.approvals > 1 ? 's' : ''}` : '',
            g.signedApprovals ? [' ', badge('signed', 'info')] : null,
            g.stageRuns ? [' ', badge('staged runs', 'info')] : null,
          ),
          h('td', g.scope ? h('code.scope', visible(JSON.stringify(g.scope))) : h('span.muted', 'host instance')),
          h('td', g.expiresAt ? time(g.expiresAt) : '—'),
          h('td', visible(g.reason), h('span.muted', ` — ${g.createdBy}`)),
          h('td', status(g)),
          h(
            'td.actions',
            active ? h('button', { type: 'button', on: { click: () => openNarrow(g, slot) } }, 'Narrow…') : null,
            active ? h('button.danger', { type: 'button', on: { click: () => openRevoke(g, slot) } }, 'Revoke…') : null,
          ),
        ),
        slot,
      );
    }
  }

  function inSlot(slot, form) {
    for (const other of body.querySelectorAll('tr.slot')) {
      other.hidden = true;
      clear(other.firstChild);
    }
    slot.hidden = false;
    slot.firstChild.append(form);
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        slot.hidden = true;
        clear(slot.firstChild);
      } else if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) form.requestSubmit();
    });
    form.querySelector('input, textarea, select')?.focus();
  }

  function openRevoke(g, slot) {
    const reason = h('input', { type: 'text', id: `rv-${g.id}`, required: true, maxlength: 2000 });
    const error = h('p.error', { role: 'alert' });
    const form = h(
      'form.inline-form',
      {
        on: {
          submit: async (e) => {
            e.preventDefault();
            try {
              await state.channel.request('grants.revoke', { grantId: g.id, reason: reason.value.trim() });
              toast(`grant ${g.id} revoked`, 'warn');
            } catch (err) {
              error.textContent = `${err.code}: ${err.message}`;
            }
          },
        },
      },
      h('label', { for: `rv-${g.id}` }, `Why revoke ${g.capability} for ${agentOf(g.subject)}?`),
      reason,
      error,
      h('div.row', h('button.danger', { type: 'submit' }, 'Revoke grant')),
    );
    inSlot(slot, form);
  }

  function methodBoxes(prefix, methods, checked, riskOf) {
    return h(
      'fieldset.methods',
      h('legend', 'Methods'),
      methods.map((m) => h('label.inline', h('input', { type: 'checkbox', name: `${prefix}-m`, value: m, checked: checked.includes(m) }), ` ${m} `, riskOf ? riskNote(riskOf(m)) : null)),
    );
  }

  function riskNote(risk) {
    if (!risk) return null;
    const out = [];
    if (risk.destructive) out.push(badge('destructive', 'danger'));
    if (risk.financial) out.push(badge('financial', 'danger'));
    if (!risk.reversible) out.push(badge('irreversible', 'warn'));
    if (risk.readOnly) out.push(badge('read-only', 'ok'));
    return out;
  }

  function checkedValues(form, name) {
    return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
  }

  function parseScope(text) {
    if (!text.trim()) return { ok: true, value: undefined };
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, error: 'the scope must be a JSON object' };
      return { ok: true, value };
    } catch {
      return { ok: false, error: 'the scope is not valid JSON' };
    }
  }

  function openNarrow(g, slot) {
    const cap = capabilities.find((c) => c.name === g.capability);
    const riskOf = (m) => cap?.methods.find((x) => x.name === m)?.risk;
    const available = g.methods.includes('*') ? (cap?.methods.map((m) => m.name) ?? []) : g.methods;
    const mode = h('select', { id: `nm-${g.id}` }, MODES.slice(MODES.indexOf(g.mode)).map((m) => h('option', { value: m }, m)));
    const approvals = h('input', { type: 'number', id: `na-${g.id}`, min: g.approvals, max: 5, value: String(g.approvals) });
    const expires = h('input', { type: 'datetime-local', id: `ne-${g.id}` });
    // Signed approvals can be added by a narrowing, never dropped.
    const signed = h('input', { type: 'checkbox', id: `nsa-${g.id}`, checked: g.signedApprovals === true, disabled: g.signedApprovals === true });
    const scope = h('textarea', { id: `ns-${g.id}`, rows: 3, spellcheck: 'false', placeholder: 'JSON; empty keeps the current scope' });
    const reason = h('input', { type: 'text', id: `nr-${g.id}`, required: true, maxlength: 2000 });
    const error = h('p.error', { role: 'alert' });
    const form = h(
      'form.inline-form',
      {
        on: {
          submit: async (e) => {
            e.preventDefault();
            const sc = parseScope(scope.value);
            if (!sc.ok) return void (error.textContent = sc.error);
            const methods = checkedValues(form, `n-${g.id}-m`);
            if (methods.length === 0) return void (error.textContent = 'keep at least one method (or revoke the grant)');
            const body = { methods, mode: mode.value, approvals: Number(approvals.value), reason: reason.value.trim() };
            if (signed.checked) body.signedApprovals = true;
            if (stageRuns.checked) body.stageRuns = true;
            if (sc.value) body.scope = sc.value;
            if (expires.value) body.expiresAt = new Date(expires.value).getTime();
            try {
              const result = await api.post(`/console/api/grants/${encodeURIComponent(g.id)}/narrow`, body);
              toast(`narrowed into ${result.grant.id}`, 'ok');
              for (const n of result.notes ?? []) toast(n);
            } catch (err) {
              error.textContent = `${err.code}: ${err.message}`;
            }
          },
        },
      },
      h('p.muted', 'Narrowing writes a new grant and revokes this one. It can drop methods, add oversight, require more approvals or passkey-signed approvals, expire sooner or shrink the scope — never widen.'),
      methodBoxes(`n-${g.id}`, available, g.methods.includes('*') ? available : g.methods, riskOf),
      h('div.grid', h('label', { for: `nm-${g.id}` }, 'Mode'), mode, h('label', { for: `na-${g.id}` }, 'Approvals'), approvals, h('label', { for: `ne-${g.id}` }, 'Expires'), expires),
      h('label.inline', { for: `nsa-${g.id}` }, signed, ' Approvals must be passkey-signed'),
      h('label', { for: `ns-${g.id}` }, 'Narrower scope (intersected with the current one)'),
      g.scope ? h('p.muted', 'current: ', h('code', visible(JSON.stringify(g.scope)))) : null,
      scope,
      h('label', { for: `nr-${g.id}` }, 'Reason'),
      reason,
      error,
      h('div.row', h('button.primary', { type: 'submit' }, 'Narrow grant')),
    );
    inSlot(slot, form);
  }

  function openAdd() {
    clear(formBox);
    const agents = new Map();
    for (const r of state.runs.values()) if (r.subject) agents.set(r.subject, r.imageName ?? '');
    const subject = h('input', { id: 'ag-subject', type: 'text', required: true, list: 'ag-agents', placeholder: 'sha256:… (image digest)', spellcheck: 'false' });
    const datalist = h('datalist#ag-agents', [...agents].map(([d, name]) => h('option', { value: d }, name)));
    const capability = h('select', { id: 'ag-cap', required: true }, h('option', { value: '' }, '— choose —'), capabilities.map((c) => h('option', { value: c.name }, `${c.name} (${c.kind})`)));
    const methodsBox = h('div');
    const mode = h('select', { id: 'ag-mode' }, MODES.map((m) => h('option', { value: m, selected: m === 'assisted' }, m)));
    const approvals = h('input', { id: 'ag-approvals', type: 'number', min: 1, max: 5, placeholder: 'default by risk' });
    const expires = h('input', { id: 'ag-expires', type: 'datetime-local' });
    const signed = h('input', { id: 'ag-signed', type: 'checkbox' });
    const stageRuns = h('input', { id: 'ag-stage-runs', type: 'checkbox' });
    const scope = h('textarea', { id: 'ag-scope', rows: 3, spellcheck: 'false', placeholder: 'optional JSON: narrower than the host instance' });
    const reason = h('input', { id: 'ag-reason', type: 'text', required: true, maxlength: 2000 });
    const error = h('p.error', { role: 'alert' });
    capability.addEventListener('change', () => {
      clear(methodsBox);
      const cap = capabilities.find((c) => c.name === capability.value);
      if (cap) methodsBox.append(h('p.muted', visible(cap.description), ' — scope: ', visible(cap.scope)), methodBoxes('ag', cap.methods.map((m) => m.name), [], (m) => cap.methods.find((x) => x.name === m)?.risk));
    });
    const form = h(
      'form.card.add-grant',
      {
        on: {
          submit: async (e) => {
            e.preventDefault();
            error.textContent = '';
            const sc = parseScope(scope.value);
            if (!sc.ok) return void (error.textContent = sc.error);
            const body = { subject: { digest: subject.value.trim() }, capability: capability.value, methods: checkedValues(form, 'ag-m'), mode: mode.value, reason: reason.value.trim() };
            if (approvals.value) body.approvals = Number(approvals.value);
            if (signed.checked) body.signedApprovals = true;
            if (sc.value) body.scope = sc.value;
            if (expires.value) body.expiresAt = new Date(expires.value).getTime();
            try {
              const result = await api.post('/console/api/grants', body);
              toast(`granted ${result.grant.id}`, 'ok');
              for (const n of result.notes ?? []) toast(n);
              clear(formBox);
            } catch (err) {
              error.textContent = `${err.code}: ${err.message}`;
            }
          },
          keydown: (e) => {
            if (e.key === 'Escape') clear(formBox);
            else if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) form.requestSubmit();
          },
        },
      },
      h('h2', 'Add a grant'),
      h('div.grid', h('label', { for: 'ag-subject' }, 'Agent (image digest)'), h('div', subject, datalist), h('label', { for: 'ag-cap' }, 'Capability'), capability),
      methodsBox,
      h('div.grid', h('label', { for: 'ag-mode' }, 'Mode'), mode, h('label', { for: 'ag-approvals' }, 'Approvals'), approvals, h('label', { for: 'ag-expires' }, 'Expires'), expires),
      h('label.inline', { for: 'ag-signed' }, signed, ' Approvals must be passkey-signed (whatever the host policy)'),
      h('label.inline', { for: 'ag-stage-runs' }, stageRuns, ' Stage every run of this agent (its effects reviewed as one changeset)'),
      h('label', { for: 'ag-scope' }, 'Scope'),
      scope,
      h('label', { for: 'ag-reason' }, 'Reason'),
      reason,
      error,
      h('div.row', h('button.primary', { type: 'submit' }, 'Add grant'), h('button', { type: 'button', on: { click: () => clear(formBox) } }, 'Cancel')),
    );
    formBox.append(form);
    subject.focus();
  }

  render();
  return {
    update(event) {
      if (event.type === 'grant' || event.type === 'lists') render();
    },
  };
}
