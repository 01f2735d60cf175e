"""Custom layers, d2l (MXNet edition) style: a layer without parameters, a layer with parameters made
by ``self.params.get``, both used inside Sequential and hybridized."""
import gpuhybrid as mx
from gpuhybrid import nd
from gpuhybrid.gluon import nn

mx.random.seed(5)


class CenteredLayer(nn.Block):
    def __init__(self, **kwargs):
        super(CenteredLayer, self).__init__(**kwargs)

    def forward(self, x):
        return x - x.mean()


layer = CenteredLayer()
centered = layer(nd.array([1, 2, 3, 4, 5]))

net = nn.Sequential()
net.add(nn.Dense(128), CenteredLayer())
net.initialize()
y = net(nd.random.uniform(shape=(4, 8)))
centered_mean = y.mean().asscalar()


class HybridCentered(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        return F.broadcast_sub(x, F.mean(x))


hybrid_centered = HybridCentered()
hybrid_centered.hybridize()
hybrid_in = nd.random.normal(shape=(3, 5))
hybrid_centered_out = hybrid_centered(hybrid_in)

params = mx.gluon.ParameterDict()
params.get('param2', shape=(2, 3))
print(params)


class MyDense(nn.Block):
    # units: the number of outputs of this layer; in_units: the number of inputs
    def __init__(self, units, in_units, **kwargs):
        super(MyDense, self).__init__(**kwargs)
        self.weight = self.params.get('weight', shape=(in_units, units))
        self.bias = self.params.get('bias', shape=(units,))

    def forward(self, x):
        linear = nd.dot(x, self.weight.data()) + self.bias.data()
        return nd.relu(linear)


dense = MyDense(units=3, in_units=5)
print(dense.params)
dense.initialize()
dense_in = nd.random.uniform(shape=(2, 5))
dense_out = dense(dense_in)

net = nn.Sequential()
net.add(MyDense(8, in_units=64),
        MyDense(1, in_units=8))
net.initialize()
stack_in = nd.random.uniform(shape=(2, 64))
stack_out = net(stack_in)


class MyHybridDense(nn.HybridBlock):
    def __init__(self, units, in_units, **kwargs):
        super(MyHybridDense, self).__init__(**kwargs)
        with self.name_scope():
            self.weight = self.params.get('weight', shape=(in_units, units))
            self.bias = self.params.get('bias', shape=(units,))

    def hybrid_forward(self, F, x, weight, bias):
        return F.relu(F.broadcast_add(F.dot(x, weight), bias))


hdense = MyHybridDense(4, in_units=5)
hdense.initialize()
imperative_out = hdense(dense_in)
hdense.hybridize()
hybrid_out = hdense(dense_in)
