/**
 * @module admin/summary
 *
 * A one-line summary of what a new policy document changes, for the audit history.
 */
import { isDeepStrictEqual } from 'node:util';
import type { PolicyDocument } from '../policy/document.js';

export function summarizeChange(prev: PolicyDocument | undefined, next: PolicyDocument): string {
  if (!prev) return `new document: ${Object.keys(next.policies).length} policies, ${next.rules.length} rules`;
  const parts: string[] = [];
  const names = new Set([...Object.keys(prev.policies), ...Object.keys(next.policies)]);
  for (const n of names) {
    const a = prev.policies[n];
    const b = next.policies[n];
    const show = (p: typeof a) => (p ? `${p.limit}/${p.windowSec}s` : '');
    if (!a) parts.push(`policy ${n} added (${show(b)})`);
    else if (!b) parts.push(`policy ${n} removed`);
    else if (!isDeepStrictEqual(a, b)) parts.push(`policy ${n} ${show(a)} -> ${show(b)}`);
  }
  const before = new Map(prev.rules.map((r) => [r.name, r]));
  const after = new Map(next.rules.map((r) => [r.name, r]));
  for (const [n, r] of after) {
    if (!before.has(n)) parts.push(`rule ${n} added`);
    else if (!isDeepStrictEqual(before.get(n), r)) parts.push(`rule ${n} changed`);
  }
  for (const n of before.keys()) if (!after.has(n)) parts.push(`rule ${n} removed`);
  if (prev.rules.map((r) => r.name).join() !== next.rules.map((r) => r.name).join() && parts.length === 0) parts.push('rules reordered');
  for (const k of ['defaultTier', 'unknownKeys', 'tierClaim'] as const) if (prev[k] !== next[k]) parts.push(`${k} ${String(prev[k])} -> ${String(next[k])}`);
  return parts.length > 0 ? parts.join('; ') : 'no change';
}
