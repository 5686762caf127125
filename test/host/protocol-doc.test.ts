/**
 * docs/protocol.md against the protocol's zod schemas (host/operator/protocol.ts): every ```json
 * block parses as JSON and validates against the schema of its direction — under "Server → client"
 * a message with a `type` is a server message and one without is a request view (`RequestView`);
 * under "Client → server" it is a client message. So the doc cannot drift from what the host
 * sends and accepts: a renamed field, a new required one or an example that would be refused fails
 * here, and the fix goes to whichever side is wrong.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { clientMessageSchema, requestViewSchema, serverMessageSchema } from '../../host/operator/protocol.js';

const DOC = new URL('../../docs/protocol.md', import.meta.url);

interface Example {
  line: number;
  section: string;
  text: string;
}

function examples(markdown: string): Example[] {
  const out: Example[] = [];
  const lines = markdown.split('\n');
  let section = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line.startsWith('## ')) section = line.slice(3).trim();
    if (line.trim() !== '```json') continue;
    const start = i + 1;
    const body: string[] = [];
    for (i = start; i < lines.length && lines[i]?.trim() !== '```'; i++) body.push(lines[i] ?? '');
    out.push({ line: start, section, text: body.join('\n') });
  }
  return out;
}

const all = examples(readFileSync(DOC, 'utf8'));

function schemaFor(example: Example, value: unknown) {
  if (example.section === 'Server → client messages') {
    const typed = typeof value === 'object' && value !== null && 'type' in value;
    return typed ? { name: 'serverMessageSchema', schema: serverMessageSchema } : { name: 'requestViewSchema', schema: requestViewSchema };
  }
  if (example.section === 'Client → server messages') return { name: 'clientMessageSchema', schema: clientMessageSchema };
  return undefined;
}

describe('docs/protocol.md examples', () => {
  it('has examples in both directions', () => {
    expect(all.filter((e) => e.section === 'Server → client messages').length).toBeGreaterThanOrEqual(10);
    expect(all.filter((e) => e.section === 'Client → server messages').length).toBeGreaterThanOrEqual(8);
  });

  it.each(all.map((e) => [`line ${e.line}`, e] as const))('%s parses and matches its schema', (_label, example) => {
    let value: unknown;
    try {
      value = JSON.parse(example.text);
    } catch (error) {
      throw new Error(`docs/protocol.md line ${example.line}: not one JSON value: ${(error as Error).message}`);
    }
    const target = schemaFor(example, value);
    if (target === undefined) throw new Error(`docs/protocol.md line ${example.line}: a json example outside the two message sections (${example.section})`);
    const parsed = target.schema.safeParse(value);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      throw new Error(`docs/protocol.md line ${example.line} (${target.name}): ${issues}`);
    }
  });
});
