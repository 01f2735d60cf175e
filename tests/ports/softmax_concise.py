"""Concise softmax regression and MLP, d2l (MXNet edition) / MXNet Gluon tutorial style, on small
random data: DataLoader, Dense layers, SoftmaxCrossEntropyLoss, Trainer, hybridized training."""
import gpuhybrid as mx
from gpuhybrid import autograd, gluon, init, nd
from gpuhybrid.gluon import loss as gloss
from gpuhybrid.gluon import nn

mx.random.seed(6)
num_inputs, num_classes, per_class = 8, 4, 50
centres = nd.random.normal(0, 2, (num_classes, num_inputs))
features = nd.concat(*[centres[c] + nd.random.normal(0, 1, (per_class, num_inputs))
                       for c in range(num_classes)], dim=0)
labels = nd.concat(*[nd.full((per_class,), c) for c in range(num_classes)], dim=0)
dataset = gluon.data.ArrayDataset(features, labels)
train_iter = gluon.data.DataLoader(dataset, batch_size=25, shuffle=True)


def evaluate_accuracy(data_iter, net):
    acc_sum, n = 0.0, 0
    for X, y in data_iter:
        y = y.astype('float32')
        acc_sum += (net(X).argmax(axis=1) == y).sum().asscalar()
        n += y.size
    return acc_sum / n


def train(net, num_epochs, lr):
    loss = gloss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    for epoch in range(num_epochs):
        train_l_sum, train_acc_sum, n = 0.0, 0.0, 0
        for X, y in train_iter:
            with autograd.record():
                y_hat = net(X)
                l = loss(y_hat, y).sum()
            l.backward()
            trainer.step(X.shape[0])
            y = y.astype('float32')
            train_l_sum += l.asscalar()
            train_acc_sum += (y_hat.argmax(axis=1) == y).sum().asscalar()
            n += y.size
        test_acc = evaluate_accuracy(train_iter, net)
        print('epoch %d, loss %.4f, train acc %.3f, test acc %.3f'
              % (epoch + 1, train_l_sum / n, train_acc_sum / n, test_acc))
    return loss


softmax_net = nn.Sequential()
softmax_net.add(nn.Dense(num_classes))
softmax_net.initialize(init.Normal(sigma=0.01))
softmax_loss = train(softmax_net, 5, 0.1)
softmax_acc = evaluate_accuracy(train_iter, softmax_net)
softmax_final_loss = softmax_loss(softmax_net(features), labels).mean().asscalar()

mlp = nn.HybridSequential()
mlp.add(nn.Dense(32, activation='relu'),
        nn.Dropout(0.1),
        nn.Dense(num_classes))
mlp.initialize(init.Normal(sigma=0.01))
mlp.hybridize()
mlp_loss = train(mlp, 8, 0.5)
mlp_acc = evaluate_accuracy(train_iter, mlp)
mlp_out = mlp(features)
