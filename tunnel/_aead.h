/* What tunnel/_aead.c, tunnel/_lane.c, tunnel/_csum.c, tunnel/_tso.c and tunnel/_readahead.c
 * share: one direction of one key's AEAD context, the partial checksum's completion and the
 * module's functions. */
#ifndef TUNNEL_AEAD_H
#define TUNNEL_AEAD_H
#include <Python.h>
#include <openssl/evp.h>
#include <stdint.h>

#define TAG_SIZE 16
#define NONCE_SIZE 12
#define PID_SIZE 4
#define IMPLICIT_IV_SIZE (NONCE_SIZE - PID_SIZE)

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx;
    int encrypt;
    unsigned char nonce[NONCE_SIZE]; /* packet-id (4, big-endian) || implicit IV (8) */
} Aead;

extern PyTypeObject AeadType;

/* One packet through `self`: AAD, `text` in place, the tag written (sealing) or checked
 * (opening) at `tag`. 1 done, 0 failed (opening: the tag did not verify). */
int aead_run(Aead *self, unsigned long pid, const unsigned char *aad, int aad_len,
             unsigned char *text, int len, unsigned char *tag);

/* The ones'-complement sum of `p[0:len]` as big-endian 16-bit words, folded (not
 * complemented): 0 only when all of it is zero (tunnel/_csum.c). */
uint16_t csum_sum(const unsigned char *p, size_t len);

/* fill_segments(...), the module's (tunnel/_tso.c): a super-packet's segments as rows. */
PyObject *tso_fill_segments(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* tcp_train(...), the module's (tunnel/_tso.c): whether rows are one mergeable TCP train. */
PyObject *tso_tcp_train(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The NEEDS_CSUM packet `packet[0:size]` finished in place (tunnel/_csum.c): the sum from
 * `csum_start` to its end complemented into the field at csum_start + csum_offset. 1 done,
 * 0 (nothing written) when the offsets do not fit the packet. */
int csum_complete(unsigned char *packet, Py_ssize_t size, unsigned csum_start,
                  unsigned csum_offset);

/* complete_partial(buffer, base, end, csum_start, csum_offset) -> bool, the module's. */
PyObject *csum_complete_partial(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* read_ahead(fd, area, staged, stage_room, max_frames), the module's (tunnel/_readahead.c):
 * a TSO device's read-ahead of plain frames, their partial checksums completed. */
PyObject *tun_read_ahead(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* Adds the Lane type (tunnel/_lane.c) to the module. */
int lane_add_type(PyObject *module);

#endif
