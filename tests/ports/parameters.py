"""Parameter management, d2l (MXNet edition) style: access, regex selection, built-in and custom
initialisers, writing into weights, and shared parameters."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, init, nd
from gpuhybrid.gluon import nn

mx.random.seed(7)
net = nn.Sequential()
net.add(nn.Dense(8, activation='relu'))
net.add(nn.Dense(1))
net.initialize()                          # default: uniform in [-0.07, 0.07]
X = nd.random.uniform(shape=(2, 4))
Y = net(X)

first_params = net[0].params
print(first_params)
print(type(net[1].bias))
print(net[1].bias)
print(net[1].bias.data())
print(net[0].weight.grad())
all_names = list(net.collect_params().keys())
weight_names = list(net.collect_params('.*weight').keys())
print(net.collect_params())
print(net.collect_params('.*weight'))


def block1():
    blk = nn.Sequential()
    blk.add(nn.Dense(32, activation='relu'))
    blk.add(nn.Dense(16, activation='relu'))
    return blk


def block2():
    blk = nn.Sequential()
    for _ in range(4):
        blk.add(block1())         # nested, each block of its own
    return blk


rgnet = nn.Sequential()
rgnet.add(block2())
rgnet.add(nn.Dense(10))
rgnet.initialize()
rg_out = rgnet(X)
print(rgnet.collect_params)
print(rgnet[0][1][0].bias.name)
rg_bias = rgnet[0][1][0].bias.data()

net.initialize(init=init.Normal(sigma=0.01), force_reinit=True)
normal_weight = net[0].weight.data()
net.initialize(init=init.Constant(1), force_reinit=True)
constant_weight = net[0].weight.data()
net[0].weight.initialize(init=init.Xavier(), force_reinit=True)
net[1].initialize(init=init.Constant(42), force_reinit=True)
xavier_weight = net[0].weight.data()
constant42 = net[1].weight.data()


class MyInit(init.Initializer):
    def _init_weight(self, name, data):
        print('Init', name, data.shape)
        data[:] = nd.random.uniform(low=-10, high=10, shape=data.shape)
        data *= data.abs() >= 5


net.initialize(MyInit(), force_reinit=True)
my_weight = net[0].weight.data().copy()
net[0].weight.data()[:] += 1
net[0].weight.data()[0, 0] = 42
edited_weight = net[0].weight.data()

# shared parameters: give the shared layer's params to another layer, and add one layer twice
net = nn.Sequential()
shared = nn.Dense(8, activation='relu')
net.add(nn.Dense(8, activation='relu'),
        shared,
        nn.Dense(8, activation='relu', params=shared.params),
        nn.Dense(10))
net.initialize()
X = nd.random.uniform(shape=(2, 20))
net(X)                                    # the first call fixes the deferred input sizes
print(net[1].weight.data()[0] == net[2].weight.data()[0])
net[1].weight.data()[0, 0] = 100
print(net[1].weight.data()[0] == net[2].weight.data()[0])
with autograd.record():
    shared_out = net(X)
shared_out.backward()
shared_same_object = net[1].weight is net[2].weight
shared_grad = net[1].weight.grad()
shared_count = len(net.collect_params())

trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
before_step = [(layer.weight.data().copy(), layer.bias.data().copy()) for layer in net]
trainer.step(2)
after_step = net[1].weight.data()
