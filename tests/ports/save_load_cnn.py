"""MXNet's "Saving and Loading Gluon Models" tutorial with its LeNet-style CNN: train a little, save the
parameters with save_parameters, load them into a freshly built net with load_parameters and check the
predictions; then the hybridized net exported (symbol JSON and parameters) and imported as a
SymbolBlock. Random images with labels stand in for MNIST; files go to WORKDIR (set by the test)."""
import os

import gpuhybrid as mx
from gpuhybrid import autograd, gluon, nd

WORKDIR = os.environ.get('PORTS_WORKDIR', '.')
mx.random.seed(43)
ctx = mx.cpu()
num_outputs = 10
batch_size = 8


def build_lenet(net):
    with net.name_scope():
        # first convolution
        net.add(gluon.nn.Conv2D(channels=20, kernel_size=5, activation='relu'))
        net.add(gluon.nn.MaxPool2D(pool_size=2, strides=2))
        # second convolution
        net.add(gluon.nn.Conv2D(channels=50, kernel_size=5, activation='relu'))
        net.add(gluon.nn.MaxPool2D(pool_size=2, strides=2))
        # flatten before the fully connected layers
        net.add(gluon.nn.Flatten())
        # a fully connected layer of 512 neurons
        net.add(gluon.nn.Dense(512, activation="relu"))
        # one output per class
        net.add(gluon.nn.Dense(num_outputs))
        return net


images = nd.random.uniform(shape=(32, 1, 28, 28))
labels = nd.floor(nd.random.uniform(low=0, high=10, shape=(32,)))
train_data = gluon.data.DataLoader(gluon.data.ArrayDataset(images, labels), batch_size=batch_size,
                                   shuffle=False)


def train_model(model, epochs=1):
    model.initialize(mx.init.Xavier(), ctx=ctx)
    softmax_cross_entropy = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(model.collect_params(), 'sgd', {'learning_rate': .1})
    losses = []
    for epoch in range(epochs):
        for batch_num, (data, label) in enumerate(train_data):
            data = data.as_in_context(ctx)
            label = label.as_in_context(ctx)
            with autograd.record():
                output = model(data)
                loss = softmax_cross_entropy(output, label)
            loss.backward()
            trainer.step(data.shape[0])
            losses.append(nd.mean(loss).asscalar())
        print("Epoch: %d; Batch %d; Loss %f" % (epoch, batch_num, losses[-1]))
    return losses


net = build_lenet(gluon.nn.Sequential())
train_losses = train_model(net)
test_X = images[:4]
trained_out = net(test_X)

file_name = os.path.join(WORKDIR, "net.params")
net.save_parameters(file_name)

new_net = build_lenet(gluon.nn.Sequential())
new_net.load_parameters(file_name, ctx=ctx)
loaded_out = new_net(test_X)
print('predictions', loaded_out.argmax(axis=1), 'labels', labels[:4])
loaded_names = sorted(new_net.collect_params().keys())

# a hybridized net: export the symbol and the parameters, import them without the Python class
hnet = build_lenet(gluon.nn.HybridSequential())
hnet.hybridize()
hybrid_losses = train_model(hnet)
hybrid_out = hnet(test_X)
hnet.export(os.path.join(WORKDIR, "lenet"), epoch=1)
deserialized_net = gluon.nn.SymbolBlock.imports(os.path.join(WORKDIR, "lenet-symbol.json"), ['data'],
                                                os.path.join(WORKDIR, "lenet-0001.params"), ctx=ctx)
imported_out = deserialized_net(test_X)
