/**
 * The bytes a delivery sends, made from the outbox row when it is sent: the JSON event (`json`), a
 * Slack message (`slack`: `{ text }` in Slack's mrkdwn) or a Teams message (`teams`: an Adaptive
 * Card, which Teams incoming webhooks and workflow webhooks accept), and the email's subject and
 * text. Every one carries the console link of its request (login is still required to open it).
 *
 * Defends against agent-written text (a request's reason, a deny reason) passing for the host's own
 * lines in a chat: it is escaped for the target's markup (Slack's `<`, `>`, `&`; Teams' markdown),
 * quoted, and labelled as written by the agent; it is cut to `MAX_AGENT_TEXT` characters.
 */
import type { OutboxRow } from '../store/notify-outbox.js';

/** Longest agent-written text put in a chat message or an email, characters. */
export const MAX_AGENT_TEXT = 500;

export interface Rendered {
  body: string;
  contentType: string;
}

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The console page a notification opens: a request's own card, or the trust page. */
export function linkFor(row: Pick<OutboxRow, 'payload'>, consoleUrl: string | undefined): string | undefined {
  if (consoleUrl === undefined) return undefined;
  const base = consoleUrl.endsWith('/') ? consoleUrl : `${consoleUrl}/`;
  const id = str(obj(row.payload.request)?.id);
  if (id !== undefined) return `${base}#/pending/${encodeURIComponent(id)}`;
  if (obj(row.payload.mcpTool)) return `${base}#/mcp-tools`;
  return `${base}#/trust`;
}

function clip(text: string): string {
  return text.length > MAX_AGENT_TEXT ? `${text.slice(0, MAX_AGENT_TEXT)}… (${text.length} characters)` : text;
}

function riskWords(risk: unknown): string {
  const r = obj(risk);
  if (!r) return 'unknown (worst case)';
  const words: string[] = [];
  if (r.destructive === true) words.push('destructive');
  if (r.financial === true) words.push('financial');
  if (r.reversible === false) words.push('irreversible');
  if (r.openWorld === true) words.push('open world');
  if (r.readOnly === true) words.push('read-only');
  return words.length > 0 ? words.join(', ') : 'none flagged';
}

interface Lines {
  title: string;
  facts: Array<[string, string]>;
  /** Agent-written text: label → text (escaped by each format). */
  quoted: Array<[string, string]>;
}

/** What every format says, in plain words. */
export function describe(row: Pick<OutboxRow, 'event' | 'payload'>): Lines {
  const p = row.payload;
  const r = obj(p.request);
  if (r) {
    const action = `${str(r.capability) ?? '?'}${str(r.method) ? `.${str(r.method)}` : ' (more capability)'}`;
    const status = str(r.status) ?? '';
    const title =
      row.event === 'request.created'
        ? `Approval needed: ${action}`
        : row.event === 'request.expired'
          ? `Request expired undecided: ${action}`
          : `Request ${status.replace('_', ' ')}: ${action}`;
    const facts: Array<[string, string]> = [
      ['request', str(r.id) ?? ''],
      ['kind', str(r.kind) ?? ''],
      ['run', str(r.runId) ?? ''],
      ['why', str(r.why) ?? ''],
      ['risk', riskWords(r.risk)],
      ['approvals', `${Array.isArray(r.approvedBy) ? r.approvedBy.length : 0} of ${String(r.approvalsRequired ?? '?')}`],
      ['arguments digest', str(r.argsDigest) ?? ''],
    ];
    if (Array.isArray(r.resolvedBy) && r.resolvedBy.length > 0) facts.push(['by', r.resolvedBy.map(String).join(', ')]);
    if (row.event === 'request.created' && typeof r.expiresAt === 'number') facts.push(['expires', new Date(r.expiresAt).toISOString()]);
    const quoted: Array<[string, string]> = [];
    if (str(r.reason)) quoted.push(['Agent’s reason (written by the agent)', clip(str(r.reason) as string)]);
    if (str(r.denyReason)) quoted.push(['Deny reason', clip(str(r.denyReason) as string)]);
    return { title, facts, quoted };
  }
  const m = obj(p.mcpTool);
  if (m) {
    const name = `${str(m.capability) ?? '?'}/${str(m.tool) ?? '?'}`;
    const differs = Array.isArray(m.differs) ? m.differs.map(String).join(', ') : '';
    return {
      title: m.change === 'new' ? `New MCP tool not offered until accepted: ${name}` : `MCP tool withdrawn until accepted: ${name}`,
      facts: [
        ['capability', str(m.capability) ?? ''],
        ['tool', str(m.tool) ?? ''],
        ['change', m.change === 'new' ? 'new tool' : `changed (${differs})`],
        ['fingerprint', str(m.fingerprint) ?? ''],
      ],
      quoted: str(m.description) ? [['Description (written by the MCP server)', clip(str(m.description) as string)]] : [],
    };
  }
  const d = obj(p.demotion);
  if (d) {
    return {
      title: `Demoted to assisted: ${str(d.capability) ?? '?'}.${str(d.method) ?? '?'}`,
      facts: [
        ['subject', str(d.subject) ?? ''],
        ['trigger', str(d.trigger) ?? ''],
        ['reason', str(d.reason) ?? ''],
        ['by', str(d.by) ?? ''],
      ],
      quoted: [],
    };
  }
  const pr = obj(p.promotion);
  return {
    title: `Promotion proposed: ${str(pr?.capability) ?? '?'}.${str(pr?.method) ?? '?'} to executed`,
    facts: [
      ['proposal', str(pr?.id) ?? ''],
      ['subject', str(pr?.subject) ?? ''],
      ['grant', str(pr?.grantId) ?? ''],
    ],
    quoted: [],
  };
}

const slackEscape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const markdownEscape = (s: string): string => s.replace(/[\\`*_{}[\]()#+\-.!|<>~]/g, (c) => `\\${c}`);

function slack(row: OutboxRow, link: string | undefined): Obj {
  const d = describe(row);
  const lines = [`*${slackEscape(d.title)}*`, ...d.facts.map(([k, v]) => `${k}: ${slackEscape(v)}`)];
  for (const [label, text] of d.quoted) lines.push(`_${label}:_`, ...text.split('\n').map((l) => `> ${slackEscape(l)}`));
  if (link) lines.push(`Open in the console (login required): <${link}|${slackEscape(link)}>`);
  return { text: lines.join('\n') };
}

function teams(row: OutboxRow, link: string | undefined): Obj {
  const d = describe(row);
  const body: Obj[] = [
    { type: 'TextBlock', text: markdownEscape(d.title), weight: 'Bolder', size: 'Medium', wrap: true },
    { type: 'FactSet', facts: d.facts.map(([title, value]) => ({ title, value: markdownEscape(value) })) },
  ];
  for (const [label, text] of d.quoted) {
    body.push({ type: 'TextBlock', text: markdownEscape(label), isSubtle: true, wrap: true });
    body.push({ type: 'Container', style: 'emphasis', items: [{ type: 'TextBlock', text: markdownEscape(text), wrap: true }] });
  }
  const card: Obj = { $schema: 'http://adaptivecards.io/schemas/adaptive-card.json', type: 'AdaptiveCard', version: '1.4', body };
  if (link) card.actions = [{ type: 'Action.OpenUrl', title: 'Open in the console', url: link }];
  return { type: 'message', attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null, content: card }] };
}

/** The body of one webhook delivery. */
export function renderWebhook(row: OutboxRow, format: 'json' | 'slack' | 'teams', consoleUrl: string | undefined): Rendered {
  const link = linkFor(row, consoleUrl);
  let value: Obj;
  if (format === 'slack') value = slack(row, link);
  else if (format === 'teams') value = teams(row, link);
  else value = { id: row.idempotencyKey, event: row.event, ...row.payload, ...(link ? { url: link } : {}) };
  return { body: JSON.stringify(value), contentType: 'application/json' };
}

/** The email of one delivery: a subject line and plain text. */
export function renderEmail(row: OutboxRow, consoleUrl: string | undefined): { subject: string; text: string } {
  const d = describe(row);
  const link = linkFor(row, consoleUrl);
  const width = Math.max(...d.facts.map(([k]) => k.length));
  const lines = [d.title, '', ...d.facts.map(([k, v]) => `${k.padEnd(width)}  ${v}`)];
  for (const [label, text] of d.quoted) lines.push('', `${label}:`, ...text.split('\n').map((l) => `  | ${l}`));
  if (link) lines.push('', 'Open it in the console (you will be asked to log in):', link);
  lines.push('', `-- contained · notification ${row.idempotencyKey}`);
  // One line: a subject never carries a line break (header injection).
  return { subject: `[contained] ${d.title}`.replace(/[\r\n]+/g, ' ').slice(0, 200), text: `${lines.join('\n')}\n` };
}
