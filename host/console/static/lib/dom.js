// DOM helpers. Everything the console shows is built with createElement and textContent: there is
// no innerHTML anywhere, so agent-controlled text (arguments, reasons, logs) can never become markup.
// `visible()` additionally shows invisible and bidi control characters as labelled marks, so a
// hostile argument cannot hide text or reverse what the operator reads (an RLO in an address).

/** h('div.card#x', { attrs, on: { click }, dataset }, ...children) */
export function h(tag, props, ...children) {
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name || 'div');
  for (const part of rest) {
    if (part.startsWith('.')) el.classList.add(part.slice(1));
    else if (part.startsWith('#')) el.id = part.slice(1);
  }
  if (props && (typeof props !== 'object' || props instanceof Node || Array.isArray(props))) {
    children.unshift(props);
    props = undefined;
  }
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'class') el.className = value;
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// C0/C1 controls (except tab and newline), zero-width characters, bidi embeddings/overrides/isolates, BOM.
const HIDDEN = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u00AD\u200B-\u200F\u2028-\u202E\u2060-\u2069\uFEFF]/g;

/** A fragment of text in which every invisible or direction-changing character is a visible mark. */
export function visible(text) {
  const s = String(text);
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const match of s.matchAll(HIDDEN)) {
    if (match.index > last) frag.append(s.slice(last, match.index));
    const code = match[0].codePointAt(0).toString(16).toUpperCase().padStart(4, '0');
    frag.append(h('span.ctl', { title: `hidden character U+${code}` }, `U+${code}`));
    last = match.index + match[0].length;
  }
  if (last < s.length) frag.append(s.slice(last));
  return frag;
}

export function hasHidden(text) {
  HIDDEN.lastIndex = 0;
  return HIDDEN.test(String(text));
}

export function json(value) {
  return JSON.stringify(value, null, 2) ?? 'undefined';
}

export function shortDigest(digest) {
  if (typeof digest !== 'string') return '—';
  return digest.replace(/^sha256:([0-9a-f]{12})[0-9a-f]+$/, 'sha256:$1…');
}

export function time(ms) {
  if (typeof ms !== 'number') return '—';
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

export function relative(ms, now = Date.now()) {
  const diff = ms - now;
  const abs = Math.abs(diff);
  const unit = abs < 60_000 ? [Math.round(abs / 1000), 's'] : abs < 3_600_000 ? [Math.round(abs / 60_000), 'min'] : abs < 86_400_000 ? [Math.round(abs / 3_600_000), 'h'] : [Math.round(abs / 86_400_000), 'd'];
  return diff >= 0 ? `in ${unit[0]} ${unit[1]}` : `${unit[0]} ${unit[1]} ago`;
}

export function duration(ms) {
  if (typeof ms !== 'number') return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** A short text toast (role=status region). */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const el = h(`div.toast.${kind}`, visible(message));
  box.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 9000 : 5000);
}

/** Is the user typing (keyboard shortcuts must not fire)? */
export function typing(event) {
  const t = event.target;
  return t instanceof HTMLElement && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName));
}

export function badge(text, kind = '') {
  return h(`span.badge${kind ? `.${kind}` : ''}`, text);
}

/** A page section with a heading and optional note. */
export function section(title, ...children) {
  return h('section.page', h('h1', title), ...children);
}

export function notice(text, kind = 'info') {
  return h(`p.notice.${kind}`, text);
}
