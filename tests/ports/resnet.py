"""ResNet, d2l (MXNet edition) chapter 7 style: the Residual block as the chapter writes it (an
nn.Block: two 3x3 convolutions with batch normalization, an optional 1x1 convolution on the shortcut),
resnet_block, and the chapter's ResNet-18 for Fashion-MNIST (one input channel, 10 classes) with its
layer-by-layer shapes at 224x224; then the same net written to hybridize (HybridBlock,
HybridSequential) and trained a few SGD steps on a tiny batch, imperative and hybridized from the same
weights."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, init, nd
from gpuhybrid.gluon import nn

mx.random.seed(37)


class Residual(nn.Block):
    def __init__(self, num_channels, use_1x1conv=False, strides=1, **kwargs):
        super(Residual, self).__init__(**kwargs)
        self.conv1 = nn.Conv2D(num_channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = nn.Conv2D(num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2D(num_channels, kernel_size=1, strides=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm()
        self.bn2 = nn.BatchNorm()

    def forward(self, X):
        Y = nd.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return nd.relu(Y + X)


# the same shape in and out, and half the height and width with more channels
blk = Residual(3)
blk.initialize()
X = nd.random.uniform(shape=(4, 3, 6, 6))
residual_X = X
residual_same = blk(X)
residual_same_block = blk
print(residual_same.shape)
blk = Residual(6, use_1x1conv=True, strides=2)
blk.initialize()
residual_down = blk(X)
residual_down_block = blk
print(residual_down.shape)

net = nn.Sequential()
net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
        nn.BatchNorm(), nn.Activation('relu'),
        nn.MaxPool2D(pool_size=3, strides=2, padding=1))


def resnet_block(num_channels, num_residuals, first_block=False):
    blk = nn.Sequential()
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.add(Residual(num_channels, use_1x1conv=True, strides=2))
        else:
            blk.add(Residual(num_channels))
    return blk


net.add(resnet_block(64, 2, first_block=True),
        resnet_block(128, 2),
        resnet_block(256, 2),
        resnet_block(512, 2))
net.add(nn.GlobalAvgPool2D(), nn.Dense(10))

X = nd.random.uniform(shape=(1, 1, 224, 224))
net.initialize()
resnet_X = X
resnet_shapes = []
for layer in net:
    X = layer(X)
    print(layer.name, 'output shape:\t', X.shape)
    resnet_shapes.append((layer.name, X.shape))
resnet_net, resnet_out = net, X


# --- hybridizable: the same blocks as HybridBlocks in HybridSequentials -------------------------------------
class HybridResidual(nn.HybridBlock):
    def __init__(self, num_channels, use_1x1conv=False, strides=1, **kwargs):
        super(HybridResidual, self).__init__(**kwargs)
        self.conv1 = nn.Conv2D(num_channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = nn.Conv2D(num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2D(num_channels, kernel_size=1, strides=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm()
        self.bn2 = nn.BatchNorm()

    def hybrid_forward(self, F, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def hybrid_resnet_block(num_channels, num_residuals, first_block=False):
    blk = nn.HybridSequential()
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.add(HybridResidual(num_channels, use_1x1conv=True, strides=2))
        else:
            blk.add(HybridResidual(num_channels))
    return blk


def resnet18(num_classes):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
            nn.BatchNorm(), nn.Activation('relu'),
            nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    net.add(hybrid_resnet_block(64, 2, first_block=True),
            hybrid_resnet_block(128, 2),
            hybrid_resnet_block(256, 2),
            hybrid_resnet_block(512, 2))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(num_classes))
    return net


# --- a few training steps on a tiny batch, imperative and hybridized ----------------------------------------
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


# 64x64, not 32x32: at 32x32 the last stage is 1x1, its BatchNorm sees two values per channel and SGD
# diverges (PyTorch's twin of this net does the same)
train_X = nd.random.uniform(shape=(2, 1, 64, 64))
train_y = nd.array([3, 8])
imperative_net, hybrid_net = resnet18(10), resnet18(10)
for n in (imperative_net, hybrid_net):
    n.initialize(init.Xavier())
    n(train_X)                         # the shapes are known: the weights can be copied
for p, q in zip(imperative_net.collect_params().values(), hybrid_net.collect_params().values()):
    q.set_data(p.data())
initial_params = {name: p.data().copy() for name, p in imperative_net.collect_params().items()}
hybrid_net.hybridize()
imperative_losses = train_steps(imperative_net, train_X, train_y, 3, lr=0.01)
hybrid_losses = train_steps(hybrid_net, train_X, train_y, 3, lr=0.01)
print('imperative', imperative_losses, 'hybridized', hybrid_losses)
