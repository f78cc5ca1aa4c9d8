/**
 * @module algorithms/registry
 *
 * The algorithm a policy names, as the lease protocol drives it.
 */
import type { AlgorithmName, LimitParams } from '../core/types.js';
import { fixedWindowStep } from './fixed-window.js';
import { gcraStep } from './gcra.js';
import type { LeaseAlgorithm } from './lease-algorithm.js';
import { slidingWindowStep } from './sliding-window.js';
import { tokenBucketStep } from './token-bucket.js';

type StepOf<A extends AlgorithmName> = LeaseAlgorithm<Extract<LimitParams, { algorithm: A }>, unknown>;

export const ALGORITHMS: { readonly [A in AlgorithmName]: StepOf<A> } = {
  token_bucket: tokenBucketStep as StepOf<'token_bucket'>,
  gcra: gcraStep as StepOf<'gcra'>,
  fixed_window: fixedWindowStep as StepOf<'fixed_window'>,
  sliding_window: slidingWindowStep as StepOf<'sliding_window'>,
};

/** The lease step of the algorithm `params` names. */
export function algorithmOf(params: LimitParams): LeaseAlgorithm<LimitParams, unknown> {
  return ALGORITHMS[params.algorithm] as LeaseAlgorithm<LimitParams, unknown>;
}
