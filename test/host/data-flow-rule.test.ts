/**
 * The data-flow rule's pieces without a host: which instances reach a sensitive source (each
 * kind's `overlaps`, on real folders, SQLite files and kv files, links included), what a tainted
 * run's calls get, and the sources a host refuses at start.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClock } from '../../capabilities/clock/index.js';
import { createFs } from '../../capabilities/fs/index.js';
import { createKv } from '../../capabilities/kv/index.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { createSql } from '../../capabilities/sql/index.js';
import { parseHostConfig } from '../../host/config.js';
import { compileDataFlow } from '../../host/gate/data-flow.js';
import { dataFlowConfigSchema, type DataFlowConfig } from '../../host/gate/data-flow-config.js';

let dir: string;
let instances: Map<string, CapabilityInstance>;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'contained-dataflow-rule-'));
  const db = new Database(path.join(dir, 'crm.db'));
  db.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY); CREATE TABLE orders (id INTEGER PRIMARY KEY);');
  db.close();
  for (const sub of ['data/hr/2026', 'data/public']) mkdirSync(path.join(dir, sub), { recursive: true });
  // A second path to the hr folder: a link outside the data folder.
  symlinkSync(path.join(dir, 'data', 'hr'), path.join(dir, 'hr-link'));
  const crm = path.join(dir, 'crm.db');
  const kvFile = path.join(dir, 'kv.db');
  instances = new Map<string, CapabilityInstance>([
    ['crm', createSql({ file: crm, tables: ['customers', 'orders'] }, {}, { name: 'crm' })],
    ['customers', createSql({ file: crm, tables: ['CUSTOMERS'] }, {}, { name: 'customers' })],
    ['orders', createSql({ file: crm, tables: ['orders'] }, {}, { name: 'orders' })],
    ['data', createFs({ root: path.join(dir, 'data') }, {}, { name: 'data' })],
    ['hrYear', createFs({ root: path.join(dir, 'data', 'hr', '2026') }, {}, { name: 'hrYear' })],
    ['hrLink', createFs({ root: path.join(dir, 'hr-link') }, {}, { name: 'hrLink' })],
    ['public', createFs({ root: path.join(dir, 'data', 'public') }, {}, { name: 'public' })],
    ['onlyPublic', createFs({ root: path.join(dir, 'data'), paths: ['public'] }, {}, { name: 'onlyPublic' })],
    ['kvAll', createKv({ file: kvFile, namespace: 'a' }, {}, { name: 'kvAll' })],
    ['kvCust', createKv({ file: kvFile, namespace: 'a', prefix: 'cust/vip/' }, {}, { name: 'kvCust' })],
    ['kvTmp', createKv({ file: kvFile, namespace: 'a', prefix: 'tmp/' }, {}, { name: 'kvTmp' })],
    ['kvOther', createKv({ file: kvFile, namespace: 'b' }, {}, { name: 'kvOther' })],
    ['clock', createClock({}, {}, { name: 'clock' })],
  ]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function rule(sensitive: DataFlowConfig['sensitive'], afterSensitive: 'escalate' | 'deny' = 'escalate') {
  return compileDataFlow(dataFlowConfigSchema.parse({ afterSensitive, sensitive }), instances);
}

/** The bindings whose calls to `method` read the source. */
function reaching(sensitive: DataFlowConfig['sensitive'], method: string): string[] {
  const r = rule(sensitive);
  return [...instances.keys()].filter((name) => r.sourcesOf(name, method).length > 0);
}

const OPEN = { readOnly: false, destructive: true, reversible: false, openWorld: true, financial: false };
const LOCAL = { ...OPEN, openWorld: false };

describe('which instances reach a sensitive source', () => {
  it('sql: every binding of the same file that lists the table (any case), not one without it', () => {
    expect(reaching([{ label: 'customers', capability: 'crm', scope: { tables: ['customers'] }, methods: ['query'] }], 'query')).toEqual(['crm', 'customers']);
    // Only the methods named count.
    expect(reaching([{ label: 'customers', capability: 'crm', scope: { tables: ['customers'] }, methods: ['query'] }], 'execute')).toEqual([]);
  });

  it('fs: the folder, folders above and under it, a link to it; not a sibling, nor a binding limited to a sibling', () => {
    expect(reaching([{ label: 'hr', capability: 'data', scope: { paths: ['hr'] } }], 'read')).toEqual(['data', 'hrYear', 'hrLink']);
    expect(reaching([{ label: 'hr', capability: 'hrLink' }], 'read')).toEqual(['data', 'hrYear', 'hrLink']);
  });

  it('kv: the same file and namespace with a prefix that extends or is extended by the source\'s; not another prefix or namespace', () => {
    expect(reaching([{ label: 'cust', capability: 'kvAll', scope: { prefix: 'cust/' } }], 'get')).toEqual(['kvAll', 'kvCust']);
  });

  it('a kind without an overlaps hook: every instance of the kind counts', () => {
    expect(reaching([{ label: 'time', capability: 'clock' }], 'now')).toEqual(['clock']);
  });
});

describe('a run\'s taint', () => {
  it('starts with a sensitive call, names each source once in the order read, and concerns open-world calls only', () => {
    const r = rule([
      { label: 'customers', capability: 'crm', scope: { tables: ['customers'] }, methods: ['query'] },
      { label: 'hr', capability: 'hrYear' },
    ]);
    const run = {};
    expect(r.check(run, { risk: OPEN })).toBeUndefined();
    expect(r.received(run, { capability: 'orders', method: 'query' })).toEqual([]);
    expect(r.check(run, { risk: OPEN })).toBeUndefined();
    expect(r.received(run, { capability: 'customers', method: 'query' })).toEqual(['customers']);
    expect(r.received(run, { capability: 'crm', method: 'query' })).toEqual([]);
    expect(r.received(run, { capability: 'data', method: 'list' })).toEqual(['hr']);
    expect(r.readsOf(run)).toEqual(['customers', 'hr']);
    expect(r.check(run, { risk: LOCAL })).toBeUndefined();
    expect(r.check(run, { risk: OPEN })).toEqual({ action: 'escalate', sources: ['customers', 'hr'], reason: 'this run read customers, hr (sensitive) before this call' });
    // Another run is untouched.
    expect(r.check({}, { risk: OPEN })).toBeUndefined();
    expect(rule([{ label: 'hr', capability: 'hrYear' }], 'deny').check(run, { risk: OPEN })).toBeUndefined();
    const denying = rule([{ label: 'hr', capability: 'hrYear' }], 'deny');
    denying.received(run, { capability: 'hrYear', method: 'read' });
    expect(denying.check(run, { risk: OPEN })?.action).toBe('deny');
  });
});

describe('sources a host refuses at start', () => {
  it('an unknown capability or method, a scope wider than the instance, a label that is not one line, an unknown key', () => {
    expect(() => rule([{ label: 'x', capability: 'nope' }])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('dataFlow.sensitive.0.capability') }));
    expect(() => rule([{ label: 'x', capability: 'crm', methods: ['drop'] }])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('no method "drop"') }));
    expect(() => rule([{ label: 'x', capability: 'customers', scope: { tables: ['orders'] } }])).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE', message: expect.stringContaining('dataFlow.sensitive.0.scope') }));
    expect(() => rule([{ label: 'x', capability: 'public', scope: { root: path.join(dir, 'data') } }])).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
    expect(dataFlowConfigSchema.safeParse({ sensitive: [{ label: 'two\nlines', capability: 'crm' }] }).success).toBe(false);
    expect(dataFlowConfigSchema.safeParse({ sensitive: [{ label: 'x', capability: 'crm', tables: ['customers'] }] }).success).toBe(false);
    expect(dataFlowConfigSchema.safeParse({ afterSensitive: 'allow' }).success).toBe(false);
  });

  it('the host config takes the section, off by default', () => {
    const base = { dataDir: dir, capabilities: {} };
    expect(parseHostConfig(base, dir).dataFlow).toEqual({ afterSensitive: 'escalate', sensitive: [] });
    expect(() => parseHostConfig({ ...base, dataFlow: { afterSensitive: 'never' } }, dir)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
