"""GoogLeNet, d2l (MXNet edition) chapter 7 style: the Inception block as a custom block whose four
paths are joined by concat on the channel axis, the five stages b1..b5, and the chapter's
layer-by-layer shapes on one 96x96 image. The block is written as a HybridBlock (``F.concat``), so the
whole net hybridizes."""
import gpuhybrid as mx
from gpuhybrid import nd
from gpuhybrid.gluon import nn

mx.random.seed(29)


class Inception(nn.HybridBlock):
    # c1 - c4: the number of output channels of each path
    def __init__(self, c1, c2, c3, c4, **kwargs):
        super(Inception, self).__init__(**kwargs)
        # path 1: a 1 x 1 convolution
        self.p1_1 = nn.Conv2D(c1, kernel_size=1, activation='relu')
        # path 2: a 1 x 1 convolution, then a 3 x 3 convolution
        self.p2_1 = nn.Conv2D(c2[0], kernel_size=1, activation='relu')
        self.p2_2 = nn.Conv2D(c2[1], kernel_size=3, padding=1, activation='relu')
        # path 3: a 1 x 1 convolution, then a 5 x 5 convolution
        self.p3_1 = nn.Conv2D(c3[0], kernel_size=1, activation='relu')
        self.p3_2 = nn.Conv2D(c3[1], kernel_size=5, padding=2, activation='relu')
        # path 4: 3 x 3 max pooling, then a 1 x 1 convolution
        self.p4_1 = nn.MaxPool2D(pool_size=3, strides=1, padding=1)
        self.p4_2 = nn.Conv2D(c4, kernel_size=1, activation='relu')

    def hybrid_forward(self, F, x):
        p1 = self.p1_1(x)
        p2 = self.p2_2(self.p2_1(x))
        p3 = self.p3_2(self.p3_1(x))
        p4 = self.p4_2(self.p4_1(x))
        # join the paths on the channel axis
        return F.concat(p1, p2, p3, p4, dim=1)


# one block on a small input: 4 + 8 + 2 + 3 channels come out
inception = Inception(4, (3, 8), (2, 2), 3)
inception.initialize()
inception_X = nd.random.uniform(shape=(2, 5, 7, 7))
inception_out = inception(inception_X)
inception.hybridize()
inception_hybrid_out = inception(inception_X)

b1 = nn.HybridSequential()
b1.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3, activation='relu'),
       nn.MaxPool2D(pool_size=3, strides=2, padding=1))

b2 = nn.HybridSequential()
b2.add(nn.Conv2D(64, kernel_size=1, activation='relu'),
       nn.Conv2D(192, kernel_size=3, padding=1, activation='relu'),
       nn.MaxPool2D(pool_size=3, strides=2, padding=1))

b3 = nn.HybridSequential()
b3.add(Inception(64, (96, 128), (16, 32), 32),
       Inception(128, (128, 192), (32, 96), 64),
       nn.MaxPool2D(pool_size=3, strides=2, padding=1))

b4 = nn.HybridSequential()
b4.add(Inception(192, (96, 208), (16, 48), 64),
       Inception(160, (112, 224), (24, 64), 64),
       Inception(128, (128, 256), (24, 64), 64),
       Inception(112, (144, 288), (32, 64), 64),
       Inception(256, (160, 320), (32, 128), 128),
       nn.MaxPool2D(pool_size=3, strides=2, padding=1))

b5 = nn.HybridSequential()
b5.add(Inception(256, (160, 320), (32, 128), 128),
       Inception(384, (192, 384), (48, 128), 128),
       nn.GlobalAvgPool2D())

net = nn.HybridSequential()
net.add(b1, b2, b3, b4, b5, nn.Dense(10))

X = nd.random.uniform(shape=(1, 1, 96, 96))
net.initialize()
googlenet_X = X
googlenet_shapes = []
for layer in net:
    X = layer(X)
    print(layer.name, 'output shape:\t', X.shape)
    googlenet_shapes.append((layer.name, X.shape))
googlenet_out = X
net.hybridize()
googlenet_hybrid_out = net(googlenet_X)
