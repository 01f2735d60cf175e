"""Hybridization, d2l (MXNet edition) style: a HybridSequential factory, hybridize() giving the same
numbers, a HybridBlock whose hybrid_forward uses F ops, calling a block on a Symbol, export and
SymbolBlock.imports. Files go to WORKDIR (set by the test)."""
import os

import gpuhybrid as mx
from gpuhybrid import gluon, nd, sym
from gpuhybrid.gluon import nn

WORKDIR = os.environ.get('PORTS_WORKDIR', '.')
mx.random.seed(8)


def get_net():
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation='relu'),
            nn.Dense(128, activation='relu'),
            nn.Dense(2))
    net.initialize()
    return net


x = nd.random.normal(shape=(1, 512))
net = get_net()
imperative_out = net(x)
net.hybridize()
hybrid_out = net(x)

net.export(os.path.join(WORKDIR, 'my_mlp'))
imported = gluon.SymbolBlock.imports(os.path.join(WORKDIR, 'my_mlp-symbol.json'), ['data'],
                                     os.path.join(WORKDIR, 'my_mlp-0000.params'))
imported_out = imported(x)

symbolic = net(sym.var('data'))
symbol_outputs = symbolic.list_outputs()
symbol_arguments = symbolic.list_arguments()
print(symbol_outputs, symbol_arguments)

seen_F = []


class HybridNet(nn.HybridBlock):
    def __init__(self, **kwargs):
        super(HybridNet, self).__init__(**kwargs)
        self.hidden = nn.Dense(10)
        self.output = nn.Dense(2)

    def hybrid_forward(self, F, x):
        seen_F.append(F.__name__)
        print('F: ', F)
        print('x: ', x)
        x = F.relu(self.hidden(x))
        print('hidden: ', x)
        return self.output(x)


hnet = HybridNet()
hnet.initialize()
small = nd.random.normal(shape=(1, 4))
hnet_imperative = hnet(small)
hnet.hybridize()
hnet_first = hnet(small)
hnet_second = hnet(small)         # runs the compiled plan: hybrid_forward is not called again
F_calls = list(seen_F)
hnet_symbol = hnet(sym.var('x'))
print(hnet_symbol)
