"""Convolutions from scratch, d2l (MXNet edition) chapter 6 style: cross-correlation with NDArray slicing
and a loop, a Conv2D block of our own, learning an edge-detecting kernel with autograd, padding and
strides with nn.Conv2D, multiple input and output channels (nd.add_n / nd.stack) and 1x1 convolutions
as matrix products."""
import gpuhybrid as mx
from gpuhybrid import autograd, init, nd
from gpuhybrid.gluon import nn

mx.random.seed(11)


# --- Convolutions for images ------------------------------------------------------------------------------
def corr2d(X, K):
    """Two-dimensional cross-correlation."""
    h, w = K.shape
    Y = nd.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i: i + h, j: j + w] * K).sum()
    return Y


X = nd.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
K = nd.array([[0, 1], [2, 3]])
small_corr = corr2d(X, K)
print(small_corr)


class Conv2D(nn.Block):
    def __init__(self, kernel_size, **kwargs):
        super(Conv2D, self).__init__(**kwargs)
        self.weight = self.params.get('weight', shape=kernel_size)
        self.bias = self.params.get('bias', shape=(1,))

    def forward(self, x):
        return corr2d(x, self.weight.data()) + self.bias.data()


my_conv = Conv2D(kernel_size=(2, 2))
my_conv.initialize(init.Normal(sigma=1))
my_conv_in = nd.random.uniform(shape=(5, 4))
my_conv_out = my_conv(my_conv_in)

# the chapter's exercise: differentiate through our Conv2D. corr2d writes into Y element by element,
# which autograd refuses while recording (as MXNet does)
try:
    with autograd.record():
        my_conv(my_conv_in)
    exercise_error = None
except mx.base.MXNetError as e:
    exercise_error = e
print(exercise_error)

# an image that is white in the middle, black at the sides: its edges are where the kernel [1, -1] fires
X = nd.ones((6, 8))
X[:, 2:6] = 0
print(X)
K = nd.array([[1, -1]])
Y = corr2d(X, K)
print(Y)
Y_transposed = corr2d(X.T, K)        # the kernel finds vertical edges only

# learn the kernel from X and Y: a Conv2D with one output channel and a (1, 2) kernel
conv2d = nn.Conv2D(1, kernel_size=(1, 2), use_bias=False)
conv2d.initialize()
X = X.reshape((1, 1, 6, 8))
Y = Y.reshape((1, 1, 6, 7))
edge_losses, edge_kernels = [], []
for i in range(10):
    with autograd.record():
        Y_hat = conv2d(X)
        l = (Y_hat - Y) ** 2
    l.backward()
    edge_kernels.append(conv2d.weight.data().copy())
    conv2d.weight.data()[:] -= 3e-2 * conv2d.weight.grad()
    edge_losses.append(l.sum().asscalar())
    if (i + 1) % 2 == 0:
        print('batch %d, loss %.3f' % (i + 1, l.sum().asscalar()))
learned_kernel = conv2d.weight.data().reshape((1, 2))
print(learned_kernel)

# set the kernel by hand: the layer then computes corr2d exactly
conv2d.weight.set_data(nd.array([[[[1, -1]]]]))
set_kernel_out = conv2d(X)


# --- Padding and stride ------------------------------------------------------------------------------------
def comp_conv2d(conv2d, X):
    conv2d.initialize()
    # (1, 1): a batch of one example with one channel
    X = X.reshape((1, 1) + X.shape)
    Y = conv2d(X)
    # drop the batch and channel axes
    return Y.reshape(Y.shape[2:])


X = nd.random.uniform(shape=(8, 8))
padding_X = X
padding_convs, padding_shapes = [], []
for conv2d in (nn.Conv2D(1, kernel_size=3, padding=1),
               nn.Conv2D(1, kernel_size=(5, 3), padding=(2, 1)),
               nn.Conv2D(1, kernel_size=3, padding=1, strides=2),
               nn.Conv2D(1, kernel_size=(3, 5), padding=(0, 1), strides=(3, 4))):
    out = comp_conv2d(conv2d, X)
    print(out.shape)
    padding_convs.append((conv2d, out))
    padding_shapes.append(out.shape)


# --- Multiple input and output channels --------------------------------------------------------------------
def corr2d_multi_in(X, K):
    # go over the channels (axis 0) of X and K together and add the results up
    return nd.add_n(*[corr2d(x, k) for x, k in zip(X, K)])


X = nd.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]],
              [[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
K = nd.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]])
multi_in = corr2d_multi_in(X, K)
print(multi_in)


def corr2d_multi_in_out(X, K):
    # one corr2d_multi_in per output channel (axis 0 of K), stacked
    return nd.stack(*[corr2d_multi_in(X, k) for k in K])


K = nd.stack(K, K + 1, K + 2)
print(K.shape)
multi_in_out = corr2d_multi_in_out(X, K)
multi_X, multi_K = X, K


def corr2d_multi_in_out_1x1(X, K):
    c_i, h, w = X.shape
    c_o = K.shape[0]
    X = X.reshape((c_i, h * w))
    K = K.reshape((c_o, c_i))
    Y = nd.dot(K, X)        # a fully connected layer's matrix product
    return Y.reshape((c_o, h, w))


X = nd.random.uniform(shape=(3, 3, 3))
K = nd.random.uniform(shape=(2, 3, 1, 1))
Y1 = corr2d_multi_in_out_1x1(X, K)
Y2 = corr2d_multi_in_out(X, K)
one_by_one_agrees = (Y1 - Y2).norm().asscalar() < 1e-6
one_by_one_X, one_by_one_K = X, K

# the same with the layer: nn.Conv2D with a 1x1 kernel whose weight is set to K
conv1x1 = nn.Conv2D(2, kernel_size=1, in_channels=3, use_bias=False)
conv1x1.initialize()
conv1x1.weight.set_data(K)
Y3 = conv1x1(X.expand_dims(axis=0))[0]
