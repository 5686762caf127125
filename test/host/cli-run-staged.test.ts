/**
 * `contained run --staged`: the program runs to completion against a staged view (its reads see
 * its own writes), the changeset is printed (or carried in --json), and nothing real changes —
 * the files stay, the maildir stays empty.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = path.resolve('bin/contained.js');
let dir: string;

function contained(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000, cwd: dir }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'contained-run-staged-'));
  await mkdir(path.join(dir, 'notes'));
  await writeFile(path.join(dir, 'notes', 'a.txt'), 'hello\n');
  await writeFile(
    path.join(dir, 'agent.js'),
    `export default async (input, caps) => {
      const text = await caps.notes.read('a.txt');
      await caps.notes.write({ path: 'a.txt', content: text.toUpperCase() });
      const sent = await caps.mail.send({ to: 'team@example.com', subject: 'shout', text: await caps.notes.read('a.txt') });
      return { a: await caps.notes.read('a.txt'), sent };
    }`,
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('contained run --staged', () => {
  const grants = ['--grant', 'notes=fs:{"root":"./notes"}', '--grant', 'mail=outbox:{"from":"agent@example.com","allowedRecipients":["@example.com"]}', '--maildir', 'mail'];

  it('prints the changeset and commits nothing', async () => {
    const res = await contained(['run', 'agent.js', '--staged', ...grants]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('"a": "HELLO\\n"');
    expect(res.stdout).toContain('"staged": true');
    expect(res.stdout).toContain('staged: 2 effects, none committed:');
    expect(res.stdout).toContain('- "hello"');
    expect(res.stdout).toContain('+ "HELLO"');
    expect(res.stdout).toContain('Subject: "shout"');
    expect(readFileSync(path.join(dir, 'notes', 'a.txt'), 'utf8')).toBe('hello\n');
    expect(existsSync(path.join(dir, 'mail', 'new')) ? readdirSync(path.join(dir, 'mail', 'new')) : []).toEqual([]);
  });

  it('--json carries the changeset', async () => {
    const res = await contained(['run', 'agent.js', '--staged', '--json', ...grants]);
    const out = JSON.parse(res.stdout) as { status: string; changeset: { effects: Array<{ capability: string; method: string }> } };
    expect(out.status).toBe('ok');
    expect(out.changeset.effects.map((e) => `${e.capability}.${e.method}`)).toEqual(['notes.write', 'mail.send']);
  });
});
