/* gh_host_launch.c -- a CPython extension that calls generated CPU kernels with little overhead.
 *
 * launch(entry, n, arrays, scalars): `entry` is the address of a kernel's packed entry point
 * (void NAME_packed(long long n, void* const* arrays, const unsigned char* scalars)), `arrays` a
 * list of C-contiguous buffers (outputs first), `scalars` a bytes object of 8-byte slots. Compiled
 * once per Python version by gpuhybrid's kernel cache; ctypes is the fallback when it cannot be.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define GH_MAX_ARRAYS 64

typedef void (*gh_packed_kernel)(long long n, void* const* arrays, const unsigned char* scalars);

static PyObject* launch(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 4 || !PyList_Check(args[2]) || !PyBytes_Check(args[3])) {
    PyErr_SetString(PyExc_TypeError, "launch(entry: int, n: int, arrays: list, scalars: bytes)");
    return NULL;
  }
  gh_packed_kernel kernel = (gh_packed_kernel)PyLong_AsVoidPtr(args[0]);
  long long n = PyLong_AsLongLong(args[1]);
  if (PyErr_Occurred()) return NULL;
  Py_ssize_t count = PyList_GET_SIZE(args[2]);
  if (count > GH_MAX_ARRAYS) {
    PyErr_SetString(PyExc_ValueError, "too many arrays for one kernel");
    return NULL;
  }
  Py_buffer views[GH_MAX_ARRAYS];
  void* pointers[GH_MAX_ARRAYS];
  Py_ssize_t acquired = 0;
  for (; acquired < count; ++acquired) {
    if (PyObject_GetBuffer(PyList_GET_ITEM(args[2], acquired), &views[acquired], PyBUF_C_CONTIGUOUS) != 0) break;
    pointers[acquired] = views[acquired].buf;
  }
  if (acquired == count) {
    const unsigned char* scalars = (const unsigned char*)PyBytes_AS_STRING(args[3]);
    if (n >= 32768) {
      Py_BEGIN_ALLOW_THREADS
      kernel(n, pointers, scalars);
      Py_END_ALLOW_THREADS
    } else {
      kernel(n, pointers, scalars);
    }
  }
  for (Py_ssize_t i = 0; i < acquired; ++i) PyBuffer_Release(&views[i]);
  if (acquired != count) return NULL;
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
  {"launch", (PyCFunction)(void (*)(void))launch, METH_FASTCALL, "Call a packed CPU kernel."},
  {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "gh_host_launch", NULL, -1, methods};

PyMODINIT_FUNC PyInit_gh_host_launch(void) { return PyModule_Create(&module); }
