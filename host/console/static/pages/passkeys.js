// Passkeys: the logged-in operator's WebAuthn credentials for signed approvals — add one (the
// browser's passkey dialog), see when each was last used, revoke one. Approvers and admins only
// (nobody else approves). The host keeps each public key in the audit log, so every approval signed
// with it can be verified offline later (`contained audit verify`).
import { registerPasskey } from '../lib/passkey.js';
import { api } from '../lib/api.js';
import { badge, clear, h, section, time } from '../lib/dom.js';

export function mount(root, state) {
  const list = h('div', h('p.muted', 'asking the host…'));
  const errorLine = h('p.error', { role: 'alert' });
  const label = h('input#passkey-label', { type: 'text', maxlength: 100, placeholder: 'e.g. laptop, YubiKey', autocomplete: 'off' });
  const add = h('button.primary', { type: 'button', on: { click: () => void register() } }, 'Add a passkey');
  const canSign = state.can('approver');
  root.append(
    section(
      'Passkeys',
      h('p.muted.hint', 'A passkey signs your approvals: the host checks, before counting one, that it was made by your passkey for this request, these exact arguments and this verdict. Where the host requires signed approvals, an approval without it is refused.'),
      canSign ? h('div.row', h('label', { for: 'passkey-label' }, 'Name'), label, add) : h('p.notice.info', `You are a ${state.me.role}: only approvers and admins register passkeys.`),
      errorLine,
      list,
    ),
  );

  async function register() {
    errorLine.textContent = '';
    add.disabled = true;
    try {
      await registerPasskey(label.value.trim());
      label.value = '';
      await load();
    } catch (error) {
      errorLine.textContent = `${error.code ?? error.name ?? 'ERROR'}: ${error.message}`;
    } finally {
      add.disabled = false;
    }
  }

  async function revoke(id) {
    errorLine.textContent = '';
    try {
      await api.post(`/console/api/passkeys/${encodeURIComponent(id)}/revoke`, {});
      await load();
    } catch (error) {
      errorLine.textContent = `${error.code ?? 'ERROR'}: ${error.message}`;
    }
  }

  async function load() {
    try {
      const { passkeys } = await api.get('/console/api/passkeys');
      clear(list);
      if (passkeys.length === 0) return list.append(h('p.empty', 'No passkey yet.'));
      list.append(
        h('table.passkeys', h('thead', h('tr', h('th', 'Name'), h('th', 'Credential'), h('th', 'Added'), h('th', 'Last used'), h('th', ''))),
          h('tbody', passkeys.map((p) => h('tr', { dataset: { id: p.id } },
            h('td', p.label ?? '—'),
            h('td', h('code', `${p.id.slice(0, 16)}…`)),
            h('td', time(p.createdAt)),
            h('td', p.lastUsedAt ? time(p.lastUsedAt) : 'never'),
            h('td', p.revokedAt ? badge('revoked', 'danger') : h('button.danger', { type: 'button', on: { click: () => void revoke(p.id) } }, 'Revoke')),
          )))),
      );
    } catch (error) {
      list.replaceChildren(h('p.error', `${error.code}: ${error.message}`));
    }
  }

  void load();
  return {};
}
