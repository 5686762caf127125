// Notifications: where the host tells operators that something waits (webhooks and email, from the
// `notify` section of the host config) and how those deliveries stand — delivered, pending, failing
// (retrying with backoff), given up — with each target's last error (GET /console/api/notify, admins
// only). A webhook shows only its URL's origin: the rest of a Slack or Teams URL is a credential.
import { api } from '../lib/api.js';
import { badge, clear, h, section, time, visible } from '../lib/dom.js';

const STATUS_KIND = { delivered: 'ok', pending: 'warn', failed: 'danger', dropped: '' };

export function mount(root, state) {
  const targets = h('div', h('p.muted', 'asking the host…'));
  const deliveries = h('div');
  const refresh = h('button', { type: 'button', on: { click: () => void load() } }, 'Refresh');
  root.append(
    section(
      'Notifications',
      h('p.muted.hint', 'Webhooks and email from the host config’s notify section. Deliveries are retried with backoff from a durable outbox; a given-up one stays here with its last error.'),
      h('div.row', refresh),
      h('h2', 'Targets'),
      targets,
      h('h2', 'Latest deliveries'),
      deliveries,
    ),
  );

  async function load() {
    if (!state.can('admin')) {
      targets.replaceChildren(h('p.notice.info', `You are a ${state.me.role}: notification targets are shown to admins only.`));
      return;
    }
    try {
      const status = await api.get('/console/api/notify?limit=100');
      clear(targets);
      clear(deliveries);
      if (status.targets.length === 0) targets.append(h('p.empty', 'No webhook or email is configured (host config: notify.webhooks, notify.email).'));
      else targets.append(targetTable(status.targets));
      if (status.deliveries.length === 0) deliveries.append(h('p.muted', 'Nothing sent yet.'));
      else deliveries.append(deliveryTable(status.deliveries));
    } catch (error) {
      targets.replaceChildren(h('p.error', `${error.code}: ${error.message}`));
    }
  }

  void load();
  const timer = setInterval(() => void load(), 10_000);
  return {
    unmount() {
      clearInterval(timer);
    },
  };
}

function targetTable(list) {
  return h(
    'div.scroll',
    h(
      'table.list.notify-targets',
      h('thead', h('tr', ['Target', 'To', 'Events', 'Delivered', 'Pending', 'Failing', 'Given up', 'Last error'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        list.map((t) =>
          h(
            'tr',
            { dataset: { target: t.target } },
            h('td', h('code', visible(t.target)), t.format ? [' ', badge(t.format, 'info')] : null, t.kind === 'removed' ? [' ', badge('no longer configured', 'warn')] : null),
            h('td', visible(t.to)),
            h('td', visible(t.events.join(', '))),
            h('td', String(t.delivered), t.lastDeliveredAt ? h('span.muted.size', ` last ${time(t.lastDeliveredAt)}`) : null),
            h('td', String(t.pending)),
            h('td', t.failing > 0 ? badge(String(t.failing), 'warn') : '0'),
            h('td', t.failed > 0 ? badge(String(t.failed), 'danger') : '0'),
            h('td', t.lastError ? [h('span.error-text', visible(t.lastError)), h('span.muted.size', ` ${time(t.lastErrorAt)}`)] : h('span.muted', '—')),
          ),
        ),
      ),
    ),
  );
}

function deliveryTable(list) {
  return h(
    'div.scroll',
    h(
      'table.list.notify-deliveries',
      h('thead', h('tr', ['Event', 'Target', 'Status', 'Attempts', 'Created', 'Last error', 'Idempotency key'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        list.map((d) =>
          h(
            'tr',
            h('td', h('code', visible(d.event)), d.requestId ? [' ', h('a', { href: `#/pending/${encodeURIComponent(d.requestId)}` }, visible(d.requestId.slice(0, 8)))] : null),
            h('td', h('code', visible(d.target))),
            h('td', badge(d.status === 'pending' && d.attempts > 0 ? 'failing' : d.status === 'failed' ? 'given up' : d.status, d.status === 'pending' && d.attempts > 0 ? 'warn' : (STATUS_KIND[d.status] ?? ''))),
            h('td', String(d.attempts)),
            h('td', time(d.createdAt)),
            h('td', d.lastError ? visible(d.lastError) : h('span.muted', '—')),
            h('td', h('code.size', visible(d.idempotencyKey))),
          ),
        ),
      ),
    ),
  );
}
