import { describe, expect, it } from 'vitest';
import { type BucketStore, type FleetStore, type LeaseReply, type StoreHealth, StoreUnavailableError } from '../core/types.js';
import { silentLogger } from '../log/logger.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { HealthMonitor } from './health-monitor.js';

/** A fleet set shared by monitors, and switches for what fails. */
class FakeFleet implements BucketStore, FleetStore, StoreHealth {
  readonly mode = 'global' as const;
  members = new Map<string, number>();
  now = 0;
  pingAnswers = true;
  leaseWorks = true;
  pingThrows = false;
  pings = 0;
  leases = 0;
  lease(): Promise<LeaseReply> {
    this.leases++;
    if (!this.leaseWorks) return Promise.reject(new StoreUnavailableError('old script'));
    return Promise.resolve({ granted: 0, kept: false, grantedAtMs: 1, remaining: 1, retryAfterMs: 0, lifeMs: 1000 });
  }
  heartbeat(nodeId: string, ttlMs: number): Promise<number> {
    this.members.set(nodeId, this.now + ttlMs);
    for (const [id, until] of this.members) if (until <= this.now) this.members.delete(id);
    return Promise.resolve(this.members.size);
  }
  leave(nodeId: string): Promise<void> {
    this.members.delete(nodeId);
    return Promise.resolve();
  }
  ping(): Promise<boolean> {
    this.pings++;
    if (this.pingThrows) throw new TypeError('a bug in the probe');
    return Promise.resolve(this.pingAnswers);
  }
  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const monitor = (store: FakeFleet, breaker = new CircuitBreaker(), nodeId?: string) =>
  new HealthMonitor({ store, breaker, logger: silentLogger(), nodeId, heartbeatIntervalMs: 250, probeIntervalMs: 5 });

describe('HealthMonitor', () => {
  it('keeps running when a round throws: the error is logged and the next round is scheduled', async () => {
    const store = new FakeFleet();
    store.pingThrows = true;
    const m = monitor(store, new CircuitBreaker({ startOpen: true }));
    await m.start();
    const t0 = Date.now();
    while (store.pings < 3 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 5));
    await m.stop();
    expect(store.pings).toBeGreaterThanOrEqual(3);
  });

  it('counts a joining node at the next heartbeat of the others, and one that leaves at once', async () => {
    const store = new FakeFleet();
    const a = monitor(store, undefined, 'a');
    const b = monitor(store, undefined, 'b');
    await a.round();
    expect(a.liveNodes).toBe(1);
    await b.round(); // b joins
    expect(b.liveNodes).toBe(2);
    store.now += 250; // one heartbeat interval later
    await a.round();
    expect(a.liveNodes).toBe(2);
    await b.stop(); // b leaves gracefully
    await a.round();
    expect(a.liveNodes).toBe(1);
    expect(a.heartbeatTtlMs).toBe(1000); // a crashed node drops out within 4 intervals
  });

  it('a PING that answers while leases fail never closes the breaker; a working lease does', async () => {
    const store = new FakeFleet();
    store.leaseWorks = false;
    const changes: string[] = [];
    const breaker = new CircuitBreaker({ startOpen: true, onChange: (s) => changes.push(s) });
    const m = monitor(store, breaker);
    for (let i = 0; i < 10; i++) await m.round(); // probe, trial fails, probe, ...
    expect(breaker.isOpen).toBe(true);
    expect(store.leases).toBeGreaterThan(0);
    expect(changes).toEqual([]); // no flapping
    store.leaseWorks = true;
    await m.round(); // probe: half-open
    await m.round(); // the monitor's own trial lease
    expect(breaker.state).toBe('closed');
    expect(changes).toEqual(['closed']);
  });
});
