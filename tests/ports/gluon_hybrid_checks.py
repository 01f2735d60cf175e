"""Checks in the style of MXNet 1.9's test_gluon.py hybridize tests: hybridized equals imperative,
re-hybridizing after a change, layers read by name from get_internals(), multiple outputs
(split, topk) unpacked in hybrid_forward and in sym, and sym.var composition run with eval."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, nd, sym
from gpuhybrid.gluon import nn
from gpuhybrid.test_utils import assert_almost_equal

mx.random.seed(9)
results = {}


class Model(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super(Model, self).__init__(**kwargs)
        with self.name_scope():
            self.dense0 = nn.Dense(5, in_units=4)
            self.dense1 = nn.Dense(5, in_units=4)

    def hybrid_forward(self, F, x):
        return self.dense0(x) + self.dense1(F.tanh(x))


def check_hybrid_equals_imperative(block, *inputs):
    block.hybridize(active=False)
    expected = block(*inputs)
    block.hybridize()
    got = block(*inputs)
    got_again = block(*inputs)          # the cached plan
    for e, g, a in zip(_as_list(expected), _as_list(got), _as_list(got_again)):
        assert_almost_equal(e.asnumpy(), g.asnumpy(), rtol=1e-5, atol=1e-6)
        assert_almost_equal(g.asnumpy(), a.asnumpy(), rtol=0, atol=0)
    return expected


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


x = nd.random.uniform(shape=(3, 4))
model = Model()
model.initialize()
results['model'] = check_hybrid_equals_imperative(model, x)
results['model_param_names'] = sorted(model.collect_params().keys())

# re-hybridize after growing the net: the next call traces again
seq = nn.HybridSequential()
seq.add(nn.Dense(6, activation='tanh'))
seq.initialize()
seq.hybridize()
results['seq_short'] = seq(x)
seq.add(nn.Dense(3))
seq[1].initialize()
results['seq_long'] = seq(x)
seq.hybridize()
results['seq_rehybridized'] = seq(x)

# features by name: MXNet names Dense's op <prefix>fwd and its output <prefix>fwd_output
net = nn.HybridSequential()
net.add(nn.Dense(8, activation='relu'), nn.Dense(4, activation='relu'), nn.Dense(2))
net.initialize()
net.hybridize()
results['full_out'] = net(x)
data = sym.var('data')
internals = net(data).get_internals()
print(internals.list_outputs())
feature_sym = internals[net[1].name + '_fwd_output']
extractor = gluon.SymbolBlock(feature_sym, data, params=net.collect_params())
results['features'] = extractor(x)
relu_sym = internals[net[0].name + '_relu_fwd_output']
results['relu_features'] = gluon.SymbolBlock(relu_sym, data, params=net.collect_params())(x)
results['internal_names'] = internals.list_outputs()


class SplitTopk(gluon.HybridBlock):
    def hybrid_forward(self, F, x):
        first, second = F.split(x, num_outputs=2, axis=1)
        values, indices = F.topk(x, k=2, ret_typ='both')
        return first * second, values, indices


split_block = SplitTopk()
y = nd.random.normal(shape=(4, 6))
results['split_topk'] = check_hybrid_equals_imperative(split_block, y)

# multiple outputs in sym: unpack, name, and compose
a, b = sym.split(data, num_outputs=2, axis=1)
values, indices = sym.topk(data, k=2, ret_typ='both')
grouped = sym.Group([a + b, values, indices])
results['group_outputs'] = grouped.list_outputs()
results['group_eval'] = grouped.eval(ctx=mx.cpu(), data=y)

# composition: a graph of vars run with eval and bind, and a block called on a composed Symbol
w = sym.var('w')
composed = sym.FullyConnected(sym.relu(data), w, num_hidden=3, no_bias=True, name='fc')
results['composed_args'] = composed.list_arguments()
results['composed_name'] = composed.name
w_value = nd.random.normal(shape=(3, 6))
results['composed_eval'] = composed.eval(ctx=mx.cpu(), data=y, w=w_value)[0]
executor = composed.bind(mx.cpu(), {'data': y, 'w': w_value})
results['composed_bind'] = executor.forward()[0]

# gradients through a hybridized block equal the imperative ones
grad_net = Model()
grad_net.initialize()
grads = []
for active in (False, True):
    grad_net.hybridize(active=active)
    with autograd.record():
        out = grad_net(x)
    out.backward()
    grads.append({k: p.grad().copy() for k, p in grad_net.collect_params().items()})
results['grads'] = grads
