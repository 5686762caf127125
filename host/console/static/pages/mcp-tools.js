// MCP tools: the rug-pull defence of `mcp` capabilities (docs/mcp-capability.md). Per capability, the
// tool changes waiting for an operator — a changed tool is withdrawn (every call fails
// MCP_TOOL_WITHDRAWN) and a new one is held until accepted — with what changed (accepted version −,
// version the server lists now +), and the accepted versions. Admins accept one change with a
// reason; the acceptance names the fingerprint shown here, so a tool that changed again since is
// refused (ALREADY_RESOLVED) and shown again. Everything the server wrote (descriptions, schemas)
// stays inside a framed box and is text, never markup.
import { api } from '../lib/api.js';
import { renderArgsDiff } from '../lib/diff.js';
import { badge, clear, h, json, section, shortDigest, time, toast, visible } from '../lib/dom.js';

const FIELDS = ['title', 'description', 'inputSchema', 'outputSchema', 'annotations'];

export function mount(root, state) {
  const content = h('div', h('p.muted', 'asking the host…'));
  const refresh = h('button', { type: 'button', on: { click: () => void load() } }, 'Refresh');
  root.append(
    section(
      'MCP tools',
      h('p.muted.hint', 'Tools of the MCP servers behind mcp capabilities. A tool whose description, schema or annotations changed is withdrawn, and a new tool is not offered, until an admin accepts the version the server lists now.'),
      h('div.row', refresh),
      content,
    ),
  );
  let open = false;

  async function load() {
    if (open) return; // never re-render under an open form
    try {
      const { capabilities } = await api.get('/console/api/mcp-tools');
      clear(content);
      if (capabilities.length === 0) content.append(h('p.empty', 'This host runs no mcp capability.'));
      for (const c of capabilities) content.append(capability(c));
    } catch (error) {
      content.replaceChildren(h('p.notice.info', error.status === 404 ? 'MCP tools are not available on this host (it runs no mcp capability).' : `${error.code}: ${error.message}`));
    }
  }

  function capability(c) {
    return h(
      'div.mcp-capability',
      { dataset: { capability: c.capability } },
      h('h2', h('code', c.capability), ' ', badge(`${c.pending.length} pending`, c.pending.length > 0 ? 'warn' : 'ok'), ' ', badge(`${c.accepted.length} accepted`)),
      c.pending.length === 0 ? h('p.muted', 'Nothing waits: every tool the server lists is an accepted version.') : h('div.cards', c.pending.map((p) => change(c.capability, p))),
      h('h3', 'Accepted versions'),
      acceptedTable(c.accepted),
    );
  }

  function change(cap, p) {
    const form = h('div.panel');
    const card = h(
      'article.card.mcp-change',
      { dataset: { capability: cap, tool: p.tool, change: p.change } },
      h(
        'div.card-head',
        h('h3.action', visible(p.tool)),
        p.change === 'changed' ? badge('changed — withdrawn', 'danger') : badge('new — not offered', 'warn'),
        p.method ? h('span.muted', 'method ', h('code', p.method)) : null,
      ),
      h(
        'p.meta',
        p.change === 'changed' ? ['Differs from the accepted version in: ', h('strong.differs', p.differs.join(', ') || '—'), '. '] : 'Not offered to agents yet; once accepted, offered from the next host start. ',
        'Fingerprint ',
        h('code.fingerprint', { title: p.fingerprint }, shortDigest(p.fingerprint)),
        p.acceptedFingerprint ? [' (accepted: ', h('code', { title: p.acceptedFingerprint }, shortDigest(p.acceptedFingerprint)), ')'] : null,
      ),
      p.change === 'changed' && p.accepted
        ? h('div.agent-text', h('span.agent-label', 'written by the MCP server: − accepted version, + what it lists now'), renderArgsDiff(pick(p.accepted), pick(p.current)).element)
        : h('div.agent-text', h('span.agent-label', 'written by the MCP server'), h('span.label', 'description'), h('pre.value.long', visible(p.current.description)), h('span.label', 'input schema'), h('pre.value.long', visible(json(p.current.inputSchema))), p.current.annotations ? [h('span.label', 'annotations'), h('pre.value', visible(json(p.current.annotations)))] : null),
      state.can('admin') ? h('div.actions', h('button.primary', { type: 'button', on: { click: () => acceptForm(form, cap, p) } }, 'Accept…')) : h('p.muted', 'Only admins accept tool changes.'),
      form,
    );
    return card;
  }

  function acceptForm(panel, cap, p) {
    if (panel.firstChild) return;
    open = true;
    const reason = h('textarea', { id: `reason-${cap}-${p.tool}`, rows: 2, required: true, placeholder: 'what you checked, and why this version is safe to offer' });
    const error = h('p.error', { role: 'alert' });
    const close = () => {
      clear(panel);
      open = false;
    };
    const submit = async (event) => {
      event.preventDefault();
      error.textContent = '';
      try {
        const done = await api.post('/console/api/mcp-tools/accept', { capability: cap, tool: p.tool, fingerprint: p.fingerprint, reason: reason.value });
        toast(`${cap}/${p.tool} accepted: ${done.effective === 'next start' ? 'offered from the next host start' : 'offered again by the running host within seconds (a change to its risk: from the next start)'}`, 'ok');
        close();
        void load();
      } catch (e) {
        error.textContent = `${e.code}: ${e.message}`;
        if (e.code === 'ALREADY_RESOLVED') error.append(' — refresh to see the version the server lists now.');
      }
    };
    panel.append(
      h(
        'form.inline-form.mcp-accept',
        { on: { submit, keydown: (e) => e.key === 'Escape' && close() } },
        h('label', { for: reason.id }, `Reason for accepting ${p.tool} (${shortDigest(p.fingerprint)})`),
        reason,
        error,
        h('div.row', h('button.primary', { type: 'submit' }, 'Accept this version'), h('button', { type: 'button', on: { click: close } }, 'Cancel')),
      ),
    );
    reason.focus();
  }

  void load();
  const timer = setInterval(() => void load(), 5_000);
  return {
    unmount() {
      clearInterval(timer);
    },
  };
}

function pick(snapshot) {
  const out = {};
  for (const k of FIELDS) if (snapshot[k] !== undefined) out[k] = snapshot[k];
  return out;
}

function acceptedTable(list) {
  if (list.length === 0) return h('p.muted', 'None yet.');
  return h(
    'div.scroll',
    h(
      'table.list.mcp-accepted',
      h('thead', h('tr', ['Tool', 'Description', 'Accepted by', 'At', 'Reason', 'Fingerprint'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        list.map((a) =>
          h(
            'tr',
            { dataset: { tool: a.tool } },
            h('td', h('code', visible(a.tool))),
            h('td', visible(a.description.length > 160 ? `${a.description.slice(0, 160)}…` : a.description)),
            h('td.by', visible(a.acceptedBy)),
            h('td', time(a.acceptedAt)),
            h('td.reason', visible(a.reason)),
            h('td', h('code.size', { title: a.fingerprint }, shortDigest(a.fingerprint))),
          ),
        ),
      ),
    ),
  );
}
