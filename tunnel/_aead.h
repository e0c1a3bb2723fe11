/* What tunnel/_aead.c and tunnel/_lane.c share: one direction of one key's AEAD context. */
#ifndef TUNNEL_AEAD_H
#define TUNNEL_AEAD_H
#include <Python.h>
#include <openssl/evp.h>

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

/* Adds the Lane type (tunnel/_lane.c) to the module. */
int lane_add_type(PyObject *module);

#endif
