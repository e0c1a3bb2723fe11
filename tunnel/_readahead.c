/* read_ahead: a TSO device's read-ahead of plain frames in one call (tunnel/io/tun.py).
 *
 * Why: with TUNSETOFFLOAD the kernel leaves every locally sent UDP and TCP packet's checksum
 * partial, and a burst of small datagrams is read one read(2) at a time into the TUN
 * reader's area. In Python each frame of that loop (the read through FileIO, the header's
 * checks, its span appended, its checksum completed with a call of its own) cost more than
 * the system call: a py-spy of `iperf3 -u -l 64` through the client put the staging at ~8 %
 * and the completions at ~5 % of its samples, the reads themselves at 15 %
 * (docs/PERFORMANCE.md). Here the same loop, with the same rules in the same order, runs in
 * C: read until the queue is empty, a super-packet comes (it stays where it lies, behind
 * the others, for the segmenter) or the read-ahead is full; complete each NEEDS_CSUM frame's
 * checksum where it lies (tunnel/_csum.c); a lone frame (nothing behind it: a zero-timeout
 * poll) ends the read-ahead without the read that would fail with EAGAIN.
 *
 * The GIL is held: the reads are non-blocking and the loop is bounded by `max_frames`
 * (frames staged and dropped together).
 * Nothing is taken from the network but the bytes read; every span is checked against the
 * area before it is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "_aead.h"

#define VNET_HDR 10
#define VNET_F_NEEDS_CSUM 1
#define GSO_NONE 0
#define MIN_PACKET 20 /* shorter than an IPv4 header: dropped, as the Python reader does */

/* One staged span (start, end) appended to `staged`; -1 start: its checksum offsets did not
 * fit (the frame is dropped where it is served, as in the Python form). 0 or -1 (error). */
static int
stage(PyObject *staged, Py_ssize_t start, Py_ssize_t end)
{
    PyObject *span = Py_BuildValue("(nn)", start, end);
    if (span == NULL) {
        return -1;
    }
    int failed = PyList_Append(staged, span);
    Py_DECREF(span);
    return failed;
}

/* The frame at `frame` (`n` bytes, its virtio-net header first) completed when the kernel
 * left its checksum partial: 1 complete (or nothing to do), 0 its offsets do not fit. */
static int
complete_frame(unsigned char *frame, Py_ssize_t n)
{
    if (!(frame[0] & VNET_F_NEEDS_CSUM)) {
        return 1;
    }
    uint16_t csum_start, csum_offset; /* native order, as the kernel writes them here */
    memcpy(&csum_start, frame + 6, 2);
    memcpy(&csum_offset, frame + 8, 2);
    return csum_complete(frame + VNET_HDR, n - VNET_HDR, csum_start, csum_offset);
}

/* read_ahead(fd, area, staged, stage_room, max_frames)
 *   -> (super_at, super_size, drained, dropped)
 *
 * `staged` (a list, emptied first) gets the (start, end) spans of the plain frames read
 * into `area`, each at a 16-byte boundary past the one before, their partial checksums
 * completed (start -1: offsets that did not fit). `super_at` / `super_size`: where a
 * super-packet read behind them starts and its size past the header (-1, -1: none);
 * `drained`: the queue was found empty; `dropped`: frames too short to be a packet. The
 * area must hold `stage_room` bytes and, behind them, one whole frame of any size the
 * device can hand over (the caller's buffer is made so). An error other than EAGAIN
 * raises OSError when nothing was read (nor dropped), else it ends the read-ahead with what
 * was (the next read meets it again). */
PyObject *
tun_read_ahead(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "takes (fd, area, staged, stage_room, max_frames)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    Py_ssize_t stage_room = PyLong_AsSsize_t(args[3]);
    Py_ssize_t max_frames = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "staged must be a list");
        return NULL;
    }
    PyObject *staged = args[2];
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX || stage_room < 0 || max_frames < 1 || stage_room >= view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad fd, stage_room or max_frames for this area");
        return NULL;
    }
    if (PyList_SetSlice(staged, 0, PyList_GET_SIZE(staged), NULL) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *area = view.buf;
    Py_ssize_t pos = 0, super_at = -1, super_size = -1, frames = 0, dropped = 0;
    int drained = 0, failed = 0;
    for (;;) {
        ssize_t n = read((int)fd, area + pos, (size_t)(view.len - pos));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                drained = 1;
            } else if (frames == 0 && dropped == 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                failed = 1;
            }
            break;
        }
        if (n - VNET_HDR < MIN_PACKET) {
            dropped++; /* (the bound below also ends a device that reads 0 bytes forever) */
            if (frames + dropped >= max_frames) {
                break;
            }
            continue;
        }
        if (area[pos + 1] != GSO_NONE) {
            super_at = pos;
            super_size = n - VNET_HDR;
            break;
        }
        Py_ssize_t start = complete_frame(area + pos, n) ? pos : -1;
        if (stage(staged, start, pos + n) < 0) {
            failed = 1;
            break;
        }
        frames++;
        /* the next frame at a 16-byte boundary past this one's end */
        pos = (pos + n + 16) & ~(Py_ssize_t)15;
        if (pos > stage_room || frames + dropped >= max_frames) {
            break;
        }
        if (frames == 1) {
            /* a lone packet (the interactive case): a poll says so for less than a read */
            struct pollfd probe = {.fd = (int)fd, .events = POLLIN};
            if (poll(&probe, 1, 0) == 0) {
                drained = 1;
                break;
            }
        }
    }
    PyBuffer_Release(&view);
    if (failed) {
        return NULL;
    }
    return Py_BuildValue("(nnin)", super_at, super_size, drained, dropped);
}
