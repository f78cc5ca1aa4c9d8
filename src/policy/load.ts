/**
 * @module policy/load
 *
 * The document a node starts with: `POLICY_FILE` (JSON), or, without it, one
 * token-bucket policy from the environment applied by one rule to `/resource`,
 * so nothing changes for users of the environment variables.
 */
import { readFileSync } from 'node:fs';
import type { Policy } from '../core/types.js';
import { type PolicyDocument, parsePolicyDocument } from './document.js';

/** The document the environment's single policy stands for. */
export function documentFromPolicy(p: Policy): PolicyDocument {
  return {
    policies: { [p.name]: { algorithm: 'token_bucket', limit: p.capacity, windowSec: p.capacity / p.refillPerSec } },
    rules: [{ name: 'default', match: { pathPrefix: '/resource' }, by: 'apiKey', limits: [p.name], cost: 1, shadow: false }],
    defaultTier: 'free',
    unknownKeys: 'allow',
  };
}

/** Reads and validates a policy file; throws an Error listing every bad field by path. */
export function loadPolicyFile(path: string): PolicyDocument {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`POLICY_FILE ${path}: ${(err as Error).message}`);
  }
  const r = parsePolicyDocument(raw);
  if (!r.ok) throw new Error(`POLICY_FILE ${path} is invalid:\n  ${r.errors.map((e) => `${e.path}: ${e.message}`).join('\n  ')}`);
  return r.document;
}
