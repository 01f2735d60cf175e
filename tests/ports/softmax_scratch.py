"""Softmax regression and an MLP from scratch, d2l (MXNet edition) style, on small random data: three
Gaussian blobs, softmax, cross-entropy by nd.pick, accuracy, minibatch SGD writing into parameters."""
import gpuhybrid as mx
from gpuhybrid import autograd, nd

mx.random.seed(4)
num_inputs, num_outputs, per_class = 6, 3, 40
centres = nd.random.normal(0, 2, (num_outputs, num_inputs))
features = nd.concat(*[centres[c] + nd.random.normal(0, 1, (per_class, num_inputs))
                       for c in range(num_outputs)], dim=0)
labels = nd.concat(*[nd.full((per_class,), c) for c in range(num_outputs)], dim=0)


def data_iter(batch_size, features, labels):
    for i in range(0, len(features), batch_size):       # fixed order: the test repeats it in NumPy
        yield features[i:i + batch_size], labels[i:i + batch_size]


def softmax(X):
    X_exp = X.exp()
    partition = X_exp.sum(axis=1, keepdims=True)
    return X_exp / partition        # broadcasting


def cross_entropy(y_hat, y):
    return - nd.pick(y_hat, y).log()


def accuracy(y_hat, y):
    return (y_hat.argmax(axis=1) == y.astype('float32')).mean().asscalar()


def sgd(params, lr, batch_size):
    for param in params:
        param[:] = param - lr * param.grad / batch_size


def train(net, params, num_epochs, lr, batch_size):
    for epoch in range(num_epochs):
        train_l_sum, n = 0.0, 0
        for X, y in data_iter(batch_size, features, labels):
            with autograd.record():
                y_hat = net(X)
                l = cross_entropy(y_hat, y).sum()
            l.backward()
            sgd(params, lr, batch_size)
            train_l_sum += l.asscalar()
            n += y.size
        print('epoch %d, loss %.4f, train acc %.3f' % (epoch + 1, train_l_sum / n,
                                                       accuracy(net(features), labels)))


W = nd.random.normal(scale=0.01, shape=(num_inputs, num_outputs))
b = nd.zeros(num_outputs)
softmax_init = [W.copy(), b.copy()]
W.attach_grad()
b.attach_grad()


def softmax_net(X):
    return softmax(nd.dot(X.reshape((-1, num_inputs)), W) + b)


train(softmax_net, [W, b], 5, 0.1, 20)
softmax_acc = accuracy(softmax_net(features), labels)

num_hiddens = 16
W1 = nd.random.normal(scale=0.1, shape=(num_inputs, num_hiddens))
b1 = nd.zeros(num_hiddens)
W2 = nd.random.normal(scale=0.1, shape=(num_hiddens, num_outputs))
b2 = nd.zeros(num_outputs)
mlp_params = [W1, b1, W2, b2]
mlp_init = [p.copy() for p in mlp_params]
for param in mlp_params:
    param.attach_grad()


def relu(X):
    return nd.maximum(X, 0)


def mlp_net(X):
    X = X.reshape((-1, num_inputs))
    H = relu(nd.dot(X, W1) + b1)
    return softmax(nd.dot(H, W2) + b2)


train(mlp_net, mlp_params, 5, 0.2, 20)
mlp_acc = accuracy(mlp_net(features), labels)
