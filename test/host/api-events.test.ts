/**
 * The event-stream machinery at its limits, on a real HTTP server with a stand-in host: keep-alive
 * comments, a reader that stops reading is cut once `maxBufferedBytes` is queued (and its
 * subscription dropped), a client that goes away unsubscribes, `closeAll` ends open streams, and
 * the journal replays without gaps or duplicates and keeps at most `maxEvents` log lines.
 */
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type EventSources, EventStreams } from '../../host/api/events.js';
import { type RunEvent, type RunEventListener, RunJournal } from '../../host/runs/run-journal.js';
import type { RunRecord } from '../../host/model.js';

const RUN = { id: 'r1', subject: undefined, imageName: 'x', status: 'running', input: null, createdAt: 0 } satisfies RunRecord;

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

async function serve(streams: EventStreams, journal: RunJournal): Promise<string> {
  const sources = { runs: { followRun: (id: string, l: RunEventListener) => journal.follow(id, l) } } as unknown as EventSources;
  server = createServer((req, res) => void streams.serve(req, res, sources, RUN));
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const log = (message: string): RunEvent => ({ type: 'log', line: { level: 'log', message, atMs: 0 } });

describe('event streams', () => {
  it('sends keep-alive comments, and a vanished client unsubscribes', async () => {
    const journal = new RunJournal();
    journal.open('r1');
    const streams = new EventStreams({ heartbeatMs: 20, maxBufferedBytes: 1024 * 1024 });
    const base = await serve(streams, journal);
    const controller = new AbortController();
    const res = await fetch(`${base}/`, { signal: controller.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!text.includes(': keep-alive')) text += new TextDecoder().decode((await reader.read()).value);
    expect(streams.size).toBe(1);
    controller.abort();
    await expect.poll(() => streams.size).toBe(0);
    journal.push('r1', log('after the client left')); // no listener left to throw on a dead socket
  });

  it('cuts a reader that stops reading once maxBufferedBytes is queued, and drops its subscription', async () => {
    const journal = new RunJournal();
    journal.open('r1');
    const streams = new EventStreams({ heartbeatMs: 60_000, maxBufferedBytes: 256 * 1024 });
    const base = await serve(streams, journal);
    const url = new URL(base);
    const socket = connect(Number(url.port), url.hostname);
    socket.write(`GET / HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    socket.pause(); // never read: the kernel buffers fill, then the server's
    await expect.poll(() => streams.size).toBe(1);
    const closed = new Promise((r) => socket.once('close', r));
    socket.on('error', () => undefined);
    const big = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 2000 && streams.size > 0; i++) {
      journal.push('r1', log(big));
      await new Promise((r) => setImmediate(r));
    }
    expect(streams.size).toBe(0);
    socket.resume();
    await closed;
  });

  it('closeAll ends every open stream', async () => {
    const journal = new RunJournal();
    journal.open('r1');
    const streams = new EventStreams({ heartbeatMs: 60_000, maxBufferedBytes: 1024 * 1024 });
    const base = await serve(streams, journal);
    const res = await fetch(`${base}/`);
    const body = res.text();
    await expect.poll(() => streams.size).toBe(1);
    streams.closeAll();
    expect(typeof (await body)).toBe('string');
    expect(streams.size).toBe(0);
  });
});

describe('RunJournal', () => {
  it('replays then streams, with nothing missed or doubled; ends with the outcome; bounded replay', () => {
    const journal = new RunJournal(3, { keepEndedRuns: 0 });
    journal.open('r1');
    journal.push('r1', log('a'));
    journal.push('nobody', log('ignored'));
    const seen: RunEvent[] = [];
    const follow = journal.follow('r1', (e) => seen.push(e));
    expect(follow?.replay).toEqual([{ ...log('a'), id: 1 }]);
    for (const m of ['b', 'c', 'd']) journal.push('r1', log(m));
    expect(seen.map((e) => (e.type === 'log' ? e.line.message : e.type))).toEqual(['b', 'c', 'd']);
    // Only 3 kept for late followers; the final event always is.
    expect(journal.follow('r1', () => undefined)?.replay.map((e) => (e.type === 'log' ? e.line.message : e.type))).toEqual(['a', 'b', 'c']);
    journal.end('r1', { type: 'outcome', run: RUN });
    expect(seen.at(-1)?.type).toBe('outcome');
    expect(journal.follow('r1', () => undefined)).toBeUndefined();
    expect(journal.size).toBe(0);
  });

  it('numbers every event of a run from 1 (log lines it does not keep included), so ids stay the same for every follower', () => {
    const journal = new RunJournal(2);
    journal.open('r1');
    const live: number[] = [];
    journal.follow('r1', (e) => live.push(e.id));
    for (const m of ['a', 'b', 'c', 'd']) journal.push('r1', log(m));
    journal.push('r1', { type: 'run', run: RUN });
    expect(live).toEqual([1, 2, 3, 4, 5]);
    expect(journal.follow('r1', () => undefined)?.replay.map((e) => e.id)).toEqual([1, 2, 5]);
  });

  it('keeps the journal of an ended run for keepEndedMs, at most keepEndedRuns of them, for resuming streams', () => {
    let now = 0;
    const journal = new RunJournal(100, { keepEndedMs: 1_000, keepEndedRuns: 2, now: () => now });
    for (const id of ['r1', 'r2', 'r3']) {
      journal.open(id);
      journal.push(id, log(id));
      journal.end(id, { type: 'outcome', run: { ...RUN, id } });
      now += 100;
    }
    expect(journal.size).toBe(0);
    // r1 was dropped for r3 (count); r2 and r3 are kept, ended, up to their outcome.
    expect(journal.follow('r1', () => undefined)).toBeUndefined();
    const r2 = journal.follow('r2', () => expect.unreachable());
    expect(r2).toMatchObject({ ended: true });
    expect(r2?.replay.map((e) => [e.id, e.type])).toEqual([[1, 'log'], [2, 'outcome']]);
    now = 1_150; // r2 ended at 100: more than keepEndedMs ago; r3 (200) not yet
    expect(journal.follow('r2', () => undefined)).toBeUndefined();
    expect(journal.follow('r3', () => undefined)?.ended).toBe(true);
  });
});
