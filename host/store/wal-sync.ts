/**
 * Group commit across the connections of one SQLite file in this process (the store's and the
 * audit log's): a commit may be made without its own fsync ("deferred") when whoever acts on it
 * first waits for `durable()`, which resolves once an fsync of the WAL has covered it.
 *
 * Why this is as durable as an fsync per commit: every connection of the file appends to the same
 * WAL, in commit order, and an fsync of the WAL file makes everything written to it before durable,
 * whichever connection wrote it (a power cut keeps a prefix of the WAL: frames are checksummed in
 * a chain, so a later commit that survived implies the earlier ones did). A deferred commit is in
 * the operating system's cache when it returns, so it survives the death of the process at once;
 * it survives a power cut once `durable` has resolved — and nobody is told of it, and nothing is
 * done because of it, before that.
 *
 * `durable()` resolves on the first of: a fully synchronous commit on another connection of the
 * file that started after the deferred one (the audit log reports its commits: `commit()`), or an
 * fdatasync of the WAL that this module makes itself, off the main thread, when nothing else has
 * covered the mark within two turns of the event loop (or `withinMs`). Several marks share one fsync.
 */
import { close, fdatasync, open, realpathSync } from 'node:fs';
import path from 'node:path';

export class WalSync {
  /** Deferred commits made so far (each one's mark is the count after it). */
  private written = 0;
  /** Every deferred commit up to this mark is durable. */
  private synced = 0;
  private waiters: Array<{ mark: number; resolve: () => void; reject: (error: unknown) => void }> = [];
  /** Waiting with `withinMs`: resolved by a covering commit, or moved to `waiters` when their time is up. */
  private lazy: Array<{ mark: number; resolve: () => void; reject: (error: unknown) => void }> = [];
  private syncing = false;
  private checkScheduled = false;

  constructor(private readonly walFile: string) {}

  /** Call right after a commit made without fsync; its mark. */
  deferred(): number {
    return ++this.written;
  }

  /** Call before a commit that fsyncs the WAL; call the result once that commit has returned. */
  commit(): () => void {
    const mark = this.written;
    return () => this.reached(mark);
  }

  /**
   * Resolves when every deferred commit up to the last one so far is durable. `withinMs`: nobody
   * waits on it soon, so let another commit cover it for up to that long before syncing (the audit
   * log's lazy batches come within 10 ms); default: sync at once when nothing covers it.
   */
  durable(withinMs = 0): Promise<void> {
    const mark = this.written;
    if (mark <= this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (withinMs > 0) {
        const waiter = { mark, resolve, reject };
        setTimeout(() => {
          this.lazy = this.lazy.filter((w) => w !== waiter);
          if (mark > this.synced) {
            this.waiters.push(waiter);
            this.scheduleCheck();
          } else {
            resolve();
          }
        }, withinMs).unref();
        this.lazy.push(waiter);
        return;
      }
      this.waiters.push({ mark, resolve, reject });
      this.scheduleCheck();
    });
  }

  private reached(mark: number): void {
    if (mark <= this.synced) return;
    this.synced = mark;
    const covered = this.lazy.filter((w) => w.mark <= mark);
    this.lazy = this.lazy.filter((w) => w.mark > mark);
    for (const w of covered) w.resolve();
    const ready = this.waiters.filter((w) => w.mark <= mark);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.mark > mark);
    for (const w of ready) w.resolve();
  }

  /** Two turns of the event loop: a commit already scheduled (the audit log's batch, an intent) covers it for free. */
  private scheduleCheck(): void {
    if (this.checkScheduled) return;
    this.checkScheduled = true;
    setImmediate(() =>
      setImmediate(() => {
        this.checkScheduled = false;
        if (this.waiters.length > 0) this.sync();
      }),
    );
  }

  private sync(): void {
    if (this.syncing) return;
    this.syncing = true;
    const mark = this.written;
    const done = (error: NodeJS.ErrnoException | null): void => {
      this.syncing = false;
      if (error && error.code !== 'ENOENT') {
        // Nothing is known to be durable: fail those waiting (they refuse to act), keep the rest.
        const failed = this.waiters.filter((w) => w.mark <= mark);
        this.waiters = this.waiters.filter((w) => w.mark > mark);
        for (const w of failed) w.reject(error);
      } else {
        // ENOENT: the last connection closed, which checkpointed the WAL into the database and synced it.
        this.reached(mark);
      }
      if (this.waiters.length > 0) this.scheduleCheck();
    };
    open(this.walFile, 'r', (openError, fd) => {
      if (openError) return done(openError);
      fdatasync(fd, (syncError) => close(fd, () => done(syncError)));
    });
  }
}

const registry = new Map<string, WalSync>();

/** The one WalSync of a database file in this process (the store and the audit log share it). */
export function walSyncFor(databaseFile: string): WalSync {
  let key = path.resolve(databaseFile);
  try {
    key = realpathSync(key);
  } catch {
    // Not there yet: its resolved path names it.
  }
  let sync = registry.get(key);
  if (!sync) {
    sync = new WalSync(`${key}-wal`);
    registry.set(key, sync);
  }
  return sync;
}
