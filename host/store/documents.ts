/**
 * The store's documents (Store.getDocument/putDocument) as the documents a capability kind may keep
 * its state in (capabilities/plugin.ts `CapabilityDocuments`): the stamp is the document's
 * version, so a compare-and-set holds across every host of a fleet. `writer` names this host in
 * the documents each host keeps of its own (`writerFor`: stable per data folder and machine).
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { CapabilityDocuments } from '../../capabilities/plugin.js';
import type { Store } from './store.js';

export function storeDocuments(store: Pick<Store, 'getDocument' | 'putDocument' | 'listDocuments'>, now: () => number = Date.now, writer?: string): CapabilityDocuments {
  return {
    ...(writer === undefined ? {} : { writer }),
    async get(key) {
      const doc = await store.getDocument(key);
      return doc === undefined ? undefined : { text: doc.text, stamp: String(doc.version) };
    },
    put: (key, text, expect) => {
      // A stamp that is not a version this store gave out matches nothing.
      const version = expect === undefined || expect === null ? expect : /^[1-9][0-9]*$/.test(expect) ? Number(expect) : -1;
      return store.putDocument(key, text, now(), version);
    },
    keys: (prefix) => store.listDocuments(prefix),
  };
}

/** This host's writer id: the same after a restart (the data folder on this machine), distinct per host of a fleet. */
export function writerFor(dataDir: string): string {
  return createHash('sha256').update(`${os.hostname()}\u0000${path.resolve(dataDir)}`).digest('hex').slice(0, 16);
}
