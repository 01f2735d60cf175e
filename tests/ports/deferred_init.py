"""Deferred initialisation, d2l (MXNet edition) style: layers without input sizes learn them from the
first batch; an initialiser runs only then; sizes given up front initialise at once."""
import gpuhybrid as mx
from gpuhybrid import init, nd
from gpuhybrid.gluon import nn

mx.random.seed(11)
initialised = []


class MyInit(init.Initializer):
    def _init_weight(self, name, data):
        initialised.append((name, data.shape))
        print('Init', name, data.shape)
        data[:] = nd.random.uniform(low=-1, high=1, shape=data.shape)


net = nn.Sequential()
net.add(nn.Dense(256, activation='relu'))
net.add(nn.Dense(10))
net.initialize(init=MyInit())
shapes_before = [p.shape for p in net.collect_params().values()]
calls_before_data = len(initialised)
print(net.collect_params())

X = nd.random.uniform(shape=(2, 20))
Y = net(X)
shapes_after = [p.shape for p in net.collect_params().values()]
calls_after_data = len(initialised)

net.initialize(init=MyInit(), force_reinit=True)   # shapes known now: runs at once
calls_after_reinit = len(initialised)

known = nn.Sequential()
known.add(nn.Dense(256, in_units=20, activation='relu'))
known.add(nn.Dense(10, in_units=256))
known.initialize(init=MyInit())
calls_with_sizes = len(initialised)
known_out = known(X)
