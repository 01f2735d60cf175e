"""The symbolic API, in the style of MXNet 1.x's symbol tutorials and test_gluon.py's SymbolBlock tests:
a model written with sym ops whose weights are created by the ops (fc1_weight, ...), trained as a
SymbolBlock; a block's internals as a SymbolBlock with every internal output; and composition."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, nd, sym
from gpuhybrid.gluon import nn

mx.random.seed(12)
data = sym.var('data')
fc1 = sym.FullyConnected(data=data, name='fc1', num_hidden=16)
act1 = sym.Activation(data=fc1, name='relu1', act_type='relu')
fc2 = sym.FullyConnected(data=act1, name='fc2', num_hidden=3)
print(fc2.list_arguments())
arg_shapes, out_shapes, aux_shapes = fc2.infer_shape(data=(10, 5))
print(arg_shapes, out_shapes)

net = gluon.SymbolBlock(outputs=fc2, inputs=data)
net.initialize()
features = nd.random.normal(shape=(30, 5))
labels = nd.array([i % 3 for i in range(30)])
loss = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
net(features)                 # the first call infers the deferred shapes
initial = {name: p.data().copy() for name, p in net.collect_params().items()}
for step in range(3):
    with autograd.record():
        l = loss(net(features), labels)
    l.backward()
    trainer.step(features.shape[0])
trained_out = net(features)

# test_gluon.py's SymbolBlock over every internal output of a Gluon model
model = nn.HybridSequential()
model.add(nn.Dense(12, activation='tanh'))
model.add(nn.Dropout(0.5))
model.add(nn.Dense(8, activation='tanh'), nn.Dense(4, in_units=8))
model.add(nn.Activation('relu'))
model.initialize()
inputs = sym.var('data')
outputs = model(inputs).get_internals()
smodel = gluon.SymbolBlock(outputs, inputs, params=model.collect_params())
x = nd.random.uniform(shape=(6, 10))
internal_values = smodel(x)
internal_names = outputs.list_outputs()
out = smodel(sym.var('in'))
print(len(out), len(internal_names))


class Total(gluon.HybridBlock):
    def __init__(self, model, **kwargs):
        super(Total, self).__init__(**kwargs)
        self.model = model

    def hybrid_forward(self, F, x):
        return sum([o.sum() for o in self.model(x)])


total = Total(smodel)
total.hybridize()
total_value = total(x)

# composition: a graph applied to another graph's output
head = sym.FullyConnected(sym.var('features'), sym.var('head_weight'), num_hidden=2, no_bias=True,
                          name='head')
stacked = head(features=act1)
print(stacked.list_arguments())
head_weight = nd.random.normal(shape=(2, 16))
stacked_out = stacked.eval(ctx=mx.cpu(), data=features, head_weight=head_weight,
                           fc1_weight=net.collect_params()['fc1_weight'].data(),
                           fc1_bias=net.collect_params()['fc1_bias'].data())[0]
