// The console's entry point: session bootstrap (login form, or a one-time login link
// `/console/login#code=…`), the live state fed by the operator channel, the hash router, and the
// global keyboard shortcuts. Pages live in ./pages/*.js; each exports mount(root, ctx).
import { api, setCsrf } from './lib/api.js';
import { Channel } from './lib/channel.js';
import { clear, h, toast, typing } from './lib/dom.js';
import * as login from './pages/login.js';
import * as pending from './pages/pending.js';
import * as runs from './pages/runs.js';
import * as grants from './pages/grants.js';
import * as review from './pages/review.js';
import * as trust from './pages/trust.js';
import * as audit from './pages/audit.js';
import * as notifications from './pages/notify.js';
import * as passkeys from './pages/passkeys.js';
import * as mcpTools from './pages/mcp-tools.js';

const PAGES = { pending, runs, grants, review, trust, audit, notify: notifications, passkeys, 'mcp-tools': mcpTools };
const ORDER = ['pending', 'runs', 'grants', 'review', 'trust', 'audit', 'notify', 'passkeys', 'mcp-tools'];
const RANK = { viewer: 1, approver: 2, admin: 3 };

/** Live state shared by the pages. */
const state = {
  me: undefined,
  channel: undefined,
  pending: new Map(),
  runs: new Map(),
  grants: undefined,
  can(role) {
    return (RANK[this.me?.role] ?? 0) >= RANK[role];
  },
};

let current;
const main = document.getElementById('main');

function notify(event) {
  if (current?.update) current.update(event);
  const count = document.getElementById('pending-count');
  count.textContent = state.pending.size > 0 ? String(state.pending.size) : '';
}

function onChannel(message) {
  switch (message.type) {
    case 'state':
      showLink(message.state);
      if (message.state === 'signed-out') return signedOut('Your session ended. Log in again.');
      if (message.state === 'live') void loadLists();
      break;
    case 'snapshot.complete':
      state.pending = new Map(message.requests.map((r) => [r.id, r]));
      break;
    case 'created':
    case 'updated':
      if (message.request.status === 'pending') state.pending.set(message.request.id, message.request);
      break;
    case 'resolved': {
      const r = message.request;
      const had = state.pending.delete(r.id);
      if (had) toast(`${r.capability}${r.method ? `.${r.method}` : ''} ${r.status.replace('_', ' ')}${r.resolvedBy?.length ? ` by ${r.resolvedBy.join(' + ')}` : ''}`, r.status === 'approved' ? 'ok' : 'warn');
      break;
    }
    case 'run':
      state.runs.set(message.run.id, message.run);
      break;
    case 'grant':
      state.grants?.set(message.grant.id, message.grant);
      break;
    default:
      break;
  }
  notify(message);
}

async function loadLists() {
  try {
    const { runs: list } = await state.channel.request('runs.list', { limit: 200 });
    state.runs = new Map(list.map((r) => [r.id, r]));
  } catch (error) {
    toast(`runs: ${error.message}`, 'error');
  }
  if (state.can('admin')) {
    try {
      const { grants: list } = await state.channel.request('grants.list');
      state.grants = new Map(list.map((g) => [g.id, g]));
    } catch (error) {
      toast(`grants: ${error.message}`, 'error');
    }
  }
  notify({ type: 'lists' });
}

function showLink(s) {
  const el = document.getElementById('link-state');
  el.hidden = false;
  el.dataset.state = s;
  el.textContent = { connecting: 'connecting…', reconnecting: 'reconnecting…', live: 'live', 'signed-out': 'signed out' }[s] ?? s;
}

function route() {
  if (!state.me) return;
  // `#/page` or `#/page/param` (a notification's link: `#/pending/<request id>`).
  const [name, ...rest] = (location.hash.replace(/^#\/?/, '') || 'pending').split('/');
  const page = PAGES[name] ? name : 'pending';
  let param;
  try {
    param = rest.length > 0 ? decodeURIComponent(rest.join('/')) : undefined;
  } catch {
    param = undefined; // a malformed %-escape in a hand-edited link: open the page without it
  }
  if (current?.unmount) current.unmount();
  for (const a of document.querySelectorAll('#nav a')) a.setAttribute('aria-current', a.dataset.page === page ? 'page' : 'false');
  clear(main);
  current = PAGES[page].mount(main, state, param);
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · contained`;
}

async function start(session) {
  setCsrf(session.csrf);
  state.me = session.operator;
  document.getElementById('nav').hidden = false;
  const who = document.getElementById('whoami');
  who.hidden = false;
  who.textContent = `${session.operator.name} · ${session.operator.role}`;
  document.getElementById('logout').hidden = false;
  state.channel = new Channel();
  state.channel.on(onChannel);
  void state.channel.connect();
  if (!location.hash || location.hash === '#') history.replaceState(null, '', '/console/#/pending');
  route();
}

function signedOut(message) {
  state.channel?.close();
  state.channel = undefined;
  state.me = undefined;
  state.pending = new Map();
  state.runs = new Map();
  state.grants = undefined;
  setCsrf('');
  if (current?.unmount) current.unmount();
  current = undefined;
  document.getElementById('nav').hidden = true;
  document.getElementById('whoami').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('link-state').hidden = true;
  clear(main);
  login.mount(main, { message, onLogin: start });
}

async function logout() {
  try {
    await api.post('/console/api/logout', {});
  } catch (error) {
    if (error.status !== 401) return toast(`logout failed: ${error.message}`, 'error');
  }
  history.replaceState(null, '', '/console/');
  signedOut('Logged out.');
}

function helpOverlay() {
  const existing = document.getElementById('help');
  if (existing) return existing.remove();
  const rows = [
    ['1 – 9', 'Pending, Runs, Grants, Review, Trust, Audit, Notifications, Passkeys, MCP tools'],
    ['j / k', 'next / previous item'],
    ['a', 'approve the selected request'],
    ['e', 'edit, then approve'],
    ['d', 'deny (with a reason)'],
    ['Ctrl+Enter', 'submit the open form'],
    ['Esc', 'close the open form'],
    ['?', 'this help'],
  ];
  const box = h('div#help.help', { role: 'dialog', 'aria-label': 'Keyboard shortcuts', tabindex: -1 }, h('h2', 'Keyboard shortcuts'), h('table', rows.map(([k, v]) => h('tr', h('th', h('kbd', k)), h('td', v)))), h('p.muted', 'Press ? or Esc to close.'));
  document.body.append(box);
  box.focus();
}

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && document.getElementById('help')) return document.getElementById('help').remove();
  if (!state.me || typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === '?') return helpOverlay();
  const n = Number(event.key);
  if (n >= 1 && n <= ORDER.length) {
    location.hash = `#/${ORDER[n - 1]}`;
    return;
  }
  if (current?.key) current.key(event);
});

window.addEventListener('hashchange', route);
document.getElementById('logout').addEventListener('click', () => void logout());

async function boot() {
  const code = /^#code=([A-Za-z0-9_-]+)$/.exec(location.hash)?.[1];
  if (code) {
    // A one-time login link: take the code out of the address bar before anything else.
    history.replaceState(null, '', '/console/#/pending');
    try {
      return await start(await api.post('/console/api/login', { code }));
    } catch (error) {
      return signedOut(`That login link did not work (${error.message}). Links work once; log in with a token.`);
    }
  }
  try {
    await start(await api.get('/console/api/session'));
  } catch (error) {
    signedOut(error.status === 401 ? '' : `Cannot reach the host: ${error.message}`);
  }
}

void boot();
