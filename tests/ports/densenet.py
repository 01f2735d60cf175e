"""DenseNet, d2l (MXNet edition) chapter 7 style: conv_block (BatchNorm, ReLU, 3x3 convolution), a
DenseBlock that concatenates each block's input and output on the channel axis, transition_block
(1x1 convolution and average pooling halving height and width), and the chapter's DenseNet with four
dense blocks; the chapter's shapes, then the whole net hybridized on a small batch, in prediction and
in a training step."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, nd
from gpuhybrid.gluon import nn

mx.random.seed(41)


def conv_block(num_channels):
    blk = nn.HybridSequential()
    blk.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(num_channels, kernel_size=3, padding=1))
    return blk


class DenseBlock(nn.HybridBlock):
    def __init__(self, num_convs, num_channels, **kwargs):
        super(DenseBlock, self).__init__(**kwargs)
        self.net = nn.HybridSequential()
        for _ in range(num_convs):
            self.net.add(conv_block(num_channels))

    def hybrid_forward(self, F, X):
        for blk in self.net:
            Y = blk(X)
            # join each block's input and output on the channel axis
            X = F.concat(X, Y, dim=1)
        return X


blk = DenseBlock(2, 10)
blk.initialize()
X = nd.random.uniform(shape=(4, 3, 8, 8))
dense_X = X
Y = blk(X)
dense_block = blk
print(Y.shape)


def transition_block(num_channels):
    blk = nn.HybridSequential()
    blk.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(num_channels, kernel_size=1),
            nn.AvgPool2D(pool_size=2, strides=2))
    return blk


blk = transition_block(10)
blk.initialize()
transition_out = blk(Y)
transition = blk
print(transition_out.shape)


def densenet():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
            nn.BatchNorm(), nn.Activation('relu'),
            nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    # num_channels: the channels so far
    num_channels, growth_rate = 64, 32
    num_convs_in_dense_blocks = [4, 4, 4, 4]
    for i, num_convs in enumerate(num_convs_in_dense_blocks):
        net.add(DenseBlock(num_convs, growth_rate))
        # the channels out of this dense block
        num_channels += num_convs * growth_rate
        # between dense blocks, a transition layer halves the channels
        if i != len(num_convs_in_dense_blocks) - 1:
            num_channels //= 2
            net.add(transition_block(num_channels))
    net.add(nn.BatchNorm(), nn.Activation('relu'), nn.GlobalAvgPool2D(), nn.Dense(10))
    return net


net = densenet()
net.initialize()
X = nd.random.uniform(shape=(1, 1, 96, 96))
densenet_shapes = []
for layer in net:
    X = layer(X)
    print(layer.name, 'output shape:\t', X.shape)
    densenet_shapes.append((layer.name, X.shape))

# a small batch: prediction, then one training step's loss and gradients, imperative then hybridized
small_X = nd.random.uniform(shape=(2, 1, 32, 32))
small_y = nd.array([1, 4])
loss = gluon.loss.SoftmaxCrossEntropyLoss()


def loss_and_grads(net):
    with autograd.record():
        l = loss(net(small_X), small_y).mean()
    l.backward()
    return l.asscalar(), [p.grad().copy() for p in net.collect_params().values() if p.grad_req != 'null']


imperative_predict = net(small_X)                      # the initial moving statistics: 0 and 1
imperative_loss, imperative_grads = loss_and_grads(net)   # batch statistics; the moving ones update
net.hybridize()
hybrid_loss, hybrid_grads = loss_and_grads(net)
hybrid_predict = net(small_X)                          # the moving statistics after the two updates
print(imperative_loss, hybrid_loss)
densenet_net = net
