"""Reading and writing, d2l (MXNet edition) style: NDArrays with nd.save/nd.load (one, a list, a dict)
and a model's parameters with save_parameters/load_parameters. Files go to WORKDIR (set by the test)."""
import os

import gpuhybrid as mx
from gpuhybrid import nd
from gpuhybrid.gluon import nn

WORKDIR = os.environ.get('PORTS_WORKDIR', '.')
mx.random.seed(13)

x = nd.arange(4)
nd.save(os.path.join(WORKDIR, 'x-file'), x)
x2 = nd.load(os.path.join(WORKDIR, 'x-file'))
print(x2)

y = nd.zeros(4)
nd.save(os.path.join(WORKDIR, 'x-files'), [x, y])
x3, y3 = nd.load(os.path.join(WORKDIR, 'x-files'))

mydict = {'x': x, 'y': y}
nd.save(os.path.join(WORKDIR, 'mydict'), mydict)
mydict2 = nd.load(os.path.join(WORKDIR, 'mydict'))
print(mydict2)


class MLP(nn.Block):
    def __init__(self, **kwargs):
        super(MLP, self).__init__(**kwargs)
        self.hidden = nn.Dense(256, activation='relu')
        self.output = nn.Dense(10)

    def forward(self, x):
        return self.output(self.hidden(x))


net = MLP()
net.initialize()
X = nd.random.uniform(shape=(2, 20))
Y = net(X)
net.save_parameters(os.path.join(WORKDIR, 'mlp.params'))

clone = MLP()
clone.load_parameters(os.path.join(WORKDIR, 'mlp.params'))
Y_clone = clone(X)
print(Y_clone == Y)
