/* gh_host_launch.c -- a CPython extension that calls generated CPU kernels with little overhead.
 *
 * launch(entry, n, outputs, inputs, scalars)
 *   entry    the address of a kernel's packed entry point
 *            (void NAME_packed(long long n, void* const* arrays, const unsigned char* scalars));
 *   outputs  either a list of C-contiguous, writable ndarrays to write into, or a tuple of
 *            (shape, dtype) pairs: fresh arrays are allocated for those;
 *   inputs   a list of arrays; any that is not a C-contiguous, aligned ndarray is copied into one
 *            (what np.ascontiguousarray would do), the dtype left as it is;
 *   scalars  a bytes object of 8-byte slots.
 * Returns the output array when there is one, else a list of them.
 *
 * set_runner(address) names gpuhybrid's thread pool (gh_parallel_run in kernels/gh_threads.c): every
 * launch goes through it with the largest array's element count as the work, and the GIL is released
 * when the work is large enough for the pool to split it.
 *
 * Built with the NumPy C API (PyArray_DATA is a field read, where the buffer protocol costs a
 * few hundred nanoseconds per array). Compiled once per Python and NumPy version by gpuhybrid's
 * kernel cache; ctypes is the fallback when it cannot be.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#define GH_MAX_ARRAYS 64
#define GH_RELEASE_GIL_MIN 32768      /* elements: below, releasing the GIL costs more than it frees */

typedef void (*gh_packed_kernel)(long long n, void* const* arrays, const unsigned char* scalars);
typedef void (*gh_runner)(gh_packed_kernel kernel, long long n, void* const* arrays,
                          const unsigned char* scalars, long long work);
static gh_runner runner = NULL;

/* A new reference to a fresh C-contiguous array of (shape, dtype), or NULL with an exception set. */
static PyObject* new_output(PyObject* spec) {
  PyObject* shape = NULL;
  PyArray_Descr* descr = NULL;
  if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(spec, 0))) {
    PyErr_SetString(PyExc_TypeError, "an output spec is a (shape: tuple, dtype) pair");
    return NULL;
  }
  shape = PyTuple_GET_ITEM(spec, 0);
  if (!PyArray_DescrConverter(PyTuple_GET_ITEM(spec, 1), &descr)) return NULL;
  Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
  if (ndim > NPY_MAXDIMS) {
    Py_DECREF(descr);
    PyErr_SetString(PyExc_ValueError, "too many dimensions for an output");
    return NULL;
  }
  npy_intp dims[NPY_MAXDIMS];
  for (Py_ssize_t d = 0; d < ndim; ++d) {
    dims[d] = (npy_intp)PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, d));
    if (dims[d] == -1 && PyErr_Occurred()) {
      Py_DECREF(descr);
      return NULL;
    }
  }
  return PyArray_Empty((int)ndim, dims, descr, 0);   /* steals descr */
}

static PyObject* launch(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 5 || !(PyList_Check(args[2]) || PyTuple_Check(args[2])) || !PyList_Check(args[3]) ||
      !PyBytes_Check(args[4])) {
    PyErr_SetString(PyExc_TypeError,
                    "launch(entry: int, n: int, outputs: list | tuple, inputs: list, scalars: bytes)");
    return NULL;
  }
  gh_packed_kernel kernel = (gh_packed_kernel)PyLong_AsVoidPtr(args[0]);
  long long n = PyLong_AsLongLong(args[1]);
  if (PyErr_Occurred()) return NULL;
  const int allocate = PyTuple_Check(args[2]);
  Py_ssize_t n_out = PySequence_Fast_GET_SIZE(args[2]), n_in = PyList_GET_SIZE(args[3]);
  if (n_out < 1 || n_out + n_in > GH_MAX_ARRAYS) {
    PyErr_SetString(PyExc_ValueError, "a kernel takes 1 to 64 arrays, at least one of them an output");
    return NULL;
  }
  PyObject* held[GH_MAX_ARRAYS];      /* new references: outputs, then inputs */
  long long work = 0;                 /* elements of the largest array */
  void* pointers[GH_MAX_ARRAYS];
  Py_ssize_t count = 0;
  PyObject* const* outs = PySequence_Fast_ITEMS(args[2]);
  for (; count < n_out; ++count) {
    PyObject* out;
    if (allocate) {
      out = new_output(outs[count]);
      if (out == NULL) goto fail;
    } else {
      out = outs[count];
      if (!PyArray_Check(out) || !PyArray_ISCARRAY((PyArrayObject*)out)) {
        PyErr_SetString(PyExc_ValueError, "a kernel output must be a C-contiguous, writable ndarray");
        goto fail;
      }
      Py_INCREF(out);
    }
    held[count] = out;
    pointers[count] = PyArray_DATA((PyArrayObject*)out);
    if (PyArray_SIZE((PyArrayObject*)out) > work) work = PyArray_SIZE((PyArrayObject*)out);
  }
  for (Py_ssize_t k = 0; k < n_in; ++k, ++count) {
    PyObject* in = PyArray_FROM_OF(PyList_GET_ITEM(args[3], k), NPY_ARRAY_CARRAY_RO);
    if (in == NULL) goto fail;
    held[count] = in;
    pointers[count] = PyArray_DATA((PyArrayObject*)in);
    if (PyArray_SIZE((PyArrayObject*)in) > work) work = PyArray_SIZE((PyArrayObject*)in);
  }
  {
    const unsigned char* scalars = (const unsigned char*)PyBytes_AS_STRING(args[4]);
    if (runner == NULL) {
      kernel(n, pointers, scalars);
    } else if (work >= GH_RELEASE_GIL_MIN) {
      Py_BEGIN_ALLOW_THREADS
      runner(kernel, n, pointers, scalars, work);
      Py_END_ALLOW_THREADS
    } else {
      runner(kernel, n, pointers, scalars, work);
    }
  }
  for (Py_ssize_t i = n_out; i < count; ++i) Py_DECREF(held[i]);
  if (n_out == 1) return held[0];
  {
    PyObject* result = PyList_New(n_out);
    if (result == NULL) {
      for (Py_ssize_t i = 0; i < n_out; ++i) Py_DECREF(held[i]);
      return NULL;
    }
    for (Py_ssize_t i = 0; i < n_out; ++i) PyList_SET_ITEM(result, i, held[i]);   /* steals */
    return result;
  }
fail:
  for (Py_ssize_t i = 0; i < count; ++i) Py_DECREF(held[i]);
  return NULL;
}

static PyObject* set_runner(PyObject* self, PyObject* address) {
  (void)self;
  void* pointer = PyLong_AsVoidPtr(address);
  if (pointer == NULL && PyErr_Occurred()) return NULL;
  runner = (gh_runner)pointer;
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
  {"set_runner", set_runner, METH_O, "Launch kernels through gh_parallel_run at this address (0: directly)."},
  {"launch", (PyCFunction)(void (*)(void))launch, METH_FASTCALL, "Call a packed CPU kernel."},
  {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "gh_host_launch", NULL, -1, methods};

PyMODINIT_FUNC PyInit_gh_host_launch(void) {
  import_array();
  return PyModule_Create(&module);
}
