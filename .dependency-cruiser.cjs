/**
 * The layers of src/, lowest first, and which may import which. `npm run lint:deps`
 * (part of .ci/run) fails on a cycle or on an arrow that runs up a layer.
 *
 *   core           types, ports, clock, per-object cache: imports nothing of ours
 *   log            winston; imports nothing of ours
 *   algorithms     pure algorithm steps            -> core
 *   protocol       the shared lease bookkeeping    -> core, algorithms
 *   lease          the local tier                  -> core, algorithms, protocol, log
 *   store          Redis and memory adapters       -> core, algorithms, protocol
 *   resilience     breaker, health monitor         -> core, log
 *   policy         document, rules, engine         -> core, log
 *   config         the environment                 -> core
 *   metrics        counters and the prom registry  -> core
 *   http           Hono app and middleware         -> core, log, policy, metrics
 *   admin          the operators' API              -> core, log, policy
 *   service, main, index: the composition root    -> anything
 */
const layer = (name, allowed) => ({
  name: `${name}-imports-only-${allowed.join('-') || 'nothing'}`,
  severity: 'error',
  comment: `src/${name} may import only ${allowed.length ? allowed.map((a) => `src/${a}`).join(', ') : 'nothing of ours'} (and itself)`,
  from: { path: `^src/${name}/` },
  to: { path: '^src/', pathNot: [`^src/${name}/`, ...allowed.map((a) => `^src/${a}/`)] },
});

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    layer('core', []),
    layer('log', []),
    layer('algorithms', ['core']),
    layer('protocol', ['core', 'algorithms']),
    layer('lease', ['core', 'algorithms', 'protocol', 'log']),
    layer('store', ['core', 'algorithms', 'protocol']),
    layer('resilience', ['core', 'log']),
    layer('policy', ['core', 'log']),
    layer('config', ['core']),
    layer('metrics', ['core']),
    layer('http', ['core', 'log', 'policy', 'metrics']),
    layer('admin', ['core', 'log', 'policy']),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.test\\.ts$' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
