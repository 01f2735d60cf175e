"""Data manipulation and automatic differentiation, d2l (MXNet edition) style: creating and reshaping
NDArrays, operators, broadcasting, indexing and slicing, in-place writes, NumPy conversion, and
gradients of a function with Python control flow."""
import numpy as np

import gpuhybrid as mx
from gpuhybrid import autograd, nd

mx.random.seed(21)
x = nd.arange(12)
X = x.reshape((3, 4))
zeros, ones = nd.zeros((2, 3, 4)), nd.ones((2, 3, 4))
Y = nd.array([[2, 1, 4, 3], [1, 2, 3, 4], [4, 3, 2, 1]])
R = nd.random.normal(0, 1, shape=(3, 4))
ops = {'add': X + Y, 'mul': X * Y, 'div': X / Y, 'exp': Y.exp(), 'dot': nd.dot(X, Y.T),
       'concat0': nd.concat(X, Y, dim=0), 'concat1': nd.concat(X, Y, dim=1), 'eq': X == Y,
       'sum': X.sum(), 'norm': X.norm(), 'mean_axis': X.mean(axis=1)}
total = X.sum().asscalar()
norm = X.norm().asscalar()

A = nd.arange(3).reshape((3, 1))
B = nd.arange(2).reshape((1, 2))
broadcast = A + B

row_slice = X[1:3]
X[1, 2] = 9
X[1:2, :] = 12
written = X.copy()

before = id(Y)
Y = Y + X
rebound = id(Y) == before
Z = Y.zeros_like()
before = id(Z)
Z[:] = X + Y
same_buffer = id(Z) == before
nd.elemwise_add(X, Y, out=Z)
out_written = id(Z) == before
before = id(X)
X += Y
in_place = id(X) == before

P = np.ones((2, 3))
D = nd.array(P)
back = D.asnumpy()

v = nd.arange(4).reshape((4, 1))
v.attach_grad()
with autograd.record():
    y = 2 * nd.dot(v.T, v)
y.backward()
v_grad = v.grad
is_training_outside = autograd.is_training()
with autograd.record():
    is_training_inside = autograd.is_training()


def f(a):
    b = a * 2
    while b.norm().asscalar() < 1000:
        b = b * 2
    if b.sum().asscalar() > 0:
        c = b
    else:
        c = 100 * b
    return c


a = nd.random.normal(shape=1)
a.attach_grad()
with autograd.record():
    c = f(a)
c.backward()
control_flow_ok = (a.grad == c / a).asscalar()
print(a.grad, c / a)
