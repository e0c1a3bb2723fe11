/* A partial checksum completed: what a TUN with TUNSETOFFLOAD(TUN_F_CSUM) leaves to us.
 *
 * The kernel then hands over every locally sent TCP and UDP packet with NEEDS_CSUM: the
 * transport checksum field holds the pseudo-header sum, csum_start / csum_offset (virtio-net
 * header) say where the sum starts and where the field lies. Completing it is one ones'-
 * complement sum from csum_start to the packet's end, complemented into the field. In
 * Python that is a cold big-int or numpy call per packet (6.5-8 us for a lone 1400-byte
 * datagram after its read, docs/PERFORMANCE.md); here it is a loop over the bytes. Used by
 * the lane's read from a TSO device (tunnel/_lane.c) and, as `complete_partial`, by the TUN
 * reader's own (tunnel/io/partial_csum.py), so there is one implementation.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_aead.h"

#define IPPROTO_UDP_NUMBER 17

/* The ones'-complement sum of `p[0:len]` as big-endian 16-bit words (an odd end padded with
 * zero), folded to 16 bits. The sum is byte-order independent but for a swap of the result,
 * so it is added in native order and swapped to network order once at the end. */
uint16_t
csum_sum(const unsigned char *p, size_t len)
{
    uint64_t sum = 0;
    while (len >= 8) {
        uint64_t chunk;
        memcpy(&chunk, p, 8);
        /* four words at once: add the two 32-bit halves, carries kept in the 64-bit sum */
        sum += (chunk & 0xFFFFFFFFu) + (chunk >> 32);
        p += 8;
        len -= 8;
    }
    while (len >= 2) {
        uint16_t word;
        memcpy(&word, p, 2);
        sum += word;
        p += 2;
        len -= 2;
    }
    if (len) {
        unsigned char last[2] = {p[0], 0};
        uint16_t word;
        memcpy(&word, last, 2);
        sum += word;
    }
    while (sum >> 16) {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    uint16_t folded = (uint16_t)sum;
    const uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first ? (uint16_t)((folded << 8) | (folded >> 8)) : folded; /* to network order */
}

int
csum_complete(unsigned char *packet, Py_ssize_t size, unsigned csum_start, unsigned csum_offset)
{
    Py_ssize_t field = (Py_ssize_t)csum_start + (Py_ssize_t)csum_offset;
    if (csum_start < 20 || field + 2 > size) {
        return 0;
    }
    uint16_t check = (uint16_t)~csum_sum(packet + csum_start, (size_t)(size - csum_start));
    if (check == 0 && packet[(packet[0] >> 4) == 4 ? 9 : 6] == IPPROTO_UDP_NUMBER) {
        check = 0xFFFF; /* UDP: a computed 0 is sent as all ones (0 means "no checksum") */
    }
    packet[field] = (unsigned char)(check >> 8);
    packet[field + 1] = (unsigned char)check;
    return 1;
}

/* complete_partial(buffer, base, end, csum_start, csum_offset) -> bool: the NEEDS_CSUM
 * packet at buffer[base:end] finished in place; False (nothing written) when the offsets do
 * not fit it. */
PyObject *
csum_complete_partial(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "takes (buffer, base, end, csum_start, csum_offset)");
        return NULL;
    }
    Py_ssize_t base = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    Py_ssize_t csum_start = PyLong_AsSsize_t(args[3]);
    Py_ssize_t csum_offset = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    int done = 0;
    if (base >= 0 && base < end && end <= view.len && csum_start >= 0 && csum_offset >= 0
        && csum_start <= 0xFFFF && csum_offset <= 0xFFFF) {
        done = csum_complete((unsigned char *)view.buf + base, end - base,
                             (unsigned)csum_start, (unsigned)csum_offset);
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(done);
}
