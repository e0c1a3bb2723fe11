/* tunnel._aead: the data channel's AEAD with a persistent OpenSSL cipher context per key.
 *
 * Why C: `cryptography`'s AESGCM/ChaCha20Poly1305 build a new EVP_CIPHER_CTX and expand the key
 * on every call, and an idle tunnel pays every call cold (after an idle gap on this VM one
 * `encrypt_into` of 84 bytes takes ~47 us, this context ~31 us). Here the key schedule is done
 * once per key and each packet only sets its nonce (packet-id || implicit IV), so a seal or
 * open is one call with no per-packet object. What the data channel does around it (header,
 * packet-id counter, replay window, counters) stays in Python: tunnel/protocol/datachannel.py.
 *
 * The same operations as cryptography's `encrypt_into` / `decrypt_into` (same bytes: the
 * tests compare both), through libcrypto's EVP interface, which is what OpenVPN itself calls
 * (crypto_openssl.c). The tag is verified by EVP_DecryptFinal_ex (constant time).
 *
 * Every offset and length is checked before any byte is touched: a bad call raises ValueError
 * and changes nothing. The GIL is held: one packet's work is a few microseconds.
 *
 * The module also holds `Lane` (tunnel/_lane.c): a lone packet's whole hop in one call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>

#include "_aead.h"

static void
Aead_dealloc(Aead *self)
{
    if (self->ctx != NULL) {
        EVP_CIPHER_CTX_free(self->ctx); /* also wipes the expanded key */
    }
    OPENSSL_cleanse(self->nonce, sizeof self->nonce);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static const EVP_CIPHER *
cipher_of(const char *name, Py_ssize_t key_len)
{
    if (strcmp(name, "AES-256-GCM") == 0 && key_len == 32) {
        return EVP_aes_256_gcm();
    }
    if (strcmp(name, "AES-128-GCM") == 0 && key_len == 16) {
        return EVP_aes_128_gcm();
    }
    if (strcmp(name, "CHACHA20-POLY1305") == 0 && key_len == 32) {
        return EVP_chacha20_poly1305();
    }
    return NULL;
}

static int
Aead_init(Aead *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cipher", "key", "implicit_iv", "encrypt", NULL};
    const char *name;
    Py_buffer key, iv;
    int encrypt;
    int ok = -1;

    if (self->ctx != NULL) {
        PyErr_SetString(PyExc_TypeError, "Aead is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sy*y*p", kwlist, &name, &key, &iv, &encrypt)) {
        return -1;
    }
    const EVP_CIPHER *cipher = cipher_of(name, key.len);
    if (cipher == NULL) {
        /* Lengths only: never the key material. */
        PyErr_Format(PyExc_ValueError, "unsupported AEAD %s with a %zd-byte key", name, key.len);
        goto done;
    }
    if (iv.len != IMPLICIT_IV_SIZE) {
        PyErr_Format(PyExc_ValueError, "implicit IV is %zd bytes, needs %d", iv.len,
                     IMPLICIT_IV_SIZE);
        goto done;
    }
    self->ctx = EVP_CIPHER_CTX_new();
    if (self->ctx == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* The key now (its schedule is kept), the nonce per packet. */
    if (EVP_CipherInit_ex(self->ctx, cipher, NULL, NULL, NULL, encrypt) != 1
        || EVP_CIPHER_CTX_ctrl(self->ctx, EVP_CTRL_AEAD_SET_IVLEN, NONCE_SIZE, NULL) != 1
        || EVP_CipherInit_ex(self->ctx, NULL, NULL, key.buf, NULL, encrypt) != 1) {
        PyErr_SetString(PyExc_ValueError, "libcrypto refused the AEAD key");
        goto done;
    }
    self->encrypt = encrypt;
    memset(self->nonce, 0, PID_SIZE);
    memcpy(self->nonce + PID_SIZE, iv.buf, IMPLICIT_IV_SIZE);
    ok = 0;
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&iv);
    return ok;
}

/* Start one packet: its nonce. */
static int
begin(Aead *self, unsigned long pid)
{
    self->nonce[0] = (unsigned char)(pid >> 24);
    self->nonce[1] = (unsigned char)(pid >> 16);
    self->nonce[2] = (unsigned char)(pid >> 8);
    self->nonce[3] = (unsigned char)pid;
    return EVP_CipherInit_ex(self->ctx, NULL, NULL, NULL, self->nonce, -1) == 1;
}

/* One packet: AAD, then `text` (len bytes) in place, then the tag: written to `tag` when
 * sealing, checked against it when opening. Returns 1 (done), 0 (the tag did not verify).
 * Also the lane's (_lane.c) one way into a context. */
int
aead_run(Aead *self, unsigned long pid, const unsigned char *aad, int aad_len, unsigned char *text,
    int len, unsigned char *tag)
{
    int out_len;
    if (!begin(self, pid)) {
        return 0;
    }
    if (aad_len > 0 && EVP_CipherUpdate(self->ctx, NULL, &out_len, aad, aad_len) != 1) {
        return 0;
    }
    if (len > 0 && EVP_CipherUpdate(self->ctx, text, &out_len, text, len) != 1) {
        return 0;
    }
    if (self->encrypt) {
        return EVP_CipherFinal_ex(self->ctx, text + len, &out_len) == 1
            && EVP_CIPHER_CTX_ctrl(self->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE, tag) == 1;
    }
    return EVP_CIPHER_CTX_ctrl(self->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE, tag) == 1
        && EVP_CipherFinal_ex(self->ctx, text + len, &out_len) == 1;
}

static int
parse_pid(PyObject *obj, unsigned long *pid)
{
    unsigned long value = PyLong_AsUnsignedLong(obj);
    if (value == (unsigned long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return 0; /* not an int: the TypeError stands */
        }
        PyErr_Clear();
        value = ULONG_MAX; /* negative or huge: refused below, as a ValueError */
    }
    if (value > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "packet-id does not fit in 32 bits");
        return 0;
    }
    *pid = value;
    return 1;
}

/* datagram(aad_from, tag_at, ct_at, end, pid): one datagram laid out as OpenVPN sends it,
 * AAD = [aad_from, tag_at), tag = [tag_at, tag_at + 16) = [.., ct_at), text = [ct_at, end). */
static PyObject *
datagram_call(Aead *self, PyObject *const *args, Py_ssize_t nargs, int want_encrypt)
{
    Py_buffer view;
    Py_ssize_t at[4];
    unsigned long pid;
    PyObject *result = NULL;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "takes (datagram, aad_from, tag_at, ct_at, end, packet_id)");
        return NULL;
    }
    if (self->ctx == NULL || self->encrypt != want_encrypt) {
        PyErr_SetString(PyExc_TypeError, want_encrypt ? "not a sealing context"
                                                       : "not an opening context");
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        at[i] = PyLong_AsSsize_t(args[i + 1]);
        if (at[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (!parse_pid(args[5], &pid)) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    Py_ssize_t aad_from = at[0], tag_at = at[1], ct_at = at[2], end = at[3];
    if (aad_from < 0 || aad_from > tag_at || ct_at - tag_at != TAG_SIZE || ct_at > end
        || end > view.len || end - ct_at > INT_MAX - 64) {
        PyErr_SetString(PyExc_ValueError, "AEAD offsets outside the datagram");
        goto done;
    }
    unsigned char *p = view.buf;
    int ok = aead_run(self, pid, p + aad_from, (int)(tag_at - aad_from), p + ct_at,
                 (int)(end - ct_at), p + tag_at);
    if (want_encrypt) {
        if (!ok) {
            PyErr_SetString(PyExc_RuntimeError, "libcrypto failed to seal");
            goto done;
        }
        result = Py_NewRef(Py_None);
    }
    else {
        result = Py_NewRef(ok ? Py_True : Py_False);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
Aead_seal(Aead *self, PyObject *const *args, Py_ssize_t nargs)
{
    return datagram_call(self, args, nargs, 1);
}

static PyObject *
Aead_open(Aead *self, PyObject *const *args, Py_ssize_t nargs)
{
    return datagram_call(self, args, nargs, 0);
}

/* rows: the row batches (tunnel/protocol/rows.py). Sealing: `plains[i]` is encrypted in place
 * and its tag written into the 16 bytes behind it, which `outs[i]` (plaintext + 16) covers, as
 * `encrypt_into(nonce, plain, aad, out)` does. Opening: `cts[i]` is ciphertext || tag,
 * decrypted in place into `outs[i]` (its first len - 16 bytes, the same memory). */
static int
row_views(PyObject *list, Py_ssize_t i, Py_buffer *view, int writable)
{
    return PyObject_GetBuffer(PyList_GET_ITEM(list, i), view,
                              writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) == 0;
}

static int
same_memory(const Py_buffer *a, const Py_buffer *b, Py_ssize_t len)
{
    return a->buf == b->buf && b->len >= len;
}

static PyObject *
Aead_seal_rows(Aead *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long first;
    if (nargs != 4 || !PyList_Check(args[1]) || !PyList_Check(args[2]) || !PyList_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "takes (first_packet_id, plains, outs, aads: lists)");
        return NULL;
    }
    if (self->ctx == NULL || !self->encrypt) {
        PyErr_SetString(PyExc_TypeError, "not a sealing context");
        return NULL;
    }
    if (!parse_pid(args[0], &first)) {
        return NULL;
    }
    PyObject *plains = args[1], *outs = args[2], *aads = args[3];
    Py_ssize_t count = PyList_GET_SIZE(plains);
    if (PyList_GET_SIZE(outs) != count || PyList_GET_SIZE(aads) != count) {
        PyErr_SetString(PyExc_ValueError, "rows of different lengths");
        return NULL;
    }
    if (count > 0 && first + (unsigned long)(count - 1) > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "packet-ids do not fit in 32 bits");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_buffer plain, out, aad;
        if (!row_views(plains, i, &plain, 1)) {
            return NULL;
        }
        if (!row_views(outs, i, &out, 1)) {
            PyBuffer_Release(&plain);
            return NULL;
        }
        if (!row_views(aads, i, &aad, 0)) {
            PyBuffer_Release(&plain);
            PyBuffer_Release(&out);
            return NULL;
        }
        int ok = 0;
        if (!same_memory(&plain, &out, plain.len + TAG_SIZE) || plain.len > INT_MAX - 64
            || aad.len > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "a row's output is not its plaintext + 16 bytes");
        }
        else if (!aead_run(self, first + (unsigned long)i, aad.buf, (int)aad.len, plain.buf,
                      (int)plain.len, (unsigned char *)out.buf + plain.len)) {
            PyErr_SetString(PyExc_RuntimeError, "libcrypto failed to seal");
        }
        else {
            ok = 1;
        }
        PyBuffer_Release(&plain);
        PyBuffer_Release(&out);
        PyBuffer_Release(&aad);
        if (!ok) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Aead_open_rows(Aead *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])
        || !PyList_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "takes (packet_ids, cts, outs, aads: lists)");
        return NULL;
    }
    if (self->ctx == NULL || self->encrypt) {
        PyErr_SetString(PyExc_TypeError, "not an opening context");
        return NULL;
    }
    PyObject *pids = args[0], *cts = args[1], *outs = args[2], *aads = args[3];
    Py_ssize_t count = PyList_GET_SIZE(pids);
    if (PyList_GET_SIZE(cts) != count || PyList_GET_SIZE(outs) != count
        || PyList_GET_SIZE(aads) != count) {
        PyErr_SetString(PyExc_ValueError, "rows of different lengths");
        return NULL;
    }
    PyObject *oks = PyList_New(count);
    if (oks == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned long pid;
        Py_buffer ct, out, aad;
        if (!parse_pid(PyList_GET_ITEM(pids, i), &pid)) {
            goto fail;
        }
        if (!row_views(cts, i, &ct, 1)) {
            goto fail;
        }
        if (!row_views(outs, i, &out, 1)) {
            PyBuffer_Release(&ct);
            goto fail;
        }
        if (!row_views(aads, i, &aad, 0)) {
            PyBuffer_Release(&ct);
            PyBuffer_Release(&out);
            goto fail;
        }
        int bad_call = ct.len < TAG_SIZE || ct.len > INT_MAX - 64 || aad.len > INT_MAX
            || !same_memory(&ct, &out, ct.len - TAG_SIZE);
        int ok = 0;
        if (!bad_call) {
            unsigned char *text = ct.buf;
            int len = (int)(ct.len - TAG_SIZE);
            ok = aead_run(self, pid, aad.buf, (int)aad.len, text, len, text + len);
        }
        PyBuffer_Release(&ct);
        PyBuffer_Release(&out);
        PyBuffer_Release(&aad);
        if (bad_call) {
            PyErr_SetString(PyExc_ValueError, "a row's output is not its ciphertext's place");
            goto fail;
        }
        PyList_SET_ITEM(oks, i, Py_NewRef(ok ? Py_True : Py_False));
    }
    return oks;
fail:
    Py_DECREF(oks);
    return NULL;
}

static PyMethodDef Aead_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))Aead_seal, METH_FASTCALL,
     "seal(datagram, aad_from, tag_at, ct_at, end, packet_id): encrypt [ct_at, end) in place, "
     "the tag into [tag_at, ct_at)."},
    {"open", (PyCFunction)(void (*)(void))Aead_open, METH_FASTCALL,
     "open(datagram, aad_from, tag_at, ct_at, end, packet_id) -> bool: decrypt [ct_at, end) in "
     "place; False when the tag in [tag_at, ct_at) does not verify."},
    {"seal_rows", (PyCFunction)(void (*)(void))Aead_seal_rows, METH_FASTCALL,
     "seal_rows(first_packet_id, plains, outs, aads): encrypt_into per row, packet-ids counting "
     "up from the first."},
    {"open_rows", (PyCFunction)(void (*)(void))Aead_open_rows, METH_FASTCALL,
     "open_rows(packet_ids, cts, outs, aads) -> list[bool]: decrypt_into per row."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject AeadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tunnel._aead.Aead",
    .tp_doc = "Aead(cipher, key, implicit_iv, encrypt): one direction of one data-channel key.",
    .tp_basicsize = sizeof(Aead),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Aead_init,
    .tp_dealloc = (destructor)Aead_dealloc,
    .tp_methods = Aead_methods,
};

static PyMethodDef module_methods[] = {
    {"complete_partial", (PyCFunction)(void (*)(void))csum_complete_partial, METH_FASTCALL,
     "complete_partial(buffer, base, end, csum_start, csum_offset) -> bool: a NEEDS_CSUM "
     "packet's checksum finished in place (False: the offsets do not fit it)"},
    {"fill_segments", (PyCFunction)(void (*)(void))tso_fill_segments, METH_FASTCALL,
     "fill_segments(rows, stride, count, packet, hlen, mss, at) -> None: a TCP/IPv4 "
     "super-packet's segments written as rows (tunnel/_tso.c)"},
    {"tcp_train", (PyCFunction)(void (*)(void))tso_tcp_train, METH_FASTCALL,
     "tcp_train(rows, stride, count, at, size, hlen) -> bool: whether the rows are one TCP "
     "train GRO would merge (tunnel/_tso.c)"},
    {"read_ahead", (PyCFunction)(void (*)(void))tun_read_ahead, METH_FASTCALL,
     "read_ahead(fd, area, staged, stage_room, max_frames) -> (super_at, super_size, "
     "drained, dropped): a TSO device's read-ahead of plain frames, their partial checksums "
     "completed (tunnel/_readahead.c)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef aead_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tunnel._aead",
    .m_doc = "The data channel's AEAD with a persistent libcrypto context per key direction.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__aead(void)
{
    if (PyType_Ready(&AeadType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&aead_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Aead", (PyObject *)&AeadType) < 0
        || lane_add_type(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
