/* The compiled core's finished awaitable: octo.http.done.Done in C.
 *
 * done.py is the reference and says why it exists. This twin adds what Python code cannot:
 * an ``am_send`` slot, so that ``await DONE`` returns at once, where any awaitable written
 * in Python (or compiled by mypyc) ends by raising StopIteration, which the awaiting frame
 * then catches. On 3.12 raising one costs about 1,000 instructions (the exception object is
 * made at once), and ASGI's send is awaited twice a request (callgrind).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
done_await(PyObject *self)
{
    return Py_NewRef(self);
}

static PyObject *
done_next(PyObject *self)
{
    return NULL; /* no exception set: the iterator is exhausted, as a finished coroutine */
}

static PySendResult
done_am_send(PyObject *self, PyObject *value, PyObject **result)
{
    *result = Py_NewRef(Py_None);
    return PYGEN_RETURN;
}

static PyObject *
done_send(PyObject *self, PyObject *value)
{
    PyErr_SetNone(PyExc_StopIteration);
    return NULL;
}

/* The exception being raised gets *traceback*, as generator.throw gives it. */
static void
attach_traceback(PyObject *traceback)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    if (PyTraceBack_Check(traceback))
        PyException_SetTraceback(exc, traceback);
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *old;
    PyErr_Fetch(&type, &value, &old);
    PyErr_NormalizeException(&type, &value, &old);
    if (PyTraceBack_Check(traceback)) {
        Py_XDECREF(old);
        old = Py_NewRef(traceback);
        PyException_SetTraceback(value, traceback);
    }
    PyErr_Restore(type, value, old);
#endif
}

/* throw(type[, value[, traceback]]) or throw(exception): raised here, as by a finished
 * coroutine. */
static PyObject *
done_throw(PyObject *self, PyObject *args)
{
    PyObject *type, *value = Py_None, *traceback = Py_None;
    if (!PyArg_UnpackTuple(args, "throw", 1, 3, &type, &value, &traceback))
        return NULL;
    if (PyExceptionInstance_Check(type)) {
        if (value != Py_None) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return NULL;
        }
        PyErr_SetObject((PyObject *)Py_TYPE(type), type);
    }
    else if (PyExceptionClass_Check(type)) {
        PyErr_SetObject(type, value == Py_None ? NULL : value);
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
        return NULL;
    }
    if (traceback != Py_None)
        attach_traceback(traceback);
    return NULL;
}

static PyObject *
done_close(PyObject *self, PyObject *unused)
{
    Py_RETURN_NONE;
}

static PyObject *
done_repr(PyObject *self)
{
    return PyUnicode_FromString("<octo DONE>");
}

static PyMethodDef done_methods[] = {
    {"send", done_send, METH_O, "send(value): raises StopIteration (it has finished)."},
    {"throw", done_throw, METH_VARARGS, "throw(type[, value[, tb]]): raises it here."},
    {"close", done_close, METH_NOARGS, "close(): nothing to close."},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods done_async = {
    .am_await = done_await,
    .am_send = done_am_send,
};

static PyTypeObject DoneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "octo._ccore._done.Done",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An awaitable that has finished: awaiting it returns None at once.",
    .tp_as_async = &done_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = done_next,
    .tp_methods = done_methods,
    .tp_repr = done_repr,
};

static int
done_exec(PyObject *module)
{
    if (PyType_Ready(&DoneType) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "Done", (PyObject *)&DoneType) < 0)
        return -1;
    PyObject *done = PyObject_New(PyObject, &DoneType);
    if (done == NULL)
        return -1;
    int failed = PyModule_AddObjectRef(module, "DONE", done);
    Py_DECREF(done);
    return failed;
}

static PyModuleDef_Slot done_slots[] = {
    {Py_mod_exec, done_exec},
    {0, NULL},
};

static struct PyModuleDef done_module = {
    PyModuleDef_HEAD_INIT, "_done",
    "The compiled core's finished awaitable (see octo.http.done).", 0,
    NULL, done_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__done(void)
{
    return PyModuleDef_Init(&done_module);
}
