/*
 * A window's numeric column summarised in C: its moments (streams/drift/summary.py) and its counts and sums
 * in the reference's bins by the lookup table (streams/drift/bins.py, EdgeIndex).
 *
 * Why: numpy makes a pass over the column per operation: the minimum, maximum, mean, the centred values,
 * their squares and sum; then the bin's cell (subtract, scale, clip, truncate), its start, a gather and a
 * compare per refinement step, and two bincounts. A window delta of 100-row events is tens of thousands of
 * rows, larger than the caches, so those passes were memory traffic: summaries took 0.24-0.30 µs a row of
 * 16 features, a quarter of the monitor's time. Here the moments take two passes and the bins one, and the
 * column stays in the cache between them.
 *
 * Moments: the sums are compensated (Neumaier), so the mean and the sum of squared deviations are at least as
 * accurate as numpy's pairwise sums (tests/unit/test_summary_and_drift.py compares them at 1e-12).
 *
 * Bins: exactly
 * what the numpy path gives (tests/unit/test_statistics.py holds them together and both to
 * np.searchsorted): the same cell arithmetic in double precision (subtract, then multiply: no fused
 * multiply-add, see setup.py), edges stepped until the value is below the next one, and each bin's sum added
 * in the order of the values, as np.bincount adds its weights. Without numpy's C API: arrays come in through
 * the buffer protocol and the caller allocates the outputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

/* A one-dimensional buffer of float64 (``real``) or int64 items in native byte order. */
static int get(PyObject *object, Py_buffer *view, int flags, int real, const char *what) {
    if (PyObject_GetBuffer(object, view, flags | PyBUF_FORMAT) < 0) return -1;
    const char *format = view->format;
    if (format[0] == '@' || format[0] == '=') format++;
    int fits = real ? strcmp(format, "d") == 0 : (strcmp(format, "l") == 0 || strcmp(format, "q") == 0);
    if (view->ndim != 1 || view->itemsize != 8 || !fits) {
        PyErr_Format(PyExc_TypeError, "%s: a one-dimensional array of %s expected", what, real ? "float64" : "int64");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(counts_sums_doc,
"counts_sums(values, low, scale, cells, start, padded, steps, counts, sums)\n--\n\n"
"Adds each value (float64, any stride; not NaN) to its bin of ``counts`` (int64) and ``sums`` (float64):\n"
"its cell ``(v - low) * scale`` clipped to 0 .. cells + 1, its bin from ``start[cell]`` (int64) moved on\n"
"``steps`` times by whether the value is at least ``padded[bin]`` (the edges, then a NaN no value reaches).");

static PyObject *counts_sums(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "counts_sums takes nine arguments");
        return NULL;
    }
    double low = PyFloat_AsDouble(args[1]), scale = PyFloat_AsDouble(args[2]);
    Py_ssize_t cells = PyLong_AsSsize_t(args[3]), steps = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred()) return NULL;
    PyObject *result = NULL;
    Py_buffer values, start, padded, counts, sums;
    if (get(args[0], &values, PyBUF_STRIDES, 1, "values") < 0) return NULL;
    if (get(args[4], &start, PyBUF_C_CONTIGUOUS, 0, "start") < 0) goto release_values;
    if (get(args[5], &padded, PyBUF_C_CONTIGUOUS, 1, "padded") < 0) goto release_start;
    if (get(args[7], &counts, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE, 0, "counts") < 0) goto release_padded;
    if (get(args[8], &sums, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE, 1, "sums") < 0) goto release_counts;
    Py_ssize_t edges = padded.shape[0] - 1, bins = counts.shape[0];
    if (start.shape[0] != cells + 2 || bins != edges + 1 || sums.shape[0] != bins || edges < 0 || steps < 0) {
        PyErr_SetString(PyExc_ValueError, "counts_sums: start, padded, counts and sums do not fit the cells");
        goto release_sums;
    }
    const int64_t *first = start.buf;
    const double *edge = padded.buf;
    if (!isnan(edge[edges])) { /* the sentinel that stops every step at the last bin */
        PyErr_SetString(PyExc_ValueError, "counts_sums: padded must end with a NaN");
        goto release_sums;
    }
    for (Py_ssize_t c = 0; c < cells + 2; c++) { /* so no value's bin leaves the arrays, whatever the caller */
        if (first[c] < 0 || first[c] > edges) {
            PyErr_SetString(PyExc_ValueError, "counts_sums: a start is not a bin");
            goto release_sums;
        }
    }
    int64_t *count = counts.buf;
    double *sum = sums.buf;
    const char *at = values.buf;
    Py_ssize_t n = values.shape[0], stride = values.strides[0];
    double top = (double)(cells + 1);
    for (Py_ssize_t i = 0; i < n; i++, at += stride) {
        double v = *(const double *)at;
        double cell = (v - low) * scale;
        cell = cell > 0.0 ? cell : 0.0; /* NaN too: the caller passes none, and the index stays in range */
        cell = cell < top ? cell : top;
        int64_t bin = first[(Py_ssize_t)cell];
        for (Py_ssize_t step = 0; step < steps; step++) bin += v >= edge[bin]; /* no branch to mispredict */
        count[bin] += 1;
        sum[bin] += v;
    }
    Py_INCREF(Py_None);
    result = Py_None;
release_sums:
    PyBuffer_Release(&sums);
release_counts:
    PyBuffer_Release(&counts);
release_padded:
    PyBuffer_Release(&padded);
release_start:
    PyBuffer_Release(&start);
release_values:
    PyBuffer_Release(&values);
    return result;
}

/* Neumaier's compensated sum: ``sum + carry`` is the sum of the values added, nearly to the last bit. */
typedef struct {
    double sum, carry;
} Sum;

static inline void add(Sum *s, double v) {
    double t = s->sum + v;
    s->carry += fabs(s->sum) >= fabs(v) ? (s->sum - t) + v : (v - t) + s->sum;
    s->sum = t;
}

static inline double total(const Sum *s) { return isfinite(s->sum) ? s->sum + s->carry : s->sum; }

PyDoc_STRVAR(moments_doc,
"moments(values)\n--\n\n"
"(min, max, mean, sum of squared deviations from the mean) of ``values`` (float64, any stride), or None when\n"
"there are none or one is NaN or infinite (the caller summarises such a column another way).");

static PyObject *moments(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    if (get(arg, &view, PyBUF_STRIDES, 1, "values") < 0) return NULL;
    Py_ssize_t n = view.shape[0], stride = view.strides[0];
    const char *start = view.buf, *at = start;
    double low = INFINITY, high = -INFINITY;
    int whole = n > 0;
    Sum s = {0.0, 0.0};
    for (Py_ssize_t i = 0; i < n; i++, at += stride) {
        double v = *(const double *)at;
        whole &= isfinite(v) != 0;
        if (v < low) low = v;
        if (v > high) high = v;
        add(&s, v);
    }
    PyObject *result = Py_None;
    if (whole) {
        double mean = total(&s) / (double)n;
        Sum squares = {0.0, 0.0};
        at = start;
        for (Py_ssize_t i = 0; i < n; i++, at += stride) {
            double d = *(const double *)at - mean;
            add(&squares, d * d);
        }
        result = Py_BuildValue("dddd", low, high, mean, total(&squares));
    } else {
        Py_INCREF(result);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"counts_sums", (PyCFunction)(void (*)(void))counts_sums, METH_FASTCALL, counts_sums_doc},
    {"moments", (PyCFunction)moments, METH_O, moments_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "streams.drift._column", "A window's numeric column summarised in C.", -1, methods, NULL,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__column(void) { return PyModule_Create(&module_def); }
