/* The compiled core's scanner of simple request heads: quickhead.parse in C.
 *
 * quickhead.py is the reference: this returns exactly what its ``parse`` returns, for every
 * input (tests/unit/test_quickhead.py and the fuzz target compare the two, and both with
 * llhttp). One pass over the head, no copies but the objects returned: the Python version
 * makes six bytes-method calls, each parsing its arguments generically (12,000 instructions
 * a hello request compiled by mypyc, callgrind), where this takes a few hundred.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

enum { TEXT = 1, TOKEN = 2, TARGET = 4 };

static unsigned char classes[256];

#define N_METHODS 7
static const char *const method_names[N_METHODS] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
static PyObject *methods[N_METHODS];

/* Fields that frame a body or change what the connection does next (quickhead._DECLINED). */
#define N_DECLINED 5
static const char *const declined[N_DECLINED] = {
    "content-length", "transfer-encoding", "upgrade", "expect", "connection"};

static void
init_classes(void)
{
    const char *token = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const char *target = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                         "-._~!$&'()*+,;=:@/?%";
    for (int c = 0x20; c < 0x7F; c++)
        classes[c] |= TEXT;
    classes['\t'] |= TEXT;
    for (const char *p = token; *p; p++)
        classes[(unsigned char)*p] |= TOKEN;
    for (const char *p = target; *p; p++)
        classes[(unsigned char)*p] |= TARGET;
}

/* The end of the line starting at *start* (the index of its CR), or -1 when it holds a
 * byte that is not text or its CR is not followed by LF. */
static Py_ssize_t
line_end(const unsigned char *buf, Py_ssize_t start, Py_ssize_t size)
{
    Py_ssize_t i = start;
    while (i < size && (classes[buf[i]] & TEXT))
        i++;
    if (i + 1 >= size || buf[i] != '\r' || buf[i + 1] != '\n')
        return -1;
    return i;
}

static PyObject *
find_method(const unsigned char *buf, Py_ssize_t size)
{
    for (int m = 0; m < N_METHODS; m++) {
        if ((Py_ssize_t)strlen(method_names[m]) == size &&
            memcmp(buf, method_names[m], (size_t)size) == 0)
            return methods[m];
    }
    return NULL;
}

/* method SP target SP HTTP/1.1, the target origin-form of TARGET bytes. Sets *method and
 * the target's bounds; 0 when the line is not such a line. */
static int
request_line(const unsigned char *buf, Py_ssize_t end, PyObject **method,
             Py_ssize_t *target, Py_ssize_t *target_end)
{
    const unsigned char *first = memchr(buf, ' ', (size_t)end);
    if (first == NULL)
        return 0;
    Py_ssize_t sp1 = first - buf;
    const unsigned char *second = memchr(buf + sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (second == NULL)
        return 0;
    Py_ssize_t sp2 = second - buf;
    if (end - sp2 - 1 != 8 || memcmp(buf + sp2 + 1, "HTTP/1.1", 8) != 0)
        return 0; /* also: a third space */
    *method = find_method(buf, sp1);
    if (*method == NULL || sp2 - sp1 - 1 < 1 || buf[sp1 + 1] != '/')
        return 0;
    for (Py_ssize_t i = sp1 + 1; i < sp2; i++) {
        if (!(classes[buf[i]] & TARGET))
            return 0;
    }
    *target = sp1 + 1;
    *target_end = sp2;
    return 1;
}

static int
equals_lower(const unsigned char *buf, Py_ssize_t size, const char *lower)
{
    if ((Py_ssize_t)strlen(lower) != size)
        return 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = buf[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* 1 when the field (lowercased name) may not come in a simple head. */
static int
is_declined(const char *name, Py_ssize_t size, const unsigned char *value,
            Py_ssize_t value_size)
{
    for (int d = 0; d < N_DECLINED; d++) {
        if ((Py_ssize_t)strlen(declined[d]) == size &&
            memcmp(name, declined[d], (size_t)size) == 0)
            return d != N_DECLINED - 1 || !equals_lower(value, value_size, "keep-alive");
    }
    return 0;
}

/* One field line [start, end): appended to *fields* as (lowercased name, stripped value),
 * its size added to *size*. 1: done, 0: not a simple field, -1: error set. */
static int
field(const unsigned char *buf, Py_ssize_t start, Py_ssize_t end, PyObject *fields,
      Py_ssize_t *size)
{
    const unsigned char *colon = memchr(buf + start, ':', (size_t)(end - start));
    if (colon == NULL || colon == buf + start)
        return 0;
    Py_ssize_t name_size = colon - (buf + start);
    Py_ssize_t value = start + name_size + 1, value_end = end;
    while (value < value_end && (buf[value] == ' ' || buf[value] == '\t'))
        value++;
    while (value_end > value && (buf[value_end - 1] == ' ' || buf[value_end - 1] == '\t'))
        value_end--;
    PyObject *name = PyBytes_FromStringAndSize(NULL, name_size);
    if (name == NULL)
        return -1;
    char *out = PyBytes_AS_STRING(name);
    for (Py_ssize_t i = 0; i < name_size; i++) {
        unsigned char c = buf[start + i];
        if (!(classes[c] & TOKEN)) {
            Py_DECREF(name);
            return 0;
        }
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (is_declined(out, name_size, buf + value, value_end - value)) {
        Py_DECREF(name);
        return 0;
    }
    PyObject *text = PyBytes_FromStringAndSize((const char *)buf + value, value_end - value);
    if (text == NULL) {
        Py_DECREF(name);
        return -1;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(name);
        Py_DECREF(text);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, text);
    int failed = PyList_Append(fields, pair);
    Py_DECREF(pair);
    if (failed)
        return -1;
    *size += name_size + (value_end - value) + 4;
    return 1;
}

/* The field lines from *start* to the empty line that must end the data. */
static PyObject *
fields_of(const unsigned char *buf, Py_ssize_t start, Py_ssize_t size, Py_ssize_t *head)
{
    PyObject *fields = PyList_New(0);
    if (fields == NULL)
        return NULL;
    while (start != size - 2) {
        Py_ssize_t end = line_end(buf, start, size);
        if (end <= start) { /* not text, or an empty line before the end */
            Py_DECREF(fields);
            Py_RETURN_NONE;
        }
        int done = field(buf, start, end, fields, head);
        if (done != 1) {
            Py_DECREF(fields);
            if (done == 0)
                Py_RETURN_NONE;
            return NULL;
        }
        start = end + 2;
    }
    return fields;
}

static PyObject *
parse(PyObject *module, PyObject *data)
{
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "parse() takes bytes, not %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (size < 4 || memcmp(buf + size - 4, "\r\n\r\n", 4) != 0)
        Py_RETURN_NONE;
    Py_ssize_t end = line_end(buf, 0, size);
    PyObject *method;
    Py_ssize_t target, target_end;
    if (end <= 0 || end == size - 2 || !request_line(buf, end, &method, &target, &target_end))
        Py_RETURN_NONE;
    Py_ssize_t head = target_end - target;
    PyObject *fields = fields_of(buf, end + 2, size, &head);
    if (fields == NULL || fields == Py_None)
        return fields;
    PyObject *url = PyBytes_FromStringAndSize((const char *)buf + target, target_end - target);
    if (url == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    PyObject *count = PyLong_FromSsize_t(head);
    PyObject *result = count == NULL ? NULL : PyTuple_New(4);
    if (result == NULL) {
        Py_XDECREF(count);
        Py_DECREF(url);
        Py_DECREF(fields);
        return NULL;
    }
    Py_INCREF(method);
    PyTuple_SET_ITEM(result, 0, method);
    PyTuple_SET_ITEM(result, 1, url);
    PyTuple_SET_ITEM(result, 2, fields);
    PyTuple_SET_ITEM(result, 3, count);
    return result;
}

/* quickhead.plain_target: no '?', '#' or '%' in the target. */
static PyObject *
plain_target(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "plain_target() takes bytes");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(arg);
    const unsigned char *end = p + PyBytes_GET_SIZE(arg);
    for (; p < end; p++)
        if (*p == '?' || *p == '#' || *p == '%')
            Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyMethodDef headscan_methods[] = {
    {"parse", parse, METH_O,
     "parse(data) -> (method, target, fields, size) or None: quickhead.parse in C."},
    {"plain_target", plain_target, METH_O,
     "plain_target(target) -> bool: quickhead.plain_target in C."},
    {NULL, NULL, 0, NULL},
};

static int
headscan_exec(PyObject *module)
{
    init_classes();
    for (int m = 0; m < N_METHODS; m++) {
        if (methods[m] == NULL) {
            methods[m] = PyBytes_FromString(method_names[m]);
            if (methods[m] == NULL)
                return -1;
        }
    }
    return 0;
}

static PyModuleDef_Slot headscan_slots[] = {
    {Py_mod_exec, headscan_exec},
    {0, NULL},
};

static struct PyModuleDef headscan_module = {
    PyModuleDef_HEAD_INIT, "_headscan",
    "The compiled core's scanner of simple request heads (see octo.http.quickhead).", 0,
    headscan_methods, headscan_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__headscan(void)
{
    return PyModuleDef_Init(&headscan_module);
}
