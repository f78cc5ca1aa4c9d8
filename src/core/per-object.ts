/**
 * @module core/per-object
 *
 * A value derived once per object (a policy, a rule's list of policies) and kept
 * for as long as that object lives: the hot path reads serialised headers, JSON
 * names and script parameters instead of building them per request. A reloaded
 * policy is a new object, so it is derived again.
 */

/** `derive`, computed once per argument object (a WeakMap: nothing is kept for objects gone). */
export function perObject<K extends object, V>(derive: (k: K) => V): (k: K) => V {
  const cache = new WeakMap<K, V>();
  return (k) => {
    let v = cache.get(k);
    if (v === undefined) {
      v = derive(k);
      cache.set(k, v);
    }
    return v;
  };
}
