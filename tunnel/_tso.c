/* A TCP super-packet's segments written as rows of datagrams-to-be, in one pass; and a GRO
 * run's rows checked as one mergeable TCP train (tcp_train, for TunCoalescer.write_rows).
 *
 * tunnel/io/tso_rows.py cuts a 64 KB TSO read into rows (24 bytes of P_DATA header room, the
 * segment, 16 bytes for the tag) that DataKey.seal_rows seals and one sendmsg sends. Written
 * with numpy that was ~25 array operations per super-packet, each with a fixed cost of a few
 * microseconds, about 1 us per segment: at 2.9 Gbit/s a fifth of the sender's core (py-spy,
 * docs/PERFORMANCE.md). Here each row is two copies and a few stores, its IPv4 and TCP
 * checksums one sum each (tunnel/_csum.c): what `inet_gso_segment` / `tcp_gso_segment` write,
 * byte for byte what the numpy form writes (tests/io/test_tso_rows.py holds them equal).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_aead.h"

#define FIN_PSH 0x09
#define CWR 0x80

static void
put_be16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static uint16_t
add16(uint32_t a, uint32_t b)
{
    uint32_t sum = a + b;
    while (sum >> 16) {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    return (uint16_t)sum;
}

/* One segment at `row`: the headers copied, `plen` payload bytes from `payload`, then its
 * IPv4 length, id and checksum, TCP sequence number, flags and checksum. */
static void
fill_row(unsigned char *row, const unsigned char *packet, Py_ssize_t hlen,
         const unsigned char *payload, Py_ssize_t plen, Py_ssize_t pad, unsigned ip_id,
         uint32_t seq, unsigned char flags, uint16_t addresses)
{
    memcpy(row, packet, (size_t)hlen);
    memcpy(row + hlen, payload, (size_t)plen);
    if (pad > 0) {
        memset(row + hlen + plen, 0, (size_t)pad); /* as the numpy form leaves a short row */
    }
    unsigned total = (unsigned)(hlen + plen);
    put_be16(row + 2, total);
    put_be16(row + 4, ip_id & 0xFFFF);
    row[10] = row[11] = 0;
    put_be16(row + 10, (uint16_t)~csum_sum(row, 20));
    unsigned char *tcp = row + 20;
    put_be16(tcp + 4, seq >> 16);
    put_be16(tcp + 6, seq & 0xFFFF);
    tcp[13] = flags;
    tcp[16] = tcp[17] = 0;
    /* the pseudo-header: the addresses' sum, protocol 6, the TCP length */
    uint16_t pseudo = add16(addresses, 6 + (total - 20));
    put_be16(tcp + 16, (uint16_t)~add16(pseudo, csum_sum(tcp, total - 20)));
}

/* fill_segments(rows, stride, count, packet, hlen, mss, at) -> None: the `count` segments of
 * the TCP/IPv4 super-packet `packet` (no IP options, headers `hlen` bytes, `mss` payload
 * bytes a segment, the last the rest) into `rows`, one every `stride` bytes at offset `at`. */
PyObject *
tso_fill_segments(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "takes (rows, stride, count, packet, hlen, mss, at)");
        return NULL;
    }
    Py_ssize_t stride = PyLong_AsSsize_t(args[1]);
    Py_ssize_t count = PyLong_AsSsize_t(args[2]);
    Py_ssize_t hlen = PyLong_AsSsize_t(args[4]);
    Py_ssize_t mss = PyLong_AsSsize_t(args[5]);
    Py_ssize_t at = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer rows, packet;
    if (PyObject_GetBuffer(args[0], &rows, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &packet, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&rows);
        return NULL;
    }
    const unsigned char *src = packet.buf;
    Py_ssize_t body = packet.len - hlen;
    /* Every bound checked before anything is written: the cut as SuperCut.load made it. */
    if (count < 1 || mss < 1 || hlen < 40 || hlen > 80 || at < 0 || body <= (count - 1) * mss
        || body > count * mss || stride < at + hlen + mss || count > rows.len / stride
        || src[0] != 0x45) {
        PyBuffer_Release(&packet);
        PyBuffer_Release(&rows);
        PyErr_SetString(PyExc_ValueError, "the cut does not fit its rows or its packet");
        return NULL;
    }
    Py_ssize_t rem = body - (count - 1) * mss;
    unsigned ip_id = ((unsigned)src[4] << 8) | src[5];
    uint32_t seq = ((uint32_t)src[24] << 24) | ((uint32_t)src[25] << 16)
                   | ((uint32_t)src[26] << 8) | src[27];
    unsigned char flags = src[33];
    uint16_t addresses = csum_sum(src + 12, 8);
    unsigned char *base = (unsigned char *)rows.buf + at;
    for (Py_ssize_t r = 0; r < count; r++) {
        int last = r == count - 1;
        unsigned char f = flags & (unsigned char)~(FIN_PSH | CWR);
        if (r == 0) {
            f = flags & (unsigned char)~FIN_PSH;
        }
        if (last) {
            f = count > 1 ? (unsigned char)(flags & ~CWR) : flags;
        }
        Py_ssize_t plen = last ? rem : mss;
        fill_row(base + r * stride, src, hlen, src + hlen + r * mss, plen, mss - plen,
                 ip_id + (unsigned)r, seq + (uint32_t)(r * mss), f, addresses);
    }
    PyBuffer_Release(&packet);
    PyBuffer_Release(&rows);
    Py_RETURN_NONE;
}

#define TCP_ACK 0x10
#define TCP_PSH 0x08

static int
same_bytes(const unsigned char *a, const unsigned char *b, Py_ssize_t from, Py_ssize_t to)
{
    return memcmp(a + from, b + from, (size_t)(to - from)) == 0;
}

/* tcp_train(rows, stride, count, at, size, hlen) -> bool: whether the `count` TCP/IPv4
 * segments of `size` bytes (headers `hlen`) at offset `at` of rows `stride` bytes apart are
 * one train the kernel's GRO would merge (TunCoalescer.write_rows' rules, its numpy form):
 * every IPv4 total length `size`, no fragment, flags ACK (PSH only on the last), sequence
 * numbers one payload apart, and version/tos, DF, ttl, protocol, addresses, ports, ack
 * number, data offset and options as the first's. */
PyObject *
tso_tcp_train(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "takes (rows, stride, count, at, size, hlen)");
        return NULL;
    }
    Py_ssize_t stride = PyLong_AsSsize_t(args[1]);
    Py_ssize_t count = PyLong_AsSsize_t(args[2]);
    Py_ssize_t at = PyLong_AsSsize_t(args[3]);
    Py_ssize_t size = PyLong_AsSsize_t(args[4]);
    Py_ssize_t hlen = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer rows;
    if (PyObject_GetBuffer(args[0], &rows, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (count < 1 || at < 0 || hlen < 40 || hlen > 80 || size <= hlen || stride < at + size
        || count > rows.len / stride) {
        PyBuffer_Release(&rows);
        PyErr_SetString(PyExc_ValueError, "the rows do not hold these segments");
        return NULL;
    }
    const unsigned char *head = (const unsigned char *)rows.buf + at;
    uint32_t payload = (uint32_t)(size - hlen);
    uint32_t seq0 = ((uint32_t)head[24] << 24) | ((uint32_t)head[25] << 16)
                    | ((uint32_t)head[26] << 8) | head[27];
    int train = 1;
    for (Py_ssize_t r = 0; r < count && train; r++) {
        const unsigned char *p = head + r * stride;
        uint32_t seq = ((uint32_t)p[24] << 24) | ((uint32_t)p[25] << 16)
                       | ((uint32_t)p[26] << 8) | p[27];
        unsigned char flags = p[33];
        train = ((p[2] << 8) | p[3]) == size && !(((p[6] << 8) | p[7]) & 0x3FFF)
                && (flags | TCP_PSH) == (TCP_ACK | TCP_PSH)
                && (r == count - 1 || !(flags & TCP_PSH))
                && seq == seq0 + (uint32_t)r * payload
                && same_bytes(p, head, 0, 2) && same_bytes(p, head, 6, 10)
                && same_bytes(p, head, 12, 24) && same_bytes(p, head, 28, 33)
                && same_bytes(p, head, 40, hlen);
    }
    PyBuffer_Release(&rows);
    return PyBool_FromLong(train);
}
