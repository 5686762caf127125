/**
 * Several hosts on one store: each host process registers itself with a new id, beats its heart,
 * and watches the others. A host silent for `fleet.deadAfterMs` is declared dead by the first live
 * host that notices (`Store.reapHost`, compare-and-set: exactly one reaper), which then ends what
 * the dead host owned: its live runs end as crashed, its pending escalations close `run_gone`, and
 * its approved recommendations are performed once by whichever host claims them
 * (`onReap`: RunService.recover and RequestManager.recover for that host).
 *
 * A host that finds itself reaped (its heartbeat is refused: it stalled for longer than the
 * timeout) stops with HOST_REAPED instead of acting on requests others have already closed.
 *
 * With the SQLite store there is one host per file (host-lock.ts): at start every earlier host of
 * the file is reaped at once (the lock proves it is gone), and no heartbeat is written.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { FleetConfig } from './fleet-config.js';
import type { HostRecord, Store } from './store/store.js';

export interface FleetOptions {
  store: Pick<Store, 'registerHost' | 'heartbeat' | 'stopHost' | 'listHosts' | 'reapHost'>;
  config: FleetConfig;
  /** `shared`: several hosts may use the store (PostgreSQL); else this is the only host (SQLite). */
  shared: boolean;
  now: () => number;
  logger: Logger;
  /** End what a dead host owned (its id). Called by the one host that reaped it. */
  onReap(hostId: string): Promise<void>;
  /** This host was reaped by another: stop. */
  onReaped(): void;
}

export interface Fleet {
  readonly hostId: string;
  /** Whether a host of the fleet is alive as last seen (unknown ids count as alive: their host reaps them when dead). */
  alive(hostId: string): boolean;
  /** Register this host, reap the dead (all earlier hosts, for SQLite), and start beating. */
  start(): Promise<void>;
  /** Look for dead hosts now (also done on every beat). */
  sweep(): Promise<void>;
  /** Stop beating and record a clean stop (its runs have ended). */
  stop(): Promise<void>;
}

export function newHostId(): string {
  return `h_${randomBytes(9).toString('base64url')}`;
}

export function createFleet(options: FleetOptions): Fleet {
  const { store, config, now, logger } = options;
  const hostId = newHostId();
  let seen = new Map<string, HostRecord>();
  let timer: NodeJS.Timeout | undefined;
  let beating: Promise<void> | undefined;
  let stopped = false;
  // Since when this host's own heartbeats have been succeeding without a gap. After the database
  // was unreachable (a restart, a failover) every host's heartbeat is late; reaping then would end
  // live hosts' runs. So a host reaps others only after a full dead-host timeout of its own
  // healthy beats, which gives every live host the time to beat again.
  let healthySince = now();

  const isDead = (h: HostRecord, at: number): boolean => h.stoppedAt !== undefined || h.reapedAt !== undefined || at - h.heartbeatAt > config.deadAfterMs;

  async function sweep(): Promise<void> {
    const at = now();
    const hosts = await store.listHosts();
    seen = new Map(hosts.map((h) => [h.id, h]));
    for (const h of hosts) {
      if (h.id === hostId || h.stoppedAt !== undefined || h.reapedAt !== undefined) continue;
      if (options.shared && (at - h.heartbeatAt <= config.deadAfterMs || at - healthySince < config.deadAfterMs)) continue;
      if (!(await store.reapHost(h.id, hostId, at))) continue;
      seen.set(h.id, { ...h, reapedAt: at, reapedBy: hostId });
      // One host per SQLite file: the lock proves the earlier ones gone, and the host recovers all they left.
      if (!options.shared) continue;
      logger.warn({ deadHost: h.id, hostname: h.hostname, pid: h.pid, lastHeartbeat: h.heartbeatAt }, 'fleet: a host stopped beating; its live runs end and its requests are taken over');
      // Not awaited: taking over may perform actions (seconds), and this host's own heartbeat must not wait for them.
      options.onReap(h.id).catch((error: unknown) => logger.error({ err: error, deadHost: h.id }, 'fleet: taking over a dead host\'s runs and requests failed'));
    }
  }

  async function beat(): Promise<void> {
    if (stopped) return;
    try {
      const at = now();
      if (!(await store.heartbeat(hostId, at))) {
        logger.error({ hostId }, 'fleet: another host declared this host dead (HOST_REAPED); stopping');
        stopped = true;
        if (timer) clearInterval(timer);
        options.onReaped();
        return;
      }
      if (healthySince === Number.POSITIVE_INFINITY) healthySince = at;
      await sweep();
    } catch (error) {
      // The database may be restarting: the next beat tries again; others reap only after deadAfterMs.
      healthySince = Number.POSITIVE_INFINITY;
      logger.warn({ err: error }, 'fleet: heartbeat failed');
    }
  }

  return {
    hostId,
    alive(id) {
      if (id === hostId) return !stopped;
      // One host per SQLite file: any other host id is an earlier, dead incarnation.
      if (!options.shared) return false;
      const h = seen.get(id);
      return h === undefined ? true : !isDead(h, now());
    },
    async start() {
      const at = now();
      await store.registerHost({ id: hostId, hostname: hostname(), pid: process.pid, startedAt: at, heartbeatAt: at });
      await sweep();
      if (!options.shared) return;
      timer = setInterval(() => {
        beating ??= beat().finally(() => (beating = undefined));
      }, config.heartbeatMs);
      timer.unref();
    },
    sweep,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearInterval(timer);
      await beating;
      await store.stopHost(hostId, now());
    },
  };
}
