"""Pooling and LeNet, d2l (MXNet edition) chapter 6 style: max and average pooling from scratch,
nn.MaxPool2D with its pool size, padding and strides, pooling over several channels (nd.concat), then
LeNet with sigmoid activations: its layer-by-layer shapes, and a few SGD steps, imperative and
hybridized (HybridSequential)."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, init, nd
from gpuhybrid.gluon import nn

mx.random.seed(17)


# --- Pooling ------------------------------------------------------------------------------------------------
def pool2d(X, pool_size, mode='max'):
    p_h, p_w = pool_size
    Y = nd.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            if mode == 'max':
                Y[i, j] = X[i: i + p_h, j: j + p_w].max()
            elif mode == 'avg':
                Y[i, j] = X[i: i + p_h, j: j + p_w].mean()
    return Y


X = nd.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
max_small = pool2d(X, (2, 2))
avg_small = pool2d(X, (2, 2), 'avg')
print(max_small, avg_small)
random_X = nd.random.normal(shape=(5, 6))
max_random = pool2d(random_X, (2, 3))
avg_random = pool2d(random_X, (3, 2), 'avg')

X = nd.arange(16).reshape((1, 1, 4, 4))
print(X)
# a pooling layer has no parameters: nothing to initialize
pool_outs = []
for pool in (nn.MaxPool2D(3),
             nn.MaxPool2D(3, padding=1, strides=2),
             nn.MaxPool2D((2, 3), padding=(1, 2), strides=(2, 3))):
    pool_outs.append(pool(X))
    print(pool_outs[-1])

X = nd.concat(X, X + 1, dim=1)
pool2d = nn.MaxPool2D(3, padding=1, strides=2)
two_channel_X = X
two_channel_out = pool2d(X)
print(two_channel_out)

# --- LeNet --------------------------------------------------------------------------------------------------
net = nn.Sequential()
net.add(nn.Conv2D(channels=6, kernel_size=5, padding=2, activation='sigmoid'),
        nn.AvgPool2D(pool_size=2, strides=2),
        nn.Conv2D(channels=16, kernel_size=5, activation='sigmoid'),
        nn.AvgPool2D(pool_size=2, strides=2),
        # Dense flattens (batch, channels, height, width) to (batch, channels * height * width) by default
        nn.Dense(120, activation='sigmoid'),
        nn.Dense(84, activation='sigmoid'),
        nn.Dense(10))

X = nd.random.uniform(shape=(1, 1, 28, 28))
net.initialize()
lenet_X = X
lenet_shapes = []
for layer in net:
    X = layer(X)
    print(layer.name, 'output shape:\t', X.shape)
    lenet_shapes.append((layer.name, X.shape))
lenet_out = X


# the training loop of the chapter (train_ch5) on a small batch of random images with labels
def evaluate_accuracy(data_iter, net):
    acc_sum, n = nd.array([0]), 0
    for X, y in data_iter:
        y = y.astype('float32')
        acc_sum += (net(X).argmax(axis=1) == y).sum()
        n += y.size
    return acc_sum.asscalar() / n


def train_steps(net, X, y, num_steps, lr):
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    losses = []
    for _ in range(num_steps):
        with autograd.record():
            y_hat = net(X)
            l = loss(y_hat, y).sum()
        l.backward()
        trainer.step(X.shape[0])
        losses.append(l.asscalar() / X.shape[0])
    return losses


def lenet():
    hnet = nn.HybridSequential()
    hnet.add(nn.Conv2D(channels=6, kernel_size=5, padding=2, activation='sigmoid'),
             nn.AvgPool2D(pool_size=2, strides=2),
             nn.Conv2D(channels=16, kernel_size=5, activation='sigmoid'),
             nn.AvgPool2D(pool_size=2, strides=2),
             nn.Dense(120, activation='sigmoid'),
             nn.Dense(84, activation='sigmoid'),
             nn.Dense(10))
    return hnet


train_X = nd.random.uniform(shape=(4, 1, 28, 28))
train_y = nd.array([0, 3, 7, 3])
imperative_net = lenet()
imperative_net.initialize(init.Xavier())
imperative_net(train_X)                                  # shapes known, so the weights can be copied
lenet_init = {name: p.data().copy() for name, p in imperative_net.collect_params().items()}
hybrid_net = lenet()
hybrid_net.initialize(init.Xavier())
hybrid_net(train_X)
for p, q in zip(imperative_net.collect_params().values(), hybrid_net.collect_params().values()):
    q.set_data(p.data())
hybrid_net.hybridize()
# the chapter's lr=0.9 is for batches of 256; four images take a smaller step
imperative_losses = train_steps(imperative_net, train_X, train_y, 4, lr=0.1)
hybrid_losses = train_steps(hybrid_net, train_X, train_y, 4, lr=0.1)
print('imperative', imperative_losses, 'hybridized', hybrid_losses)
train_acc = evaluate_accuracy([(train_X, train_y)], hybrid_net)
