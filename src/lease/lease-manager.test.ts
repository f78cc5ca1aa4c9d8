import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../core/clock.js';
import { type Decision, type LeaseReply, type LeaseRequest, type Policy, StoreUnavailableError } from '../core/types.js';
import { silentLogger } from '../log/logger.js';
import { MemoryStore } from '../store/memory-store.js';
import { type LocalBucket, takeLocal } from '../algorithms/local-bucket.js';
import { algorithmOf } from '../algorithms/registry.js';
import { LeaseManager, type LeaseManagerOptions } from './lease-manager.js';

type BucketPolicy = Policy;

const policy: Policy = { name: 'default', algorithm: 'token_bucket', capacity: 40, refillPerSec: 10 };

/** Wraps a store to count calls and, on demand, fail them. */
class SpyStore {
  readonly mode = 'local-only' as const;
  calls: LeaseRequest[] = [];
  failing = false;
  constructor(readonly inner: MemoryStore) {}
  lease(id: string, p: BucketPolicy, req: LeaseRequest): Promise<LeaseReply> {
    this.calls.push(req);
    if (this.failing) return Promise.reject(new StoreUnavailableError('down'));
    return this.inner.lease(id, p, req);
  }
  ready() {
    return Promise.resolve(true);
  }
  heartbeat() {
    return this.failing ? Promise.reject(new StoreUnavailableError('down')) : Promise.resolve(1);
  }
  leave() {
    return Promise.resolve();
  }
  ping() {
    return Promise.resolve(!this.failing);
  }
  close() {
    return this.inner.close();
  }
}

const managers: LeaseManager[] = [];
function setup(overrides: Partial<LeaseManagerOptions> = {}, shared?: { clock: FakeClock; store: SpyStore }) {
  const clock = shared?.clock ?? new FakeClock();
  const store = shared?.store ?? new SpyStore(new MemoryStore({ clock, sweepIntervalMs: 0 }));
  const manager = new LeaseManager({
    store,
    clock,
    logger: silentLogger(),
    maxKeys: 1000,
    leaseTtlMs: 1000,
    maxLeaseTokens: 20,
    coldLeaseTokens: 1,
    // The fake clock drives everything: no real sweep or pacer timer; tests call sweep() and flushReturns().
    timers: false,
    ...overrides,
  });
  managers.push(manager);
  return { clock, store, manager };
}

afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

async function burst(m: LeaseManager, n: number, key = 'k', p: Policy = policy): Promise<Decision[]> {
  return Promise.all(Array.from({ length: n }, () => m.check(key, p)));
}
const allowed = (ds: Decision[]) => ds.filter((d) => d.allowed).length;

describe('LeaseManager on one node', () => {
  it('admits exactly the capacity of a simultaneous burst, then the refill', async () => {
    const { clock, store, manager } = setup();
    expect(allowed(await burst(manager, 50))).toBe(40);
    expect(store.calls.length).toBeLessThanOrEqual(3);
    clock.advance(1000);
    expect(allowed(await burst(manager, 50))).toBe(10);
  });

  it('a cold key leases coldLeaseTokens (a tenth of its bucket at most), so its next requests are local', async () => {
    const { clock, store, manager } = setup({ coldLeaseTokens: 4 });
    expect((await manager.check('cold', policy)).source).toBe('global');
    for (let i = 0; i < 3; i++) {
      clock.advance(200); // within the lease's TTL (1 s here)
      expect(manager.check('cold', policy)).toMatchObject({ allowed: true, source: 'local' });
    }
    // One call a request waited on; any other is a refill-ahead nobody waits for (need 0).
    expect(store.calls.filter((c) => c.need > 0)).toHaveLength(1);
    expect(store.calls[0]).toMatchObject({ need: 1, extra: 3 });
    // A bucket of 10: a guess takes 1 token, not 4 of the 10.
    const small: Policy = { name: 'small', algorithm: 'token_bucket', capacity: 10, refillPerSec: 1 };
    await manager.check('cold', small);
    expect(store.calls.at(-1)).toMatchObject({ need: 1, extra: 0 });
  });

  it('shares one lease call among requests that arrive while it is in flight', async () => {
    const { store, manager } = setup();
    const pending = Array.from({ length: 10 }, () => manager.check('k', policy));
    expect(store.calls.length).toBe(1);
    await Promise.all(pending);
  });

  it('denies locally until the retry time, without asking the store', async () => {
    const { clock, store, manager } = setup();
    await burst(manager, 41);
    const calls = store.calls.length;
    const d = (await manager.check('k', policy)) as Decision;
    expect(d.allowed).toBe(false);
    expect(d.retryAfterMs).toBeGreaterThan(0);
    expect(d.retryAfterMs).toBeLessThanOrEqual(100);
    for (let i = 0; i < 100; i++) expect(manager.check('k', policy)).toMatchObject({ allowed: false });
    expect(store.calls.length).toBe(calls);
    clock.advance(d.retryAfterMs);
    expect(await manager.check('k', policy)).toMatchObject({ allowed: true });
  });

  it('serves a steady key from memory: few store calls, requests rarely wait', async () => {
    const fast: Policy = { name: 'fast', algorithm: 'token_bucket', capacity: 1000, refillPerSec: 1000 };
    const { clock, store, manager } = setup({ leaseTtlMs: 2000 });
    let waited = 0;
    for (let i = 0; i < 2000; i++) {
      clock.advance(2); // 500 req/s, half the refill
      const r = manager.check('hot', fast);
      if (r instanceof Promise) {
        waited++;
        expect((await r).allowed).toBe(true);
      } else {
        expect(r.allowed).toBe(true);
        await Promise.resolve(); // let a refill-ahead reply land, as the event loop would
      }
    }
    expect(store.calls.length).toBeLessThan(200);
    expect(waited).toBeLessThan(20);
  });

  it('sizes leases from the observed rate, and asks nothing ahead for a cold key', async () => {
    const { clock, store, manager } = setup();
    await manager.check('cold', policy);
    expect(store.calls[0]).toMatchObject({ need: 1, extra: 0 });
    for (let i = 0; i < 5; i++) {
      clock.advance(200); // 5 req/s, within the policy's 10/s
      await manager.check('warm', policy);
    }
    expect(Math.max(...store.calls.map((c) => c.extra))).toBeGreaterThan(0);
  });

  it('leases coldLeaseTokens for a key seen for the first time', async () => {
    const { store, manager } = setup({ coldLeaseTokens: 3 });
    await manager.check('new', policy);
    expect(store.calls[0]).toMatchObject({ need: 1, extra: 2 });
  });

  it('asks nothing ahead for requests queued by a key draining its bucket (a burst)', async () => {
    const { clock, store, manager } = setup();
    for (let i = 0; i < 5; i++) {
      clock.advance(5); // 200 req/s against a refill of 10/s
      await burst(manager, 3);
    }
    expect(store.calls.filter((c) => c.need > 0).every((c) => c.extra === 0)).toBe(true);
  });

  it('in degraded mode closed, rejects every waiter with StoreUnavailableError, and recovers', async () => {
    const { store, manager } = setup({ degradedMode: 'closed' });
    store.failing = true;
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => manager.check('k', policy)));
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof StoreUnavailableError)).toBe(true);
    expect(manager.stats.storeFailures).toBe(1);
    store.failing = false;
    expect(await manager.check('k', policy)).toMatchObject({ allowed: true });
  });

  it('in degraded mode local, enforces this node\'s share of the limit when the store fails', async () => {
    const { store, manager } = setup({ degradedMode: 'local', liveNodes: () => 4 });
    store.failing = true;
    const ds = await burst(manager, 20);
    expect(allowed(ds)).toBe(10); // 40 / 4 nodes
    const denied = ds.find((d) => !d.allowed) as Decision;
    expect(denied.retryAfterMs).toBe(400); // refill 10/s / 4 nodes
    expect(manager.stats.degradedDecisions).toBe(20);
  });

  it('in degraded mode open, allows and counts', async () => {
    const { store, manager } = setup({ degradedMode: 'open' });
    store.failing = true;
    expect(allowed(await burst(manager, 100))).toBe(100);
    expect(manager.stats.failOpenAllowed).toBe(100);
  });

  it('decides in memory without calling the store while the breaker is open, and spends held tokens first', async () => {
    const { CircuitBreaker } = await import('../resilience/circuit-breaker.js');
    const breaker = new CircuitBreaker();
    const { clock, store, manager } = setup({ breaker, degradedMode: 'local' });
    for (let i = 0; i < 4; i++) {
      clock.advance(150);
      await manager.check('warm', policy); // leases ahead of demand
    }
    breaker.trip('test');
    const calls = store.calls.length;
    const r = manager.check('warm', policy);
    expect(r).not.toBeInstanceOf(Promise);
    expect(manager.stats.degradedDecisions).toBe(0); // a held token, not a degraded decision
    const cold = manager.check('cold', policy);
    expect(cold).toMatchObject({ allowed: true });
    expect(manager.stats.degradedDecisions).toBe(1);
    expect(store.calls.length).toBe(calls);
  });
});

describe('LeaseManager reports (review findings)', () => {
  it('does not report spends again after a call whose reply was lost', async () => {
    const { clock, store, manager } = setup({ leaseTtlMs: 10_000 });
    for (let i = 0; i < 4; i++) {
      clock.advance(200);
      await manager.check('k', policy); // warm: holds tokens ahead
    }
    // The store applies the next call but its reply is lost.
    const inner = store.inner;
    const applyThenFail = async (id: string, p: BucketPolicy, req: LeaseRequest) => {
      await inner.lease(id, p, req);
      throw new StoreUnavailableError('reply lost');
    };
    const original = store.inner.lease.bind(store.inner);
    (store as unknown as { inner: unknown }).inner = { lease: applyThenFail };
    const spent = store.calls.length;
    while (store.calls.length === spent) {
      clock.advance(200);
      await manager.check('k', policy);
    }
    await Promise.resolve();
    (store as unknown as { inner: unknown }).inner = { lease: original };
    const failedReport = store.calls.at(-1)?.report;
    expect(failedReport?.spends.length).toBeGreaterThan(0);
    // The next report carries only spends made after the failed call.
    clock.advance(20_000); // past expiry: the next request must lease again
    await manager.check('k', policy);
    const next = store.calls.at(-1);
    const resent = (next?.report?.spends ?? []).reduce((n: number, [, c]: readonly [number, number]) => n + c, 0);
    expect(resent).toBe(0);
  });

  it('gives back the unused tokens of a lease that expired here, instead of leaving them leased', async () => {
    const { clock, store, manager } = setup({ leaseTtlMs: 1000 });
    for (let i = 0; i < 3; i++) {
      clock.advance(150);
      await manager.check('k', policy);
    }
    clock.advance(5000); // expired locally, never swept
    await manager.check('k', policy);
    const report = store.calls.at(-1)?.report;
    expect(report?.keep).toBe(false);
    expect(report?.unused).toBeGreaterThan(0);
  });
});

/**
 * Replays decisions through `policy`'s bucket charged by the admitted ones: an admission
 * that finds fewer than `overBelow` tokens is over-admitted, a denial that finds at least
 * `underFrom` under-admitted.
 */
function replay(events: { t: number; ok: boolean }[], overBelow: number, underFrom: number): { under: number; over: number } {
  let tokens = policy.capacity;
  let at = events[0]?.t ?? 0;
  let under = 0;
  let over = 0;
  for (const e of events) {
    tokens = Math.min(policy.capacity, tokens + ((e.t - at) * policy.refillPerSec) / 1000);
    at = e.t;
    if (e.ok) {
      if (tokens >= overBelow) tokens -= 1;
      else over++;
    } else if (tokens >= underFrom) under++;
  }
  return { under, over };
}

describe('LeaseManager accuracy against an ideal token bucket', () => {
  it.each([5, 10, 20, 100])('a key at %i req/s (random arrivals) for 60 s is never over-admitted and under-admitted at most 1 percent', async (rate) => {
    const { clock, manager } = setup({ leaseTtlMs: 10_000 });
    let seed = rate;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const events: { t: number; ok: boolean }[] = [];
    for (let i = 0; i < rate * 60; i++) {
      clock.advance((-Math.log(1 - rnd()) * 1000) / rate);
      const d = await manager.check('k', policy);
      events.push({ t: clock.nowMs(), ok: d.allowed });
    }
    const { under, over } = replay(events, 1 - 1e-6, 1 + 1e-6);
    expect(over).toBe(0);
    expect(under / events.length).toBeLessThanOrEqual(0.01);
  });
});

describe('LeaseManager returns unused tokens', () => {
  const slow: Policy = { name: 'slow', algorithm: 'token_bucket', capacity: 40, refillPerSec: 1 };
  const opts = { leaseTtlMs: 10_000 };
  /** A key at 0.67 req/s, within its 1/s: its second request leases 5 (4 ahead), 2 stay unused. */
  async function leaseSome(manager: LeaseManager, clock: FakeClock) {
    for (let i = 0; i < 4; i++) {
      clock.advance(1500);
      await manager.check('k', slow);
    }
  }
  const returns = (store: SpyStore) => store.calls.filter((c) => c.report && !c.report.keep);

  it('before the lease expires (sweep)', async () => {
    const { clock, store, manager } = setup(opts);
    await leaseSome(manager, clock); // lease sent at 3000, expires at 13000
    clock.advance(4000);
    manager.sweep();
    expect(returns(store)).toHaveLength(0); // not yet near expiry
    clock.advance(1500);
    manager.sweep();
    expect(manager.returnsQueued).toBe(1);
    await manager.flushReturns();
    expect(returns(store)).toHaveLength(1);
    expect(returns(store)[0]?.report?.unused).toBe(2);
    // Given back: another node sharing the store gets the full bucket now, not 40 - 2
    // (without the return the 2 would stay leased until the deadline).
    const other = setup(opts, { clock, store });
    expect(allowed(await burst(other.manager, 60, 'k', slow))).toBe(40);
  });

  it('when the key is evicted from the LRU', async () => {
    // maxKeys 5: 1 slot for keys seen once, 4 for keys seen again.
    const { clock, store, manager } = setup({ ...opts, maxKeys: 5 });
    await leaseSome(manager, clock);
    for (const other of ['b', 'c', 'd', 'e']) {
      await manager.check(other, policy);
      await manager.check(other, policy); // seen again: into the main segment, evicting 'k' last
    }
    await manager.flushReturns();
    expect(store.calls.some((c) => c.report && !c.report.keep)).toBe(true);
    expect(manager.size).toBe(4);
  });

  it('on close', async () => {
    const { clock, store, manager } = setup(opts);
    await leaseSome(manager, clock);
    await manager.close();
    const back = store.calls.filter((c) => c.report && !c.report.keep);
    expect(back).toHaveLength(1);
    expect(manager.stats.returnCalls).toBe(1);
  });

  it('drops and counts a return that fails', async () => {
    const { clock, store, manager } = setup(opts);
    await leaseSome(manager, clock);
    store.failing = true;
    await manager.close();
    expect(manager.stats.returnFailures).toBe(1);
  });
});

describe('LeaseManager across two nodes sharing a store', () => {
  it('never admits more than the capacity of an interleaved burst, and strands at most 2 tokens', async () => {
    const clock = new FakeClock();
    const store = new SpyStore(new MemoryStore({ clock, sweepIntervalMs: 0 }));
    const a = setup({}, { clock, store }).manager;
    const b = setup({}, { clock, store }).manager;
    const results: Decision[] = [];
    for (let i = 0; i < 50; i++) {
      clock.advance(1);
      results.push(await (i % 2 === 0 ? a : b).check('k', policy));
    }
    const n = allowed(results);
    expect(n).toBeLessThanOrEqual(40 + 5); // 50 ms of refill: 0.5 token
    expect(n).toBeGreaterThanOrEqual(40 - 2);
  });
});

describe('LeaseManager hardening (regressions)', () => {
  /** A store that holds the lease calls `holdIf` picks until the test releases or fails them. */
  class HeldStore extends SpyStore {
    held: { release: () => void; fail: () => void }[] = [];
    holdIf: (req: LeaseRequest) => boolean = () => true;
    override lease(id: string, p: BucketPolicy, req: LeaseRequest): Promise<LeaseReply> {
      if (!this.holdIf(req)) return super.lease(id, p, req);
      this.calls.push(req);
      return new Promise((resolve, reject) => {
        this.held.push({ release: () => resolve(this.inner.lease(id, p, req)), fail: () => reject(new StoreUnavailableError('down')) });
      });
    }
    release(): void {
      for (const h of this.held.splice(0)) h.release();
    }
    fail(): void {
      for (const h of this.held.splice(0)) h.fail();
    }
  }
  const tick = () => new Promise((resolve) => setImmediate(resolve));

  function heldSetup(overrides: Partial<LeaseManagerOptions> = {}) {
    const clock = new FakeClock();
    const store = new HeldStore(new MemoryStore({ clock, sweepIntervalMs: 0 }));
    const { manager } = setup(overrides, { clock, store });
    return { clock, store, manager };
  }

  it('answers every waiter when a reply arrives after its lease expired, instead of leasing again forever', async () => {
    const { clock, store, manager } = heldSetup({ leaseTtlMs: 1000, degradedMode: 'local' });
    const pending = Array.from({ length: 5 }, () => manager.check('k', policy));
    clock.advance(1500); // the event loop stalled past the TTL while the call was out
    store.holdIf = () => false;
    store.release();
    const ds = await Promise.all(pending);
    expect(ds).toHaveLength(5);
    expect(manager.stats.lateReplies).toBe(1);
    expect(manager.stats.degradedDecisions).toBe(5);
    expect(store.calls).toHaveLength(1); // no second lease for the same waiters
    await manager.flushReturns();
    expect(store.calls.at(-1)?.report).toMatchObject({ keep: false }); // the dead lease's tokens go back
  });

  it('never throws from check() in closed mode with the breaker open: it returns a rejected promise', async () => {
    const { CircuitBreaker } = await import('../resilience/circuit-breaker.js');
    const breaker = new CircuitBreaker({ startOpen: true });
    const { manager } = setup({ breaker, degradedMode: 'closed' });
    let r: ReturnType<LeaseManager['check']> | undefined;
    expect(() => {
      r = manager.check('k', policy);
    }).not.toThrow();
    await expect(r).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('close() waits for returns issued by replies that land while it closes', async () => {
    const { store, manager } = heldSetup({ leaseTtlMs: 10_000, coldLeaseTokens: 4 });
    const first = manager.check('k', policy); // a lease call in flight
    let closed = false;
    const closing = manager.close().then(() => {
      closed = true;
    });
    store.release(); // the reply lands after close() began: its unused tokens must go back
    await first;
    for (let i = 0; i < 10 && store.held.length === 0; i++) await tick();
    expect(store.held).toHaveLength(1); // the return call is out...
    expect(store.calls.at(-1)?.report).toMatchObject({ keep: false, unused: 3 });
    await tick();
    expect(closed).toBe(false); // ...and close() is still waiting for it
    store.release();
    await closing;
    expect(closed).toBe(true);
  });

  it('returns the leftover of a lease whose renewal failed after a sweep ran while it was in flight', async () => {
    const fast: Policy = { name: 'fast', algorithm: 'token_bucket', capacity: 1000, refillPerSec: 100 };
    const { clock, store, manager } = heldSetup({ leaseTtlMs: 10_000 });
    // Hold only a renewal ahead of demand (nothing waits on it).
    store.holdIf = (req) => req.need === 0 && req.report?.keep === true;
    for (let i = 0; i < 200 && store.held.length === 0; i++) {
      clock.advance(20); // 50 req/s: leases of 20, renewed when fewer than 3 are left
      await manager.check('k', fast);
    }
    expect(store.held).toHaveLength(1);
    clock.advance(9900); // the lease is about to expire
    manager.sweep(); // skips it: a call is in flight
    await manager.flushReturns();
    const returnsBefore = manager.stats.returnCalls;
    store.holdIf = () => false;
    store.fail(); // the renewal fails: its leftover must still go back
    await tick();
    await manager.flushReturns();
    expect(manager.stats.returnCalls).toBe(returnsBefore + 1);
    expect(store.calls.at(-1)?.report).toMatchObject({ keep: false });
    expect(store.calls.at(-1)?.report?.unused).toBeGreaterThanOrEqual(1);
  });

  it('paces returns: a wave of expiring leases is sent a slice at a time', async () => {
    const { clock, store, manager } = setup({ leaseTtlMs: 10_000, coldLeaseTokens: 3, returnsPerSec: 2000 });
    for (let i = 0; i < 100; i++) await manager.check(`key-${i}`, policy); // each holds 2 unused tokens
    clock.advance(9500);
    manager.sweep();
    expect(manager.returnsQueued).toBe(100);
    const before = store.calls.length;
    await manager.flushReturns(20); // one 10 ms slice at 2000/s
    expect(store.calls.length - before).toBe(20);
    await manager.flushReturns();
    expect(store.calls.length - before).toBe(100);
  });

  it('keeps keys seen twice when a flood of made-up keys arrives (they only evict each other)', async () => {
    const { store, manager } = setup({ maxKeys: 100, coldLeaseTokens: 4 });
    for (let i = 0; i < 50; i++) {
      await manager.check(`real-${i}`, policy); // leases 4
      await manager.check(`real-${i}`, policy); // seen again: main segment, 2 tokens left
    }
    for (let i = 0; i < 5000; i++) await manager.check(`flood-${i}`, policy);
    const calls = store.calls.length;
    for (let i = 0; i < 50; i++) expect(manager.check(`real-${i}`, policy)).not.toBeInstanceOf(Promise);
    expect(store.calls.length).toBe(calls); // still held in memory, answered without the store
  });

  it('sheds first requests of new keys beyond newKeysPerSec (burst of 4 s), and admits again as the budget refills', async () => {
    const { clock, manager } = setup({ newKeysPerSec: 10 }); // burst 40
    const ds = await Promise.all(Array.from({ length: 60 }, (_, i) => manager.check(`new-${i}`, policy)));
    expect(ds.filter((d) => d.shed).length).toBe(20);
    expect(ds.filter((d) => d.shed).every((d) => !d.allowed && d.retryAfterMs >= 1)).toBe(true);
    expect(manager.stats.newKeysShed).toBe(20);
    expect(manager.size).toBe(40); // shed keys take no memory
    expect(await manager.check('new-0', policy)).toMatchObject({ allowed: true }); // known keys are never shed
    clock.advance(1000);
    const later = await Promise.all(Array.from({ length: 10 }, (_, i) => manager.check(`later-${i}`, policy)));
    expect(later.every((d) => d.allowed)).toBe(true);
  });
});

describe('LeaseManager review findings', () => {
  it('reports the spends of a lease spent down to zero when it expires, so other nodes get the refill', async () => {
    const clock = new FakeClock();
    const store = new SpyStore(new MemoryStore({ clock, sweepIntervalMs: 0 }));
    const a = setup({ leaseTtlMs: 10_000 }, { clock, store }).manager;
    const b = setup({ leaseTtlMs: 10_000 }, { clock, store }).manager;
    const slow: Policy = { name: 'slow', algorithm: 'token_bucket', capacity: 40, refillPerSec: 1 };
    expect(allowed(await burst(a, 20, 'k', slow))).toBe(20); // A's lease of 20 spent to 0, then A idles
    clock.advance(9500);
    a.sweep();
    await a.flushReturns();
    expect(store.calls.at(-1)?.report).toMatchObject({ unused: 0, keep: false });
    // B gets what the bucket really has: 20 left + 9.5 s of refill, not held back by A's unreported 20.
    expect(allowed(await burst(b, 40, 'k', slow))).toBeGreaterThanOrEqual(29);
  });

  it('answers a request even when the store throws synchronously, and keeps answering', async () => {
    const throwing = {
      mode: 'local-only' as const,
      lease: () => {
        throw new TypeError('a bug in a custom store');
      },
    };
    const { manager } = setup({ store: throwing as never, degradedMode: 'local' });
    for (let i = 0; i < 3; i++) expect((await manager.check('k', policy)).allowed).toBe(true); // degraded, never stuck
    expect(manager.stats.storeFailures).toBe(3);
  });

  it('close() twice waits for one shutdown', async () => {
    const { clock, store, manager } = setup({ leaseTtlMs: 10_000, coldLeaseTokens: 5 });
    await manager.check('k', policy);
    clock.advance(1);
    const [x, y] = [manager.close(), manager.close()];
    expect(x).toBe(y);
    await x;
    expect(store.calls.filter((c) => c.report && !c.report.keep)).toHaveLength(1);
  });
});

describe('LeaseManager reservations (review finding)', () => {
  it('settles a reservation only against the lease it came from: a release meant for a replaced lease takes nobody else\'s', async () => {
    const { store, manager } = setup({ coldLeaseTokens: 5 });
    const a = await manager.acquire('k', policy, 1); // lease L1 (5 tokens), 1 reserved
    expect(a.reservation).toBeDefined();
    manager.forgetClient('k'); // L1 dropped (as after a reset)
    const b = await manager.acquire('k', policy, 1); // a new lease L2, 1 reserved
    expect(b.reservation).toBeDefined();
    expect(b.reservation).not.toBe(a.reservation);
    manager.settle('k', policy, 1, false, a.reservation as number); // A releases: must not touch L2
    manager.settle('k', policy, 1, true, b.reservation as number); // B commits: its spend is recorded
    await manager.close();
    const back = store.calls.at(-1)?.report;
    expect(back?.spends.reduce((n, [, c]) => n + c, 0)).toBe(1); // B's spend, reported
    expect(back?.unused).toBe((back?.registered ?? 0) - 1);
  });

  it('reserves nothing for a degraded decision, so the engine settles nothing for it', async () => {
    const { store, manager } = setup({ degradedMode: 'local' });
    store.failing = true;
    const d = await manager.acquire('k', policy, 1);
    expect(d).toMatchObject({ allowed: true, source: 'degraded' });
    expect(d.reservation).toBeUndefined();
  });
});

describe('LeaseManager with windows', () => {
  // 50 per window: a cold lease of 5 is within a tenth of it.
  const fixed: Policy = { name: 'fixed', algorithm: 'fixed_window', capacity: 50, refillPerSec: 50, windowMs: 1000 };

  it('spends a lease only until its window ends, then leases in the new window', async () => {
    const { clock, store, manager } = setup({ leaseTtlMs: 10_000, coldLeaseTokens: 5 });
    clock.advance(900); // the FakeClock starts on a whole second: 100 ms left in this window
    expect((await manager.check('w', fixed)).allowed).toBe(true);
    expect(manager.check('w', fixed)).toMatchObject({ allowed: true, source: 'local' });
    expect(store.calls).toHaveLength(1);
    clock.advance(100); // the window is over: its permits are dead here too
    const d = await manager.check('w', fixed);
    expect(d).toMatchObject({ allowed: true, source: 'global' });
    expect(store.calls).toHaveLength(2);
  });

  it('reserves from a window lease in its last moments, and held() says once the reservation has died with it', async () => {
    const { clock, manager } = setup({ leaseTtlMs: 10_000, coldLeaseTokens: 5, maxHoldMs: 2000 });
    clock.advance(950);
    await manager.check('w', fixed);
    // 50 ms left, far less than maxHoldMs: a TTL-limited lease would not be reserved from.
    const d = manager.acquire('w', fixed, 1) as Decision;
    expect(d).toMatchObject({ allowed: true, source: 'local' });
    expect(manager.held('w', fixed, d.reservation as number)).toBe(true);
    clock.advance(50);
    expect(manager.held('w', fixed, d.reservation as number)).toBe(false);
  });
});

describe('LeaseManager with windows: returns', () => {
  const fixed: Policy = { name: 'fixed', algorithm: 'fixed_window', capacity: 100, refillPerSec: 100, windowMs: 1000 };
  it('does not return a lease that ends with its window (its permits die with it)', async () => {
    const { clock, store, manager } = setup({ leaseTtlMs: 10_000, coldLeaseTokens: 10 });
    clock.advance(500);
    await manager.check('w', fixed);
    const calls = store.calls.length;
    clock.advance(490); // 10 ms before the window's end: a TTL-limited lease would be queued for return now
    manager.sweep();
    await manager.flushReturns();
    expect(store.calls.length).toBe(calls);
  });
});

describe('LeaseManager on a store that answers synchronously (embedded mode)', () => {
  const policies: Policy[] = [
    policy,
    { name: 'g', algorithm: 'gcra', capacity: 12, refillPerSec: 6 },
    { name: 'f', algorithm: 'fixed_window', capacity: 15, refillPerSec: 15, windowMs: 1000 },
    { name: 's', algorithm: 'sliding_window', capacity: 15, refillPerSec: 15, windowMs: 1000 },
  ];
  for (const p of policies) {
    it(`decides every request without a promise, as the same store awaited would (${p.algorithm})`, async () => {
      const { prng } = await import('../../test/helpers/prng.js');
      const rnd = prng(p.capacity * 31 + p.name.length);
      // A: the memory store behind an async port (a promise per call, as Redis); B: the store itself.
      const a = setup();
      const clockB = new FakeClock();
      const memB = new MemoryStore({ clock: clockB, sweepIntervalMs: 0 });
      const b = setup({}, { clock: clockB, store: memB as unknown as SpyStore });
      let sync = 0;
      for (let i = 0; i < 600; i++) {
        const dt = Math.floor(rnd() * (rnd() < 0.2 ? 400 : 40));
        a.clock.advance(dt);
        clockB.advance(dt);
        const key = `k${Math.floor(rnd() * 3)}`;
        const cost = 1 + Math.floor(rnd() * 2);
        const viaB = b.manager.check(key, p, cost);
        if (!(viaB instanceof Promise)) sync++;
        const da = await a.manager.check(key, p, cost);
        const db = await viaB;
        // Both managers' background calls (refill-ahead) settle before the next request.
        await new Promise((r) => setImmediate(r));
        expect([db.allowed, db.remaining, db.retryAfterMs], `request ${i}`).toEqual([da.allowed, da.remaining, da.retryAfterMs]);
      }
      expect(sync).toBe(600);
      expect(b.manager.stats.leaseCalls).toBe(a.manager.stats.leaseCalls);
    });
  }
});

describe('LeaseManager in direct mode (the embedded service: no leases)', () => {
  const policies: Policy[] = [
    policy,
    { name: 'g', algorithm: 'gcra', capacity: 12, refillPerSec: 6 },
    { name: 'f', algorithm: 'fixed_window', capacity: 15, refillPerSec: 15, windowMs: 1000 },
    { name: 's', algorithm: 'sliding_window', capacity: 15, refillPerSec: 15, windowMs: 1000 },
  ];
  function direct() {
    const clock = new FakeClock();
    const store = new MemoryStore({ clock, sweepIntervalMs: 0 });
    return { memory: store, ...setup({ direct: true }, { clock, store: store as unknown as SpyStore }) };
  }

  for (const p of policies) {
    it(`decides as the algorithm run on its own, each request synchronously, with no lease call (${p.algorithm})`, async () => {
      const { prng } = await import('../../test/helpers/prng.js');
      const rnd = prng(p.capacity * 17 + p.name.length);
      const { clock, manager } = direct();
      // The oracle: the algorithm as a plain limiter (what degraded `local` mode runs), one state per key.
      const alg = algorithmOf(p);
      const own = new Map<string, LocalBucket | undefined>();
      for (let i = 0; i < 1500; i++) {
        // Mostly close together, sometimes idle for longer than a bucket takes to be full again.
        clock.advance(rnd() * (rnd() < 0.1 ? 6000 : 60));
        const key = `k${Math.floor(rnd() * 3)}`;
        const d = manager.check(key, p);
        expect(d, `request ${i}`).not.toBeInstanceOf(Promise);
        const t = takeLocal(alg, own.get(key), p, clock.nowMs());
        own.set(key, t.bucket);
        expect([(d as Decision).allowed, (d as Decision).remaining, (d as Decision).retryAfterMs], `request ${i}`).toEqual([t.allowed, t.remaining, t.retryAfterMs]);
      }
      expect(manager.stats).toMatchObject({ leaseCalls: 0, returnCalls: 0, decisions: 1500, localDecisions: 1500 });
    });

  }

  it('never admits beyond capacity + refill × elapsed, and denies only with less than a token left', async () => {
    const { prng } = await import('../../test/helpers/prng.js');
    const rnd = prng(7);
    const { clock, manager } = direct();
    const events: { t: number; ok: boolean }[] = [];
    for (let i = 0; i < 3000; i++) {
      clock.advance((-Math.log(1 - rnd()) * 1000) / 30);
      events.push({ t: clock.nowMs(), ok: (manager.check('k', policy) as Decision).allowed });
    }
    // Replayed through a bucket charged with the admissions made: an admission must find a
    // whole token; a denial must not find one. The store floors its tokens to 1e-6 on every
    // step, so after n steps it may hold up to n × 1e-6 less than the replay: 3000 steps, 0.003.
    expect(replay(events, 1 - 1e-9, 1.003)).toEqual({ over: 0, under: 0 });
    expect(events.filter((e) => !e.ok).length).toBeGreaterThan(1000);
  });

  it('a released reservation goes back to the bucket; a committed one stays spent', () => {
    const { manager } = direct();
    const held = manager.acquire('k', policy, 40) as Decision;
    expect(held.allowed).toBe(true);
    expect(held.reservation).toBeDefined();
    expect(manager.held('k', policy, held.reservation as number)).toBe(true);
    expect((manager.check('k', policy) as Decision).allowed).toBe(false);
    manager.settle('k', policy, 40, false, held.reservation as number);
    expect((manager.check('k', policy) as Decision).remaining).toBe(39);
    const spent = manager.acquire('k', policy, 39) as Decision;
    manager.settle('k', policy, 39, true, spent.reservation as number);
    expect((manager.check('k', policy) as Decision).allowed).toBe(false);
    // A denial reserves nothing.
    expect((manager.acquire('k', policy, 1) as Decision).reservation).toBeUndefined();
  });

  it('a bucket reset by an admin, or dropped once full again, starts over: the key state does not keep the old one', async () => {
    const { clock, memory, manager } = direct();
    for (let i = 0; i < 40; i++) manager.check('k', policy);
    expect((manager.check('k', policy) as Decision).allowed).toBe(false);
    expect(await memory.peek('k', policy)).toMatchObject({ available: 0, leased: 0 });
    await memory.reset('k', policy);
    manager.forgetClient('k');
    expect(await memory.peek('k', policy)).toBeUndefined();
    expect(manager.check('k', policy)).toMatchObject({ allowed: true, remaining: 39 });
    for (let i = 0; i < 39; i++) manager.check('k', policy);
    expect((manager.check('k', policy) as Decision).allowed).toBe(false);
    // Full again after 4 s at 10/s; the sweep drops it after its last second.
    clock.advance(5001);
    memory.sweep();
    expect(memory.size).toBe(0);
    expect(manager.check('k', policy)).toMatchObject({ allowed: true, remaining: 39 });
    expect(memory.size).toBe(1);
  });

  it('charges `cost` permits at once and says when that many are back (token bucket, fixed window: exact references)', async () => {
    const { prng } = await import('../../test/helpers/prng.js');
    const rnd = prng(3);
    const tbP: Policy = { name: 'c', algorithm: 'token_bucket', capacity: 10, refillPerSec: 10 };
    const fw: Policy = { name: 'w', algorithm: 'fixed_window', capacity: 10, refillPerSec: 10, windowMs: 1000 };
    const { clock, manager } = direct();
    const t0 = clock.nowMs();
    // Whole-100-ms steps: the token bucket's refill is whole tokens, so the reference is exact.
    let tokens = 10;
    let count = 0;
    let windowStart = Math.floor(t0 / 1000) * 1000;
    for (let i = 0; i < 400; i++) {
      const steps = Math.floor(rnd() * 3);
      clock.advance(steps * 100);
      tokens = Math.min(10, tokens + steps);
      const now = clock.nowMs();
      if (now >= windowStart + 1000) {
        windowStart = Math.floor(now / 1000) * 1000;
        count = 0;
      }
      const cost = 1 + Math.floor(rnd() * 4);
      const a = manager.check('k', tbP, cost) as Decision;
      const okT = tokens >= cost;
      if (okT) tokens -= cost;
      expect([a.allowed, a.remaining, a.retryAfterMs], `token bucket, request ${i}`).toEqual([okT, tokens, okT ? 0 : (cost - tokens) * 100]);
      const b = manager.check('k', fw, cost) as Decision;
      const okW = count + cost <= 10;
      if (okW) count += cost;
      expect([b.allowed, b.remaining, b.retryAfterMs], `fixed window, request ${i}`).toEqual([okW, 10 - count, okW ? 0 : windowStart + 1000 - now]);
    }
    // A cost over the capacity never fits: denied, with the time until the bucket is full.
    expect(manager.check('k', tbP, 11)).toMatchObject({ allowed: false });
  });

  it('a reservation put back after its bucket moved on stays spent: the bucket never holds more than its capacity', () => {
    const p: Policy = { name: 'r', algorithm: 'token_bucket', capacity: 10, refillPerSec: 10 };
    const { clock, manager } = direct();
    const held = manager.acquire('k', p, 5) as Decision; // 5 left
    clock.advance(300); // refills to 8 while the 5 are out
    for (let i = 0; i < 8; i++) expect((manager.check('k', p) as Decision).allowed).toBe(true);
    expect(manager.held('k', p, held.reservation as number)).toBe(false);
    manager.settle('k', p, 5, false, held.reservation as number);
    // Putting the 5 back now would admit 13 within 300 ms of a full bucket of 10 (+3 refilled): 8 only.
    expect((manager.check('k', p) as Decision).allowed).toBe(false);
  });

  it('settles a reservation once: a second release, or one never reserved, puts nothing back', () => {
    const p: Policy = { name: 'r', algorithm: 'token_bucket', capacity: 10, refillPerSec: 10 };
    const { manager } = direct();
    const held = manager.acquire('k', p, 4) as Decision; // 6 left
    manager.settle('k', p, 4, false, held.reservation as number); // 10
    manager.settle('k', p, 4, false, held.reservation as number); // nothing
    expect(manager.check('k', p)).toMatchObject({ allowed: true, remaining: 9 });
    manager.settle('k', p, 3, false, held.reservation as number); // nothing reserved
    expect(manager.check('k', p)).toMatchObject({ allowed: true, remaining: 8 });
  });

  it("a window's reservation dies with its window: not held, and not put back into the next one", () => {
    const w: Policy = { name: 'w', algorithm: 'fixed_window', capacity: 10, refillPerSec: 10, windowMs: 1000 };
    const { clock, manager } = direct();
    clock.advance(1000 - (clock.nowMs() % 1000) + 100); // 100 ms into a window
    const held = manager.acquire('k', w, 6) as Decision;
    expect(manager.held('k', w, held.reservation as number)).toBe(true);
    clock.advance(950); // the next window
    expect(manager.held('k', w, held.reservation as number)).toBe(false);
    manager.settle('k', w, 6, false, held.reservation as number);
    expect(manager.check('k', w)).toMatchObject({ allowed: true, remaining: 9 });
  });

  it('keeps a bucket the sweep finds still limiting, and aligns windows to the store epoch', () => {
    const clock = new FakeClock(10_000);
    const memory = new MemoryStore({ clock, sweepIntervalMs: 0, epochMs: 250 });
    const { manager } = setup({ direct: true }, { clock, store: memory as unknown as SpyStore });
    for (let i = 0; i < 40; i++) manager.check('k', policy);
    clock.advance(2000); // 20 of 40 back: not full yet
    memory.sweep();
    expect(memory.size).toBe(1);
    expect(manager.check('k', policy)).toMatchObject({ allowed: true, remaining: 19 });
    // Store time is the clock plus 250 ms: a 1-s window starts when the clock reads …750.
    const w: Policy = { name: 'w', algorithm: 'fixed_window', capacity: 2, refillPerSec: 2, windowMs: 1000 };
    clock.advance(1000 - ((clock.nowMs() + 250) % 1000) + 900); // 900 ms into a store window
    manager.check('x', w);
    manager.check('x', w);
    expect(manager.check('x', w)).toMatchObject({ allowed: false, retryAfterMs: 100 });
    clock.advance(100);
    expect((manager.check('x', w) as Decision).allowed).toBe(true);
  });

  it('a policy that changes algorithm under the same name gets a bucket of its own, not the old state', () => {
    const { manager } = direct();
    const a: Policy = { name: 'same', algorithm: 'token_bucket', capacity: 3, refillPerSec: 1 };
    for (let i = 0; i < 3; i++) manager.check('k', a);
    expect((manager.check('k', a) as Decision).allowed).toBe(false);
    const b: Policy = { name: 'same', algorithm: 'sliding_window', capacity: 3, refillPerSec: 3, windowMs: 1000 };
    expect(manager.check('k', b)).toMatchObject({ allowed: true, remaining: 2 });
  });

  it('refuses requests once closed, as leasing does for those that need the store', async () => {
    const { manager } = direct();
    expect(manager.check('k', policy)).toMatchObject({ allowed: true });
    await manager.close();
    await expect(manager.check('k', policy)).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('refuses a store that cannot take', () => {
    expect(() => setup({ direct: true })).toThrow(/take\(\), settleTake\(\) and takeHeld\(\)/);
  });
});
