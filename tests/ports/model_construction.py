"""Model construction, d2l (MXNet edition) style: Sequential, a custom Block, a Sequential of our own,
a block with a constant weight and Python control flow, and nested blocks."""
import gpuhybrid as mx
from gpuhybrid import nd
from gpuhybrid.gluon import nn

mx.random.seed(3)
x = nd.random.uniform(shape=(2, 20))

net = nn.Sequential()
net.add(nn.Dense(256, activation='relu'))
net.add(nn.Dense(10))
net.initialize()
seq_out = net(x)


class MLP(nn.Block):
    def __init__(self, **kwargs):
        super(MLP, self).__init__(**kwargs)
        self.hidden = nn.Dense(256, activation='relu')
        self.output = nn.Dense(10)

    def forward(self, x):
        return self.output(self.hidden(x))


mlp = MLP()
mlp.initialize()
mlp_out = mlp(x)


class MySequential(nn.Block):
    def add(self, block):
        # the block's name is the key: Block keeps children in insertion order
        self._children[block.name] = block

    def forward(self, x):
        for block in self._children.values():
            x = block(x)
        return x


myseq = MySequential()
myseq.add(nn.Dense(256, activation='relu'))
myseq.add(nn.Dense(10))
myseq.initialize()
myseq_out = myseq(x)


class FixedHiddenMLP(nn.Block):
    def __init__(self, **kwargs):
        super(FixedHiddenMLP, self).__init__(**kwargs)
        # a constant parameter: not updated by training
        self.rand_weight = self.params.get_constant('rand_weight', nd.random.uniform(shape=(20, 20)))
        self.dense = nn.Dense(20, activation='relu')

    def forward(self, x):
        x = self.dense(x)
        x = nd.relu(nd.dot(x, self.rand_weight.data()) + 1)
        x = self.dense(x)               # the same layer again: shared weights
        while x.norm().asscalar() > 1:
            x /= 2
        if x.norm().asscalar() < 0.8:
            x *= 10
        return x.sum()


fixed = FixedHiddenMLP()
fixed.initialize()
fixed_out = fixed(x)


class NestMLP(nn.Block):
    def __init__(self, **kwargs):
        super(NestMLP, self).__init__(**kwargs)
        self.net = nn.Sequential()
        self.net.add(nn.Dense(64, activation='relu'),
                     nn.Dense(32, activation='relu'))
        self.dense = nn.Dense(16, activation='relu')

    def forward(self, x):
        return self.dense(self.net(x))


chimera = nn.Sequential()
chimera.add(NestMLP(), nn.Dense(20), FixedHiddenMLP())
chimera.initialize()
chimera_out = chimera(x)
print(seq_out.shape, mlp_out.shape, myseq_out.shape, fixed_out, chimera_out)
