"""jax.jit forward of the bench MLP at batch 256: per call when calls are queued back to back and waited for
once (as gpuhybrid-bench times it) against per call when each is waited for (its compute alone).

    .venv/bin/python bench/results/cpu-mlp-peers-2026-12-06-jax-async.py
"""
import time, numpy as np, jax, jax.numpy as jnp
from gpuhybrid.bench.workloads import mlp_case, mlp
from gpuhybrid.bench.peers import ArrayOps
jax.config.update("jax_default_matmul_precision", "highest")
c = mlp_case(256); ops = ArrayOps(jnp)
arrs = [jnp.asarray(a) for a in c.inputs + c.weights]
f = jax.jit(lambda *a: mlp(ops, *a))
f(*arrs).block_until_ready()
def piped(n):
    s=time.perf_counter(); 
    for _ in range(n): out = f(*arrs)
    out.block_until_ready(); return (time.perf_counter()-s)/n*1e6
def blocked(n):
    s=time.perf_counter()
    for _ in range(n): f(*arrs).block_until_ready()
    return (time.perf_counter()-s)/n*1e6
a=[];b=[]
for _ in range(7): a.append(piped(40)); b.append(blocked(40))
print("jax b256 pipelined min %.0f med %.0f | blocked min %.0f med %.0f" % (min(a), sorted(a)[3], min(b), sorted(b)[3]))
