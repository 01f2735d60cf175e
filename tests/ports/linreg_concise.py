"""Concise linear regression, d2l (MXNet edition) / MXNet Gluon crash course style: ArrayDataset and
DataLoader, one Dense layer, L2Loss and a Trainer."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, init, nd
from gpuhybrid.gluon import data as gdata
from gpuhybrid.gluon import loss as gloss
from gpuhybrid.gluon import nn

mx.random.seed(2)
true_w = nd.array([2, -3.4])
true_b = 4.2
features = nd.random.normal(scale=1, shape=(1000, 2))
labels = nd.dot(features, true_w) + true_b
labels += nd.random.normal(scale=0.01, shape=labels.shape)


def load_array(data_arrays, batch_size, is_train=True):
    dataset = gdata.ArrayDataset(*data_arrays)
    return gdata.DataLoader(dataset, batch_size, shuffle=is_train)


batch_size = 10
data_iter = load_array((features, labels), batch_size)
first_X, first_y = next(iter(data_iter))

net = nn.Sequential()
net.add(nn.Dense(1))
net.initialize(init.Normal(sigma=0.01))
loss = gloss.L2Loss()
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.03})

num_epochs = 3
for epoch in range(1, num_epochs + 1):
    for X, y in data_iter:
        with autograd.record():
            l = loss(net(X), y)
        l.backward()
        trainer.step(batch_size)
    l = loss(net(features), labels)
    print('epoch %d, loss: %f' % (epoch, l.mean().asnumpy()))
final_loss = l.mean().asscalar()

dense = net[0]
w = dense.weight.data()
b = dense.bias.data()
print('Error in estimating w', true_w.reshape(w.shape) - w)
print('Error in estimating b', true_b - b)
print(dense.weight.grad())

# one more step on a fixed batch, to compare with the update rule in the test
step_X, step_y = features[:batch_size], labels[:batch_size]
w_before, b_before = w.copy(), b.copy()
with autograd.record():
    l = loss(net(step_X), step_y)
l.backward()
trainer.step(batch_size)
w_after, b_after = dense.weight.data(), dense.bias.data()
