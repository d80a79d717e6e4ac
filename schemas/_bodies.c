/*
 * The general reader of Prediction and Features bodies (schemas/compiled.py,
 * BodyReader._general), in C; and their numeric values and category codes
 * stacked column-major (schemas/columns.py, FeatureFrame._stack).
 *
 * Why: a batch event of 100 rows is about twenty Avro fields, and the Python
 * reader spends a function call and a tuple on each. In the monitor's stage 1
 * that per-field cost was a sixth of the worker's time on 100-row events. Here
 * the body is one pass over the bytes with bounds checks.
 *
 * It decides exactly what the Python reader decides, and is checked against it
 * and against fastavro (tests/unit/test_compiled_codec.py): the same record,
 * or None ("unusual": negative block counts, a second block, truncated or
 * trailing bytes, bad UTF-8, a long of more than 64 bits, a mismatched row
 * outside an Avro int), for which the caller decodes with fastavro. The module
 * is optional: without a C compiler driftline installs and reads with the
 * Python reader.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define OK 0
#define UNUSUAL 1 /* not the plain shape: the caller decodes with fastavro */
#define FAILED 2  /* a Python error is set (memory) */

typedef struct {
    const unsigned char *buf;
    Py_ssize_t size;
    Py_ssize_t p;
} Reader;

static PyObject *k_model, *k_model_version, *k_event_time, *k_request_ids, *k_segment, *k_columns, *k_prediction,
    *k_predicted_class, *k_numeric_names, *k_numeric_values, *k_numeric_nulls, *k_categorical_names,
    *k_categorical_values, *k_categorical_nulls, *k_mismatched, *k_categorical_levels, *k_categorical_codes, *k_row,
    *k_name, *k_type, *k_text;

/* An Avro long (zig-zag varint) of at most ten bytes and 64 bits. */
static int read_long(Reader *r, long long *out) {
    unsigned long long value = 0;
    int shift = 0;
    for (;;) {
        if (r->p >= r->size) return UNUSUAL;
        unsigned char b = r->buf[r->p++];
        if (shift == 63 && b > 1) return UNUSUAL; /* bits past 64, or an eleventh byte */
        value |= (unsigned long long)(b & 0x7F) << shift;
        if (b < 0x80) break;
        shift += 7;
    }
    *out = (long long)((value >> 1) ^ (0ULL - (value & 1)));
    return OK;
}

/* The position and length of a bytes or string field. */
static int read_span(Reader *r, Py_ssize_t *start, Py_ssize_t *length) {
    long long n;
    if (read_long(r, &n)) return UNUSUAL;
    if (n < 0 || n > r->size - r->p) return UNUSUAL;
    *start = r->p;
    *length = (Py_ssize_t)n;
    r->p += (Py_ssize_t)n;
    return OK;
}

static int read_bytes(Reader *r, PyObject **out) {
    Py_ssize_t start, length;
    if (read_span(r, &start, &length)) return UNUSUAL;
    *out = PyBytes_FromStringAndSize((const char *)r->buf + start, length);
    return *out ? OK : FAILED;
}

static int read_string(Reader *r, PyObject **out) {
    Py_ssize_t start, length;
    if (read_span(r, &start, &length)) return UNUSUAL;
    *out = PyUnicode_DecodeUTF8((const char *)r->buf + start, length, NULL);
    if (*out) return OK;
    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        return UNUSUAL;
    }
    return FAILED;
}

/* An array's count: a single block (a negative count is a blocked array with its byte size). */
static int read_count(Reader *r, Py_ssize_t *count) {
    long long n;
    if (read_long(r, &n)) return UNUSUAL;
    if (n < 0 || n > r->size - r->p) return UNUSUAL; /* every item takes a byte at least */
    *count = (Py_ssize_t)n;
    return OK;
}

/* After a block's items: the end of the array, a count of zero (a second block is unusual). */
static int read_array_end(Reader *r) {
    if (r->p >= r->size || r->buf[r->p] != 0) return UNUSUAL;
    r->p++;
    return OK;
}

typedef int (*FieldReader)(Reader *, PyObject **);

/* An array written as one block: its count, the items, the end marker. */
static int read_array(Reader *r, PyObject **out, FieldReader read_item) {
    Py_ssize_t count;
    int status = read_count(r, &count);
    if (status) return status;
    PyObject *list = PyList_New(count);
    if (!list) return FAILED;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item;
        status = read_item(r, &item);
        if (status) {
            Py_DECREF(list);
            return status;
        }
        PyList_SET_ITEM(list, i, item);
    }
    if (count && (status = read_array_end(r))) {
        Py_DECREF(list);
        return status;
    }
    *out = list;
    return OK;
}

static int read_strings(Reader *r, PyObject **out) { return read_array(r, out, read_string); }

/* A union of null and string. */
static int read_optional_string(Reader *r, PyObject **out) {
    long long tag;
    if (read_long(r, &tag)) return UNUSUAL;
    if (tag == 0) {
        Py_INCREF(Py_None);
        *out = Py_None;
        return OK;
    }
    if (tag != 1) return UNUSUAL;
    return read_string(r, out);
}

/* Stores ``value`` (a new reference, taken over; NULL after a failed call) under ``key``. */
static int put(PyObject *dict, PyObject *key, PyObject *value) {
    if (!value) return FAILED;
    int failed = PyDict_SetItem(dict, key, value);
    Py_DECREF(value);
    return failed ? FAILED : OK;
}

/* Reads the next field with ``read`` and stores it under ``key``. */
static int put_read(PyObject *dict, PyObject *key, Reader *r, FieldReader read) {
    PyObject *value;
    int status = read(r, &value);
    return status ? status : put(dict, key, value);
}

static int put_long(PyObject *dict, PyObject *key, Reader *r) {
    long long value;
    if (read_long(r, &value)) return UNUSUAL;
    return put(dict, key, PyLong_FromLongLong(value));
}

/* One mismatched value: its row, feature name, expected type and text. */
static int read_mismatch(Reader *r, PyObject **out) {
    long long row;
    PyObject *item = PyDict_New();
    int status;
    if (!item) return FAILED;
    if (read_long(r, &row) || row < -2147483648LL || row > 2147483647LL) {
        status = UNUSUAL; /* an Avro int: fastavro says what is wrong with it */
    } else if (!(status = put(item, k_row, PyLong_FromLongLong(row)))) {
        status = put_read(item, k_name, r, read_string);
        if (!status) status = put_read(item, k_type, r, read_string);
        if (!status) status = put_read(item, k_text, r, read_string);
    }
    if (status) {
        Py_DECREF(item);
        return status;
    }
    *out = item;
    return OK;
}

static int read_mismatched(Reader *r, PyObject **out) { return read_array(r, out, read_mismatch); }

static int read_columns(Reader *r, PyObject *columns) {
    int status = put_read(columns, k_numeric_names, r, read_strings);
    if (!status) status = put_read(columns, k_numeric_values, r, read_bytes);
    if (!status) status = put_read(columns, k_numeric_nulls, r, read_bytes);
    if (!status) status = put_read(columns, k_categorical_names, r, read_strings);
    if (!status) status = put_read(columns, k_categorical_values, r, read_strings);
    if (!status) status = put_read(columns, k_categorical_nulls, r, read_bytes);
    if (!status) status = put_read(columns, k_mismatched, r, read_mismatched);
    if (!status) status = put_read(columns, k_categorical_levels, r, read_strings);
    if (!status) status = put_read(columns, k_categorical_codes, r, read_bytes);
    return status;
}

static int read_record(Reader *r, int prediction, PyObject *record) {
    int status = put_read(record, k_model, r, read_string);
    if (!status && prediction) status = put_read(record, k_model_version, r, read_string);
    if (!status) status = put_long(record, k_event_time, r);
    if (!status) status = put_read(record, k_request_ids, r, read_strings);
    if (!status) status = put_read(record, k_segment, r, read_optional_string);
    if (!status) {
        PyObject *columns = PyDict_New();
        if (!columns) return FAILED;
        status = read_columns(r, columns);
        if (status) {
            Py_DECREF(columns);
            return status;
        }
        status = put(record, k_columns, columns);
    }
    if (!status && prediction) {
        long long tag = -1;
        status = put_read(record, k_prediction, r, read_bytes);
        if (!status && read_long(r, &tag)) status = UNUSUAL;
        if (!status && tag == 0) {
            Py_INCREF(Py_None);
            status = put(record, k_predicted_class, Py_None);
        } else if (!status && tag == 1) {
            status = put_read(record, k_predicted_class, r, read_strings);
        } else if (!status) {
            status = UNUSUAL;
        }
    }
    if (!status && r->p != r->size) status = UNUSUAL; /* trailing bytes */
    return status;
}

PyDoc_STRVAR(body_doc,
"body(data, start, prediction)\n--\n\n"
"The Prediction (or Features) body of ``data`` from ``start`` as a record, or None when it is not the plain\n"
"shape (the caller decodes it with fastavro).");

static PyObject *body(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "body(data, start, prediction) takes three arguments");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    int prediction = PyObject_IsTrue(args[2]);
    PyObject *record = NULL;
    if ((start == -1 && PyErr_Occurred()) || prediction < 0) goto done;
    Reader reader = {(const unsigned char *)view.buf, view.len, start};
    if (start < 0 || start > view.len) {
        record = Py_None;
        Py_INCREF(record);
        goto done;
    }
    record = PyDict_New();
    if (!record) goto done;
    int status = read_record(&reader, prediction, record);
    if (status) {
        Py_CLEAR(record);
        if (status == UNUSUAL) {
            record = Py_None;
            Py_INCREF(record);
        }
    }
done:
    PyBuffer_Release(&view);
    return record;
}

PyDoc_STRVAR(column_major_doc,
"column_major(values, width, rows)\n--\n\n"
"The ``numeric_values`` of many events (a list of bytes, each its rows of ``width`` float64s) stacked as one\n"
"column after another: ``rows`` in all. None when their sizes do not add up (the caller names the bad event)\n"
"or one is not bytes.");

/* Stacked column-major, a frame's columns are contiguous: a window's summary reads each without the copy a
 * transpose of row-major values made (a pass over memory larger than the caches). */
static PyObject *column_major(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "column_major(values: list[bytes], width, rows)");
        return NULL;
    }
    PyObject *values = args[0];
    Py_ssize_t width = PyLong_AsSsize_t(args[1]), rows = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t events = PyList_GET_SIZE(values), total = 0, row_bytes = 8 * width;
    if (width <= 0 || rows < 0 || rows > PY_SSIZE_T_MAX / row_bytes) Py_RETURN_NONE;
    for (Py_ssize_t e = 0; e < events; e++) {
        PyObject *item = PyList_GET_ITEM(values, e);
        if (!PyBytes_Check(item)) Py_RETURN_NONE; /* another buffer: the caller reads the events one by one */
        Py_ssize_t size = PyBytes_GET_SIZE(item);
        if (size % row_bytes) Py_RETURN_NONE;
        total += size / row_bytes;
    }
    if (total != rows) Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, rows * row_bytes);
    if (!out) return NULL;
    char *column = PyBytes_AS_STRING(out);
    Py_ssize_t first = 0;
    for (Py_ssize_t e = 0; e < events; e++) {
        PyObject *item = PyList_GET_ITEM(values, e);
        const char *in = PyBytes_AS_STRING(item);
        Py_ssize_t own = PyBytes_GET_SIZE(item) / row_bytes;
        for (Py_ssize_t j = 0; j < width; j++) {
            char *to = column + 8 * (j * rows + first);
            const char *from = in + 8 * j;
            for (Py_ssize_t i = 0; i < own; i++, to += 8, from += row_bytes) memcpy(to, from, 8);
        }
        first += own;
    }
    return out;
}

/* A one-dimensional int64 buffer in native byte order. */
static int int64s(PyObject *object, Py_buffer *view, const char *what) {
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *format = view->format[0] == '@' || view->format[0] == '=' ? view->format + 1 : view->format;
    if (view->ndim != 1 || view->itemsize != 8 || (strcmp(format, "l") != 0 && strcmp(format, "q") != 0)) {
        PyErr_Format(PyExc_TypeError, "%s: a one-dimensional array of int64 expected", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(dictionary_codes_doc,
"dictionary_codes(codes, sizes, remap, width, rows)\n--\n\n"
"The ``categorical_codes`` of many events (a list of bytes, each its rows of ``width`` little-endian uint32\n"
"codes into its own ``sizes[e]`` levels) as codes into the joined levels, stacked column-major (int64): code\n"
"``c`` of event ``e`` becomes ``remap[sizes[0] + ... + sizes[e-1] + c]``. None when a code is past its own\n"
"event's levels or the sizes do not add up to ``rows`` (the caller reads the events one by one, which names\n"
"the bad one), or a code block is not bytes.");

/* Each code checked against its own event's levels and moved onto the joined, deduplicated levels in one pass
 * (numpy took a join, a widening copy, a comparison with repeated sizes, an addition of repeated offsets and a
 * gather through the remap). */
static PyObject *dictionary_codes(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "dictionary_codes(codes: list[bytes], sizes, remap, width, rows)");
        return NULL;
    }
    PyObject *codes = args[0], *out = NULL;
    Py_ssize_t width = PyLong_AsSsize_t(args[3]), rows = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer sizes, remap;
    if (int64s(args[1], &sizes, "sizes") < 0) return NULL;
    if (int64s(args[2], &remap, "remap") < 0) {
        PyBuffer_Release(&sizes);
        return NULL;
    }
    const int64_t *size = sizes.buf, *to = remap.buf;
    Py_ssize_t events = PyList_GET_SIZE(codes), row_bytes = 4 * width, total = 0, levels = 0;
    int fits = width > 0 && rows >= 0 && rows <= PY_SSIZE_T_MAX / (8 * width) && sizes.shape[0] == events;
    for (Py_ssize_t e = 0; fits && e < events; e++) {
        PyObject *item = PyList_GET_ITEM(codes, e);
        fits = PyBytes_Check(item) && PyBytes_GET_SIZE(item) % row_bytes == 0 && size[e] >= 0;
        if (fits) {
            total += PyBytes_GET_SIZE(item) / row_bytes;
            levels += size[e];
        }
    }
    if (!fits || total != rows || levels != remap.shape[0]) goto none;
    out = PyBytes_FromStringAndSize(NULL, 8 * rows * width);
    if (!out) goto done;
    int64_t *column = (int64_t *)PyBytes_AS_STRING(out);
    Py_ssize_t first = 0, offset = 0;
    for (Py_ssize_t e = 0; e < events; e++) {
        PyObject *item = PyList_GET_ITEM(codes, e);
        const unsigned char *in = (const unsigned char *)PyBytes_AS_STRING(item);
        Py_ssize_t own = PyBytes_GET_SIZE(item) / row_bytes;
        uint64_t limit = (uint64_t)size[e];
        for (Py_ssize_t j = 0; j < width; j++) {
            int64_t *cell = column + j * rows + first;
            const unsigned char *at = in + 4 * j;
            for (Py_ssize_t i = 0; i < own; i++, at += row_bytes) {
                uint64_t code = (uint64_t)at[0] | (uint64_t)at[1] << 8 | (uint64_t)at[2] << 16 | (uint64_t)at[3] << 24;
                if (code >= limit) {
                    Py_CLEAR(out);
                    goto none;
                }
                cell[i] = to[offset + (Py_ssize_t)code];
            }
        }
        first += own;
        offset += size[e];
    }
    goto done;
none:
    out = Py_None;
    Py_INCREF(out);
done:
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&remap);
    return out;
}

static PyMethodDef methods[] = {
    {"body", (PyCFunction)(void (*)(void))body, METH_FASTCALL, body_doc},
    {"column_major", (PyCFunction)(void (*)(void))column_major, METH_FASTCALL, column_major_doc},
    {"dictionary_codes", (PyCFunction)(void (*)(void))dictionary_codes, METH_FASTCALL, dictionary_codes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "schemas._bodies",
    "Prediction/Features bodies read, and their numbers stacked, in C.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bodies(void) {
    struct {
        PyObject **key;
        const char *text;
    } keys[] = {
        {&k_model, "model"}, {&k_model_version, "model_version"}, {&k_event_time, "event_time"},
        {&k_request_ids, "request_ids"}, {&k_segment, "segment"}, {&k_columns, "columns"},
        {&k_prediction, "prediction"}, {&k_predicted_class, "predicted_class"},
        {&k_numeric_names, "numeric_names"}, {&k_numeric_values, "numeric_values"},
        {&k_numeric_nulls, "numeric_nulls"}, {&k_categorical_names, "categorical_names"},
        {&k_categorical_values, "categorical_values"}, {&k_categorical_nulls, "categorical_nulls"},
        {&k_mismatched, "mismatched"}, {&k_categorical_levels, "categorical_levels"},
        {&k_categorical_codes, "categorical_codes"}, {&k_row, "row"}, {&k_name, "name"}, {&k_type, "type"},
        {&k_text, "text"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!*keys[i].key && !(*keys[i].key = PyUnicode_InternFromString(keys[i].text))) return NULL;
    }
    return PyModule_Create(&module_def);
}
