"""Linear regression from scratch, d2l (MXNet edition) style: synthetic data, a shuffling data_iter,
parameters with attach_grad, squared loss and minibatch SGD writing into the parameters."""
import random

import gpuhybrid as mx
from gpuhybrid import autograd, nd

mx.random.seed(1)
random.seed(1)


def synthetic_data(w, b, num_examples):
    X = nd.random.normal(0, 1, (num_examples, len(w)))
    y = nd.dot(X, w) + b
    y += nd.random.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))


true_w = nd.array([2, -3.4])
true_b = 4.2
features, labels = synthetic_data(true_w, true_b, 1000)


def data_iter(batch_size, features, labels):
    num_examples = len(features)
    indices = list(range(num_examples))
    random.shuffle(indices)                   # examples in random order
    for i in range(0, num_examples, batch_size):
        batch_indices = nd.array(indices[i: min(i + batch_size, num_examples)])
        yield features.take(batch_indices), labels.take(batch_indices)


w = nd.random.normal(0, 0.01, (2, 1))
b = nd.zeros(1)
w_init, b_init = w.copy(), b.copy()
w.attach_grad()
b.attach_grad()


def linreg(X, w, b):
    return nd.dot(X, w) + b


def squared_loss(y_hat, y):
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2


def sgd(params, lr, batch_size):
    for param in params:
        param[:] = param - lr * param.grad / batch_size


lr = 0.03
num_epochs = 3
batch_size = 10
net = linreg
loss = squared_loss
epoch_losses = []
for epoch in range(num_epochs):
    for X, y in data_iter(batch_size, features, labels):
        with autograd.record():
            l = loss(net(X, w, b), y)
        l.backward()
        sgd([w, b], lr, batch_size)
    train_l = loss(net(features, w, b), labels)
    epoch_losses.append(train_l.mean().asnumpy())
    print('epoch %d, loss %f' % (epoch + 1, train_l.mean().asnumpy()))
w_error = true_w.reshape(w.shape) - w
b_error = true_b - b
print('Error in estimating w', w_error)
print('Error in estimating b', b_error)
