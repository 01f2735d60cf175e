"""AlexNet, VGG and NiN, d2l (MXNet edition) chapter 7 style: each net built as the chapter builds it
and run layer by layer on one 224x224 image, printing each block's output shape (AlexNet at the
chapter's size; VGG with the chapter's narrower `small_conv_arch`, NiN at the chapter's size), then a
HybridSequential of each net's layers, hybridized, on the same image."""
import gpuhybrid as mx
from gpuhybrid import nd
from gpuhybrid.gluon import nn

mx.random.seed(23)


def print_shapes(net, X):
    shapes = []
    for layer in net:
        X = layer(X)
        print(layer.name, 'output shape:\t', X.shape)
        shapes.append((layer.name, X.shape))
    return shapes, X


# --- AlexNet ------------------------------------------------------------------------------------------------
def alexnet():
    net = nn.Sequential()
    # a larger 11 x 11 window to capture objects, stride 4 to cut the output size; more channels than LeNet
    net.add(nn.Conv2D(96, kernel_size=11, strides=4, activation='relu'),
            nn.MaxPool2D(pool_size=3, strides=2),
            # a smaller window, padding 2 keeps height and width, more output channels
            nn.Conv2D(256, kernel_size=5, padding=2, activation='relu'),
            nn.MaxPool2D(pool_size=3, strides=2),
            # three convolutions with smaller windows, more channels again
            nn.Conv2D(384, kernel_size=3, padding=1, activation='relu'),
            nn.Conv2D(384, kernel_size=3, padding=1, activation='relu'),
            nn.Conv2D(256, kernel_size=3, padding=1, activation='relu'),
            nn.MaxPool2D(pool_size=3, strides=2),
            # fully connected layers many times larger than LeNet's, with dropout against overfitting
            nn.Dense(4096, activation='relu'), nn.Dropout(0.5),
            nn.Dense(4096, activation='relu'), nn.Dropout(0.5),
            # Fashion-MNIST: 10 classes, not the paper's 1000
            nn.Dense(10))
    return net


net = alexnet()
X = nd.random.uniform(shape=(1, 1, 224, 224))
net.initialize()
alexnet_X = X
alexnet_shapes, alexnet_out = print_shapes(net, X)
alexnet_net = net


# --- VGG ----------------------------------------------------------------------------------------------------
def vgg_block(num_convs, num_channels):
    blk = nn.Sequential()
    for _ in range(num_convs):
        blk.add(nn.Conv2D(num_channels, kernel_size=3, padding=1, activation='relu'))
    blk.add(nn.MaxPool2D(pool_size=2, strides=2))
    return blk


conv_arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg(conv_arch):
    net = nn.Sequential()
    # the convolutional part
    for (num_convs, num_channels) in conv_arch:
        net.add(vgg_block(num_convs, num_channels))
    # the fully connected part
    net.add(nn.Dense(4096, activation='relu'), nn.Dropout(0.5),
            nn.Dense(4096, activation='relu'), nn.Dropout(0.5),
            nn.Dense(10))
    return net


ratio = 4
small_conv_arch = [(pair[0], pair[1] // ratio) for pair in conv_arch]
net = vgg(small_conv_arch)
net.initialize()
X = nd.random.uniform(shape=(1, 1, 224, 224))
vgg_X = X
vgg_shapes, vgg_out = print_shapes(net, X)
vgg_net = net


# --- Network in network -------------------------------------------------------------------------------------
def nin_block(num_channels, kernel_size, strides, padding):
    blk = nn.Sequential()
    blk.add(nn.Conv2D(num_channels, kernel_size, strides, padding, activation='relu'),
            nn.Conv2D(num_channels, kernel_size=1, activation='relu'),
            nn.Conv2D(num_channels, kernel_size=1, activation='relu'))
    return blk


def nin():
    net = nn.Sequential()
    net.add(nin_block(96, kernel_size=11, strides=4, padding=0),
            nn.MaxPool2D(pool_size=3, strides=2),
            nin_block(256, kernel_size=5, strides=1, padding=2),
            nn.MaxPool2D(pool_size=3, strides=2),
            nin_block(384, kernel_size=3, strides=1, padding=1),
            nn.MaxPool2D(pool_size=3, strides=2),
            nn.Dropout(0.5),
            # 10 label classes
            nin_block(10, kernel_size=3, strides=1, padding=1),
            # the global average pooling layer sets its window to the input's height and width
            nn.GlobalAvgPool2D(),
            # (batch size, 10, 1, 1) -> (batch size, 10)
            nn.Flatten())
    return net


net = nin()
X = nd.random.uniform(shape=(1, 1, 224, 224))
net.initialize()
nin_X = X
nin_shapes, nin_out = print_shapes(net, X)
nin_net = net


# --- the same layers in a HybridSequential, hybridized: the same weights, one compiled plan -----------------
def hybridized(net, X):
    hnet = nn.HybridSequential()
    for blk in net:
        # VGG's and NiN's blocks are Sequentials: take their layers
        hnet.add(*(blk if isinstance(blk, nn.Sequential) else [blk]))
    hnet.hybridize()
    return hnet(X)


alexnet_hybrid_out = hybridized(alexnet_net, alexnet_X)
vgg_hybrid_out = hybridized(vgg_net, vgg_X)
nin_hybrid_out = hybridized(nin_net, nin_X)
