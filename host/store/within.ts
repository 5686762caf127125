/**
 * A state change that must commit with an audit record, in the audit batch's transaction on
 * whichever database holds the chain (host/audit/log.ts runs it): `sqlite` on the SQLite file,
 * `pg` on the PostgreSQL connection. Stores of state kept beside the chain (the trust tables,
 * passkeys) hand their writes out as these, so each commits with its record on either store.
 * A bare function is the `sqlite` form.
 */
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { ContainedError } from '../../runtime/errors.js';

export type Within<T = void> =
  | ((db: Database.Database) => T)
  | {
      sqlite?: (db: Database.Database) => T;
      pg?: (client: pg.PoolClient) => Promise<T>;
    };

type Steps<T> = Exclude<Within<T>, (...args: never[]) => unknown>;

function steps<T>(w: Within<T>): Steps<T> {
  return typeof w === 'function' ? { sqlite: w } : w;
}

/** A step whose value goes through `f` in the same transaction (a throw there undoes the step). */
export function mapStep<T, U>(w: Within<T>, f: (value: T) => U): Within<U> {
  const { sqlite, pg: onPg } = steps(w);
  return {
    ...(sqlite ? { sqlite: (db: Database.Database) => f(sqlite(db)) } : {}),
    ...(onPg ? { pg: async (client: pg.PoolClient) => f(await onPg(client)) } : {}),
  };
}

/** Several steps as one (in order, in one savepoint); the value is the last one's. */
export function chain<T>(...all: [...Array<Within<unknown>>, Within<T>]): Within<T> {
  const list = all.map((w) => steps(w));
  return {
    sqlite: (db) => {
      let value: unknown;
      for (const s of list) {
        if (!s.sqlite) throw new ContainedError('INTERNAL', 'store: a step has no SQLite form');
        value = s.sqlite(db);
      }
      return value as T;
    },
    pg: async (client) => {
      let value: unknown;
      for (const s of list) {
        if (!s.pg) throw new ContainedError('INTERNAL', 'store: a step has no PostgreSQL form');
        value = await s.pg(client);
      }
      return value as T;
    },
  };
}
