"""Batch normalization, d2l (MXNet edition) chapter 7 style: batch_norm from scratch (batch statistics
while training, the moving averages in prediction, told apart by ``autograd.is_training()``), a
BatchNorm block of our own with ``self.params.get`` for gamma and beta and NDArrays for the moving
statistics, LeNet with it, then the concise nn.BatchNorm: the two side by side on the same data, and
the concise LeNet trained a few steps imperatively and hybridized."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, init, nd
from gpuhybrid.gluon import nn

mx.random.seed(31)


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    # autograd says whether we are training or predicting
    if not autograd.is_training():
        # prediction: normalise with the moving averages
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            # a fully connected layer: mean and variance over the examples, per feature
            mean = X.mean(axis=0)
            var = ((X - mean) ** 2).mean(axis=0)
        else:
            # a convolution: mean and variance per channel (axis 1), keeping X's number of axes so that
            # they broadcast against it
            mean = X.mean(axis=(0, 2, 3), keepdims=True)
            var = ((X - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        # training: normalise with this batch's statistics
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # update the moving averages
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # scale and shift
    return Y, moving_mean, moving_var


class BatchNorm(nn.Block):
    def __init__(self, num_features, num_dims, **kwargs):
        super(BatchNorm, self).__init__(**kwargs)
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        # the scale and the shift are learned: initialised to 1 and 0
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        # the moving statistics are not learned: plain arrays, initialised to 0
        self.moving_mean = nd.zeros(shape)
        self.moving_var = nd.zeros(shape)

    def forward(self, X):
        # copy the moving statistics to X's device if they are elsewhere
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        # keep the updated moving statistics
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma.data(), self.beta.data(), self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y


# --- ours against nn.BatchNorm, on a convolution's output and on a dense layer's -------------------------
def side_by_side(num_features, shape, steps):
    ours, theirs = BatchNorm(num_features, num_dims=len(shape)), nn.BatchNorm()
    ours.initialize()
    theirs.initialize()
    ours.moving_var = nd.ones(ours.moving_var.shape)       # nn.BatchNorm starts its variance at 1
    outs = []
    for _ in range(steps):
        X = nd.random.normal(loc=2, scale=3, shape=shape)
        with autograd.record():
            outs.append((X, ours(X), theirs(X)))
    X = nd.random.normal(loc=2, scale=3, shape=shape)
    outs.append((X, ours(X), theirs(X)))                  # prediction: the moving statistics
    return ours, theirs, outs


conv_ours, conv_theirs, conv_outs = side_by_side(3, (4, 3, 5, 5), steps=3)
dense_ours, dense_theirs, dense_outs = side_by_side(6, (8, 6), steps=3)


# --- LeNet with our BatchNorm -------------------------------------------------------------------------------
def train_steps(net, X, y, num_steps, lr):
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    losses = []
    for _ in range(num_steps):
        with autograd.record():
            l = loss(net(X), y)
        l.backward()
        trainer.step(X.shape[0])
        losses.append(l.mean().asscalar())
    return losses


net = nn.Sequential()
net.add(nn.Conv2D(6, kernel_size=5),
        BatchNorm(6, num_dims=4),
        nn.Activation('sigmoid'),
        nn.MaxPool2D(pool_size=2, strides=2),
        nn.Conv2D(16, kernel_size=5),
        BatchNorm(16, num_dims=4),
        nn.Activation('sigmoid'),
        nn.MaxPool2D(pool_size=2, strides=2),
        nn.Dense(120),
        BatchNorm(120, num_dims=2),
        nn.Activation('sigmoid'),
        nn.Dense(84),
        BatchNorm(84, num_dims=2),
        nn.Activation('sigmoid'),
        nn.Dense(10))
net.initialize(init.Xavier())
train_X = nd.random.uniform(shape=(8, 1, 28, 28))
train_y = nd.array([0, 1, 2, 3, 4, 5, 6, 7])
scratch_losses = train_steps(net, train_X, train_y, 5, lr=1.0)
print('losses', scratch_losses)
print(net[1].gamma.data().reshape((-1,)), net[1].beta.data().reshape((-1,)))
scratch_net = net


# --- concise: nn.BatchNorm, imperative and hybridized -------------------------------------------------------
def concise_lenet():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=5),
            nn.BatchNorm(),
            nn.Activation('sigmoid'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(16, kernel_size=5),
            nn.BatchNorm(),
            nn.Activation('sigmoid'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Dense(120),
            nn.BatchNorm(),
            nn.Activation('sigmoid'),
            nn.Dense(84),
            nn.BatchNorm(),
            nn.Activation('sigmoid'),
            nn.Dense(10))
    net.initialize(init.Xavier())
    net(train_X)                             # the shapes are known: the weights can be copied
    return net


concise_net, concise_hybrid = concise_lenet(), concise_lenet()
for p, q in zip(concise_net.collect_params().values(), concise_hybrid.collect_params().values()):
    q.set_data(p.data())
concise_hybrid.hybridize()
concise_losses = train_steps(concise_net, train_X, train_y, 5, lr=1.0)
hybrid_losses = train_steps(concise_hybrid, train_X, train_y, 5, lr=1.0)
print('imperative', concise_losses, 'hybridized', hybrid_losses)
test_X = nd.random.uniform(shape=(3, 1, 28, 28))
concise_predict = concise_net(test_X)
hybrid_predict = concise_hybrid(test_X)
