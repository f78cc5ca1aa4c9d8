/**
 * @module algorithms/registry
 *
 * The algorithm a policy names, as the lease protocol drives it.
 */
import type { AlgorithmName, LimitParams } from '../core/types.js';
import type { LeaseAlgorithm } from './lease-algorithm.js';
import { tokenBucketStep } from './token-bucket.js';

export const ALGORITHMS: { readonly [A in AlgorithmName]: LeaseAlgorithm<Extract<LimitParams, { algorithm: A }>, unknown> } = {
  token_bucket: tokenBucketStep as LeaseAlgorithm<Extract<LimitParams, { algorithm: 'token_bucket' }>, unknown>,
};

/** The lease step of the algorithm `params` names. */
export function algorithmOf(params: LimitParams): LeaseAlgorithm<LimitParams, unknown> {
  return ALGORITHMS[params.algorithm] as LeaseAlgorithm<LimitParams, unknown>;
}
