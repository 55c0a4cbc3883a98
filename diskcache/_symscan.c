/* Compiled scans of .sym text, each the exact twin of a pure-Python reading that stays in
 * the code beside it (and that the tests compare it with on every input they have).
 *
 * Answering a cold module from its .sym costs a scan of the whole file and, per address, a
 * FUNC's block parsed and a few FILE and INLINE_ORIGIN names found.  In Python these were
 * about 2.5 s a gigabyte and 50 us an address; here they are a fraction of that.  Each
 * function reads only what it is given, holds no state, and, where its input is not in the
 * plain form it knows, says so (the caller then takes the Python path), so that it never
 * has to decide what the parser would do with something unusual.
 *
 * scan(buffer, start, end, base) -> (other_funcs, other_publics, func_count, public_count,
 *                                    func_keys, func_sizes, func_lines,
 *                                    public_keys, public_lines, name_runs, headers)
 *   rawlookup's regex pass (_LINES) over a buffer.  Only buffer[start:end] is read (a regex
 *   search with endpos sees no further).  A line is what follows a newline at buffer[i]
 *   (i >= start) up to the next newline; buffer[i] is the file's byte base + i.
 *   - a FUNC line in the strict form "FUNC [m ]ADDR SIZE PARAMS X..." (each number 1 to 16
 *     hex digits, X neither CR nor LF): its address, size and the file offset of its first
 *     byte; any other line starting "FUNC " sets other_funcs (the caller then reads every
 *     FUNC line of the buffer with the parser).  PUBLIC likewise ("PUBLIC [m ]ADDR PARAMS X").
 *     Columns are bytes of native unsigned ints: 4 bytes each if every value of the column
 *     fits, else 8.
 *   - name_runs: (the newline before, the newline after) for each run of consecutive lines
 *     starting "FILE " or "INLINE_ORIGIN " (buffer positions; the end is ``end`` if the
 *     run's last line has no newline within it).
 *   - headers: the buffer position of the newline before each line starting "MODULE" or
 *     "INFO" followed by a space, "\n" or "\r\n".
 *   The GIL is released during the pass; the buffer is held (a bytearray cannot be resized).
 *
 * block_columns(block) -> (starts, ends, lines, files, inlines) or None
 *   symfile.func_block_columns's fast path: INLINE lines of today's format first
 *   ("INLINE DEPTH CALL_LINE CALL_FILE ORIGIN (START LENGTH)+", decimal numbers of 1 to 19
 *   digits, CALL_FILE possibly -1, hex numbers of 1 to 16, an optional CR), then line
 *   records "ADDR SIZE LINE FILE\n" (hex, hex, 1 to 19 decimal digits, 1 to 19) in address
 *   order, not overlapping, no size 0.  inlines are (depth, call_line, call_file, origin,
 *   ((start, end), ...)) tuples.  None for any other block, and for numbers that do not
 *   fit 64 bits (the Python path decides those).
 *
 * nondecreasing(column) -> bool, disjoint(keys, sizes) -> bool
 *   rawlookup's checks of a scanned index (is it in order, does each FUNC end before the
 *   next starts, none of size 0), over arrays of unsigned ints of 4 or 8 bytes.
 *
 * id_lines(buffer, files, origins) -> [(position, is_file), ...]
 *   The lines "FILE N " and "INLINE_ORIGIN N " of buffer (each after a newline; N decimal,
 *   leading zeros allowed) whose N is in files (or origins): sorted native uint64 ids, as
 *   bytes.  position is the newline before the line; rawlookup's _id_lines regex, for any
 *   number of ids.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct {
    uint64_t *items;
    Py_ssize_t length;
    Py_ssize_t capacity;
    uint64_t largest;
} Column;

static int column_push(Column *column, uint64_t value)
{
    if (column->length == column->capacity) {
        Py_ssize_t capacity = column->capacity ? 2 * column->capacity : 1024;
        uint64_t *items = realloc(column->items, (size_t)capacity * sizeof(uint64_t));
        if (items == NULL)
            return -1;
        column->items = items;
        column->capacity = capacity;
    }
    column->items[column->length++] = value;
    if (value > column->largest)
        column->largest = value;
    return 0;
}

/* The column as bytes of uint32 if every value fits, else of uint64. */
static PyObject *column_bytes(const Column *column)
{
    if (column->largest <= UINT32_MAX) {
        PyObject *packed = PyBytes_FromStringAndSize(NULL, column->length * (Py_ssize_t)sizeof(uint32_t));
        if (packed == NULL)
            return NULL;
        uint32_t *out = (uint32_t *)PyBytes_AS_STRING(packed);
        for (Py_ssize_t i = 0; i < column->length; i++)
            out[i] = (uint32_t)column->items[i];
        return packed;
    }
    return PyBytes_FromStringAndSize((const char *)column->items, column->length * (Py_ssize_t)sizeof(uint64_t));
}

static const signed char HEX_VALUE[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};  /* digit value + 1; 0: not a hex digit */

/* "HEX{1,16} " at text[*at]: its value, and *at moved past the space; 0 if not there. */
static int hex_field(const unsigned char *text, Py_ssize_t end, Py_ssize_t *at, uint64_t *value)
{
    Py_ssize_t i = *at;
    uint64_t result = 0;
    int digits = 0;
    while (i < end && HEX_VALUE[text[i]]) {
        if (++digits > 16)
            return 0;
        result = (result << 4) | (uint64_t)(HEX_VALUE[text[i]] - 1);
        i++;
    }
    if (digits == 0 || i >= end || text[i] != ' ')
        return 0;
    *at = i + 1;
    *value = result;
    return 1;
}

static int starts(const unsigned char *text, Py_ssize_t end, Py_ssize_t at, const char *literal, Py_ssize_t length)
{
    return at + length <= end && memcmp(text + at, literal, (size_t)length) == 0;
}

/* Numbers then a first name byte that is neither CR nor LF, after an optional "m ". */
static int strict_numbers(const unsigned char *text, Py_ssize_t end, Py_ssize_t at, int count, uint64_t *numbers)
{
    if (starts(text, end, at, "m ", 2))
        at += 2;  /* "m" is no hex digit: the form without "m " cannot match here */
    for (int i = 0; i < count; i++)
        if (!hex_field(text, end, &at, &numbers[i]))
            return 0;
    return at < end && text[at] != '\r' && text[at] != '\n';
}

static int name_line(const unsigned char *text, Py_ssize_t end, Py_ssize_t at)
{
    return starts(text, end, at, "FILE ", 5) || starts(text, end, at, "INLINE_ORIGIN ", 14);
}

/* A MODULE or INFO line: the word, then a space, "\n" or "\r\n". */
static int header_line(const unsigned char *text, Py_ssize_t end, Py_ssize_t line, const char *word, Py_ssize_t length)
{
    Py_ssize_t after = line + length;
    return starts(text, end, line, word, length)
        && ((after < end && (text[after] == ' ' || text[after] == '\n')) || starts(text, end, after, "\r\n", 2));
}

enum { FUNC_KEYS, FUNC_SIZES, FUNC_LINES, PUBLIC_KEYS, PUBLIC_LINES, COLUMNS };

typedef struct {
    Column columns[COLUMNS];
    Column runs;  /* start, end pairs */
    Column headers;
    int other_funcs;
    int other_publics;
} Found;

/* The pass itself (no Python objects: it runs without the GIL); -1 when out of memory. */
static int keyword_start(unsigned char c)
{
    return c == 'F' || c == 'P' || c == 'I' || c == 'M';
}

/* The first newline at or after text[at] whose line starts with F, P, I or M, the only lines
 * the scan looks at (end if none): most lines are line records, skipped 16 bytes at a time
 * where SSE2 is (a memchr per line cost 11 ns a line, 2.5 million lines for 74 MB). */
static Py_ssize_t next_keyword_newline(const unsigned char *text, Py_ssize_t at, Py_ssize_t end)
{
#if defined(__SSE2__)
    const __m128i newline = _mm_set1_epi8('\n');
    const __m128i f = _mm_set1_epi8('F'), p = _mm_set1_epi8('P'), i = _mm_set1_epi8('I'), m = _mm_set1_epi8('M');
    for (; at + 17 <= end; at += 16) {  /* bytes at .. at + 16 are read */
        __m128i here = _mm_loadu_si128((const __m128i *)(text + at));
        __m128i next = _mm_loadu_si128((const __m128i *)(text + at + 1));
        __m128i keyword = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(next, f), _mm_cmpeq_epi8(next, p)),
                                       _mm_or_si128(_mm_cmpeq_epi8(next, i), _mm_cmpeq_epi8(next, m)));
        int mask = _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(here, newline), keyword));
        if (mask != 0)
            return at + __builtin_ctz((unsigned int)mask);
    }
#endif
    for (; at + 1 < end; at++)
        if (text[at] == '\n' && keyword_start(text[at + 1]))
            return at;
    return end;
}

/* A FUNC (3 numbers) or PUBLIC (2) line whose numbers start at text[at]: in the strict
 * form, its address (and a FUNC's size) and the file offset of the line are appended to the
 * columns; else *other is set.  -1 when out of memory. */
static int numbered_line(const unsigned char *text, Py_ssize_t end, Py_ssize_t line, Py_ssize_t at, int count,
                         long long base, Column *keys, Column *sizes, Column *lines, int *other)
{
    uint64_t numbers[3];
    if (!strict_numbers(text, end, at, count, numbers)) {
        *other = 1;
        return 0;
    }
    if (column_push(keys, numbers[0]) < 0 || (sizes != NULL && column_push(sizes, numbers[1]) < 0)
        || column_push(lines, (uint64_t)(base + line)) < 0)
        return -1;
    return 0;
}

static int scan_lines(const unsigned char *text, Py_ssize_t start, Py_ssize_t end, long long base, Found *found)
{
    Py_ssize_t at = start;
    while (at < end) {
        Py_ssize_t before = next_keyword_newline(text, at, end);  /* the newline before the line */
        if (before >= end)
            break;
        Py_ssize_t line = before + 1;
        at = line;
        switch (text[line]) {
        case 'F':
            if (starts(text, end, line, "FUNC ", 5)) {
                if (numbered_line(text, end, line, line + 5, 3, base, &found->columns[FUNC_KEYS],
                                  &found->columns[FUNC_SIZES], &found->columns[FUNC_LINES], &found->other_funcs) < 0)
                    return -1;
                continue;
            }
            /* fall through: a FILE line starts a run */
        case 'I':
            if (name_line(text, end, line)) {
                Py_ssize_t run_end = line;
                for (;;) {  /* to the newline after the run's last line (or end) */
                    const unsigned char *next = memchr(text + run_end, '\n', (size_t)(end - run_end));
                    run_end = next == NULL ? end : next - text;
                    if (next == NULL || !name_line(text, end, run_end + 1))
                        break;
                    run_end += 1;
                }
                if (column_push(&found->runs, (uint64_t)before) < 0
                    || column_push(&found->runs, (uint64_t)run_end) < 0)
                    return -1;
                at = run_end;
                continue;
            }
            if (text[line] == 'I' && header_line(text, end, line, "INFO", 4)
                && column_push(&found->headers, (uint64_t)before) < 0)
                return -1;
            continue;
        case 'P':
            if (starts(text, end, line, "PUBLIC ", 7)
                && numbered_line(text, end, line, line + 7, 2, base, &found->columns[PUBLIC_KEYS], NULL,
                                 &found->columns[PUBLIC_LINES], &found->other_publics) < 0)
                return -1;
            continue;
        case 'M':
            if (header_line(text, end, line, "MODULE", 6) && column_push(&found->headers, (uint64_t)before) < 0)
                return -1;
            continue;
        default:
            continue;
        }
    }
    return 0;
}

static void found_free(Found *found)
{
    for (int i = 0; i < COLUMNS; i++)
        free(found->columns[i].items);
    free(found->runs.items);
    free(found->headers.items);
}

static PyObject *pairs_list(const Column *column)
{
    PyObject *list = PyList_New(column->length / 2);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < column->length / 2; i++) {
        PyObject *pair = Py_BuildValue("(nn)", (Py_ssize_t)column->items[2 * i],
                                       (Py_ssize_t)column->items[2 * i + 1]);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

static PyObject *positions_list(const Column *column)
{
    PyObject *list = PyList_New(column->length);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < column->length; i++) {
        PyObject *number = PyLong_FromSsize_t((Py_ssize_t)column->items[i]);
        if (number == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, number);
    }
    return list;
}

static PyObject *scan(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t start, end;
    long long base;
    if (!PyArg_ParseTuple(args, "y*nnL", &view, &start, &end, &base))
        return NULL;
    if (start < 0 || end > view.len || start > end || base < -1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start and end must lie within the buffer, base be -1 or more");
        return NULL;
    }
    Found found;
    memset(&found, 0, sizeof(found));
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = scan_lines((const unsigned char *)view.buf, start, end, base, &found);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (status < 0) {
        found_free(&found);
        return PyErr_NoMemory();
    }
    PyObject *parts[COLUMNS + 2] = {NULL};
    PyObject *result = NULL;
    for (int i = 0; i < COLUMNS; i++)
        if ((parts[i] = column_bytes(&found.columns[i])) == NULL)
            goto done;
    if ((parts[COLUMNS] = pairs_list(&found.runs)) == NULL
        || (parts[COLUMNS + 1] = positions_list(&found.headers)) == NULL)
        goto done;
    result = Py_BuildValue("(iinnOOOOOOO)", found.other_funcs, found.other_publics,
                           found.columns[FUNC_KEYS].length, found.columns[PUBLIC_KEYS].length,
                           parts[FUNC_KEYS], parts[FUNC_SIZES], parts[FUNC_LINES],
                           parts[PUBLIC_KEYS], parts[PUBLIC_LINES], parts[COLUMNS], parts[COLUMNS + 1]);
done:
    for (int i = 0; i < COLUMNS + 2; i++)
        Py_XDECREF(parts[i]);
    found_free(&found);
    return result;
}

/* Decimal digits at text[*at], 1 to 19 of them (below 2**64), then stopper: its value. */
static int decimal_field(const unsigned char *text, Py_ssize_t end, Py_ssize_t *at, uint64_t *value, unsigned char stopper)
{
    Py_ssize_t i = *at;
    uint64_t result = 0;
    int digits = 0;
    while (i < end && text[i] >= '0' && text[i] <= '9') {
        if (++digits > 19)
            return 0;
        result = result * 10 + (uint64_t)(text[i] - '0');
        i++;
    }
    if (digits == 0 || i >= end || text[i] != stopper)
        return 0;
    *at = i + 1;
    *value = result;
    return 1;
}

/* Hex digits at text[*at] (any number, below 2**64), then stopper: its value. */
static int hex_number(const unsigned char *text, Py_ssize_t end, Py_ssize_t *at, uint64_t *value, unsigned char stopper)
{
    Py_ssize_t i = *at;
    uint64_t result = 0;
    int digits = 0;
    while (i < end && HEX_VALUE[text[i]]) {
        if (result >> 60)
            return 0;  /* 2**64 or more: not for this path */
        result = (result << 4) | (uint64_t)(HEX_VALUE[text[i]] - 1);
        digits++;
        i++;
    }
    if (digits == 0 || i >= end || text[i] != stopper)
        return 0;
    *at = i + 1;
    *value = result;
    return 1;
}

/* One INLINE line of today's format, text[at:stop] after "INLINE " (stop: its CR or LF). */
static PyObject *plain_inline(const unsigned char *text, Py_ssize_t at, Py_ssize_t stop)
{
    uint64_t depth, call_line, call_file = 0, origin;
    int no_call_file = 0;
    if (!decimal_field(text, stop, &at, &depth, ' ') || !decimal_field(text, stop, &at, &call_line, ' '))
        return Py_None;
    if (starts(text, stop, at, "-1 ", 3)) {
        no_call_file = 1;
        at += 3;
    } else if (!decimal_field(text, stop, &at, &call_file, ' ')) {
        return Py_None;
    }
    /* the origin ends at the space before the first range */
    if (!decimal_field(text, stop, &at, &origin, ' '))
        return Py_None;
    PyObject *ranges = PyList_New(0);
    if (ranges == NULL)
        return NULL;
    for (;;) {
        uint64_t numbers[2];
        int fields = 0;
        for (; fields < 2; fields++) {  /* 1 to 16 hex digits each, a space between */
            Py_ssize_t i = at;
            uint64_t result = 0;
            while (i < stop && HEX_VALUE[text[i]] && i - at < 16) {
                result = (result << 4) | (uint64_t)(HEX_VALUE[text[i]] - 1);
                i++;
            }
            if (i == at || (i < stop && HEX_VALUE[text[i]]))
                break;
            numbers[fields] = result;
            at = i;
            if (fields == 0) {
                if (at >= stop || text[at] != ' ')
                    break;
                at++;
            }
        }
        if (fields < 2 || numbers[0] > UINT64_MAX - numbers[1]) {  /* (an end past 2**64: Python's) */
            Py_DECREF(ranges);
            return Py_None;
        }
        PyObject *range = Py_BuildValue("(KK)", (unsigned long long)numbers[0],
                                        (unsigned long long)(numbers[0] + numbers[1]));
        if (range == NULL || PyList_Append(ranges, range) < 0) {
            Py_XDECREF(range);
            Py_DECREF(ranges);
            return NULL;
        }
        Py_DECREF(range);
        if (at == stop)
            break;
        if (text[at] != ' ') {
            Py_DECREF(ranges);
            return Py_None;
        }
        at++;
    }
    PyObject *ranges_tuple = PyList_AsTuple(ranges);
    Py_DECREF(ranges);
    if (ranges_tuple == NULL)
        return NULL;
    PyObject *record;
    if (no_call_file)
        record = Py_BuildValue("(KKiKN)", (unsigned long long)depth, (unsigned long long)call_line, -1,
                               (unsigned long long)origin, ranges_tuple);
    else
        record = Py_BuildValue("(KKKKN)", (unsigned long long)depth, (unsigned long long)call_line,
                               (unsigned long long)call_file, (unsigned long long)origin, ranges_tuple);
    return record;
}

static int append_number(PyObject *list, uint64_t value)
{
    PyObject *number = PyLong_FromUnsignedLongLong(value);
    if (number == NULL)
        return -1;
    int status = PyList_Append(list, number);
    Py_DECREF(number);
    return status;
}

/* The block's columns, Py_None if it is not in the plain form, NULL on an error. */
static PyObject *plain_block(const unsigned char *text, Py_ssize_t end)
{
    PyObject *columns[5] = {NULL};
    PyObject *result = NULL;
    for (int i = 0; i < 5; i++)
        if ((columns[i] = PyList_New(0)) == NULL)
            goto done;
    Py_ssize_t at = 0;
    while (starts(text, end, at, "INLINE ", 7)) {
        const unsigned char *newline = memchr(text + at, '\n', (size_t)(end - at));
        if (newline == NULL) {
            result = Py_None;
            goto done;
        }
        Py_ssize_t stop = newline - text;
        if (stop > at + 7 && text[stop - 1] == '\r')
            stop--;
        PyObject *record = plain_inline(text, at + 7, stop);
        if (record == NULL || record == Py_None) {
            result = record;
            goto done;
        }
        int status = PyList_Append(columns[4], record);
        Py_DECREF(record);
        if (status < 0)
            goto done;
        at = newline - text + 1;
    }
    int have_end = 0;
    uint64_t last_end = 0;
    while (at < end) {  /* "ADDR SIZE LINE FILE\n", in order, not overlapping, no size 0 */
        uint64_t address, size, line, file;
        if (!hex_number(text, end, &at, &address, ' ') || !hex_number(text, end, &at, &size, ' ')
            || !decimal_field(text, end, &at, &line, ' ') || !decimal_field(text, end, &at, &file, '\n')
            || size == 0 || address > UINT64_MAX - size || (have_end && address < last_end)) {
            result = Py_None;
            goto done;
        }
        have_end = 1;
        last_end = address + size;
        if (append_number(columns[0], address) < 0 || append_number(columns[1], last_end) < 0
            || append_number(columns[2], line) < 0 || append_number(columns[3], file) < 0)
            goto done;
    }
    result = PyTuple_Pack(5, columns[0], columns[1], columns[2], columns[3], columns[4]);
done:
    for (int i = 0; i < 5; i++)
        Py_XDECREF(columns[i]);
    if (result == Py_None)
        Py_INCREF(Py_None);
    return result;
}

static PyObject *block_columns(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = plain_block((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return result;
}

static int wanted(const uint64_t *ids, Py_ssize_t count, uint64_t id)
{
    Py_ssize_t low = 0, high = count;
    while (low < high) {
        Py_ssize_t middle = low + (high - low) / 2;
        if (ids[middle] < id)
            low = middle + 1;
        else
            high = middle;
    }
    return low < count && ids[low] == id;
}

/* "N " at text[at] (decimal, leading zeros allowed) with N among ids. */
static int wanted_id(const unsigned char *text, Py_ssize_t end, Py_ssize_t at, const uint64_t *ids, Py_ssize_t count)
{
    while (at < end && text[at] == '0' && at + 1 < end && text[at + 1] >= '0' && text[at + 1] <= '9')
        at++;  /* leading zeros: "0*" before the number */
    uint64_t id = 0;
    int digits = 0;
    for (; at < end && text[at] >= '0' && text[at] <= '9'; at++, digits++) {
        uint64_t digit = (uint64_t)(text[at] - '0');
        if (id > (UINT64_MAX - digit) / 10)
            return 0;  /* 2**64 or more: no id is (the caller sees to it) */
        id = id * 10 + digit;
    }
    return count > 0 && digits > 0 && at < end && text[at] == ' ' && wanted(ids, count, id);
}

static PyObject *id_lines(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view, files, origins;
    if (!PyArg_ParseTuple(args, "y*y*y*", &view, &files, &origins))
        return NULL;
    PyObject *found = PyList_New(0);
    const unsigned char *text = view.buf;
    Py_ssize_t end = view.len, at = 0;
    const uint64_t *file_ids = files.buf, *origin_ids = origins.buf;
    Py_ssize_t file_count = files.len / (Py_ssize_t)sizeof(uint64_t);
    Py_ssize_t origin_count = origins.len / (Py_ssize_t)sizeof(uint64_t);
    while (found != NULL && at < end) {
        const unsigned char *newline = memchr(text + at, '\n', (size_t)(end - at));
        if (newline == NULL)
            break;
        Py_ssize_t before = newline - text, line = before + 1;
        at = line;
        int is_file = starts(text, end, line, "FILE ", 5);
        if ((is_file && wanted_id(text, end, line + 5, file_ids, file_count))
            || (!is_file && starts(text, end, line, "INLINE_ORIGIN ", 14)
                && wanted_id(text, end, line + 14, origin_ids, origin_count))) {
            PyObject *item = Py_BuildValue("(nO)", before, is_file ? Py_True : Py_False);
            if (item == NULL || PyList_Append(found, item) < 0)
                Py_CLEAR(found);
            Py_XDECREF(item);
        }
    }
    PyBuffer_Release(&view);
    PyBuffer_Release(&files);
    PyBuffer_Release(&origins);
    return found;
}

/* A column (an array of unsigned ints, 4 or 8 bytes each) as a view; 0 and an exception if not. */
static int column_view(PyObject *column, Py_buffer *view)
{
    if (PyObject_GetBuffer(column, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return 0;
    if (view->format == NULL || (strcmp(view->format, "I") != 0 && strcmp(view->format, "L") != 0
                                 && strcmp(view->format, "Q") != 0 && strcmp(view->format, "K") != 0)
        || (view->itemsize != 4 && view->itemsize != 8)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "a column must be an array of unsigned ints of 4 or 8 bytes");
        return 0;
    }
    return 1;
}

static uint64_t column_item(const Py_buffer *view, Py_ssize_t i)
{
    return view->itemsize == 4 ? ((const uint32_t *)view->buf)[i] : ((const uint64_t *)view->buf)[i];
}

static PyObject *nondecreasing(PyObject *module, PyObject *column)
{
    (void)module;
    Py_buffer view;
    if (!column_view(column, &view))
        return NULL;
    Py_ssize_t count = view.len / view.itemsize;
    int result = 1;
    for (Py_ssize_t i = 1; i < count && result; i++)
        result = column_item(&view, i - 1) <= column_item(&view, i);
    PyBuffer_Release(&view);
    return PyBool_FromLong(result);
}

static PyObject *disjoint(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *keys_column, *sizes_column;
    if (!PyArg_ParseTuple(args, "OO", &keys_column, &sizes_column))
        return NULL;
    Py_buffer keys, sizes;
    if (!column_view(keys_column, &keys))
        return NULL;
    if (!column_view(sizes_column, &sizes)) {
        PyBuffer_Release(&keys);
        return NULL;
    }
    Py_ssize_t count = keys.len / keys.itemsize;
    if (sizes.len / sizes.itemsize != count) {
        PyBuffer_Release(&keys);
        PyBuffer_Release(&sizes);
        PyErr_SetString(PyExc_ValueError, "keys and sizes differ in length");
        return NULL;
    }
    int result = 1;
    for (Py_ssize_t i = 0; i < count && result; i++) {
        uint64_t size = column_item(&sizes, i);
        result = size != 0 && (i + 1 == count
                               || (unsigned __int128)column_item(&keys, i) + size <= column_item(&keys, i + 1));
    }
    PyBuffer_Release(&keys);
    PyBuffer_Release(&sizes);
    return PyBool_FromLong(result);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(buffer, start, end, base): the FUNC and PUBLIC lines of buffer[start:end] (see the module)."},
    {"block_columns", block_columns, METH_O,
     "block_columns(block): a FUNC block's line records and INLINE records, or None (see the module)."},
    {"nondecreasing", nondecreasing, METH_O,
     "nondecreasing(column): whether an array of unsigned ints never decreases."},
    {"disjoint", disjoint, METH_VARARGS,
     "disjoint(keys, sizes): whether every size is above 0 and each key + size <= the next key."},
    {"id_lines", id_lines, METH_VARARGS,
     "id_lines(buffer, files, origins): where the wanted FILE and INLINE_ORIGIN lines are (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef symscan_module = {
    PyModuleDef_HEAD_INIT, "diskcache._symscan",
    "Compiled scans of .sym text (see diskcache/_symscan.c).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__symscan(void)
{
    return PyModule_Create(&symscan_module);
}
