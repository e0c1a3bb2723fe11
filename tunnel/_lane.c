/* tunnel._aead.Lane: a lone data packet's whole hop in one call, on the persistent contexts.
 *
 * Why: an idle tunnel's packet arrives alone and every wakeup runs cold; in Python a hop was
 * ~30 calls through the driver, the data path, the session, the key and the buffer, and that
 * interpreter work, not the kernel's, was most of the round trip's gap to the stock binary
 * (docs/PERFORMANCE.md). Here one call reads the packet, checks that it is the ordinary case,
 * seals or opens it where it lies in its pool block and hands it on:
 *
 *   device(): read one packet from the TUN fd to the block's headroom; nothing behind it
 *     (a zero-timeout poll), the send key set, not a TCP SYN (mssfix) -> P_DATA header and
 *     packet-id in front, sealed in place, one sendto to the peer.
 *     Over a TSO device (set_offloaded) the read goes to the TUN reader's own read area: a
 *     super-packet is handed over there, a plain packet copied to the headroom with its
 *     partial checksum completed (tunnel/_csum.c), then as above.
 *   link(now): one recvmsg (the same two iovecs and UDP_GRO control room as the Python path)
 *     to the block's headroom; one datagram, nothing behind it, from the peer, P_DATA of the
 *     open key -> authenticated and decrypted in place, then the replay window (after
 *     authentication, the key's own `replay.accept`), then one write to the TUN fd.
 *
 * A server has many peers: there the lane only reads (no peer or key set), the server's own
 * maps find the client (peer-id, destination address) and a second call, seal_send() or
 * open_write(), does the rest on that client's current key, with the address and inner
 * source it must have.
 *
 * A server's device side can also take the routing itself (set_routes: the server's own
 * IPv4-address -> client dict). The Python side leaves on each client's entry a `lane_plan`:
 * what its last decision to seal for that client was made from (session, current key,
 * address, peer-id, compression, mssfix) and the arguments that followed from it. device()
 * looks the destination up in that dict and seals with the plan only while every one of
 * those inputs is still the same object on the live session -- as the client's lane mirrors
 * its session on every call -- so a rekey, a float, a push or a new session is never missed;
 * anything else is handed over held, as before, and the Python path decides (and plans).
 * Its link side the same way (set_peers: the server's peer-id -> entry list, and each entry's
 * `lane_open_plan`): the datagram's peer-id finds the entry, and the plan's key opens it only
 * while the inputs (session, current key -- also the one at the datagram's key_id --,
 * address, compression, mssfix, the entry's IPv4 address) are the live ones; from another
 * address than the plan's it is held for the Python path (a float), as before.
 * A cold wakeup's Python routing and checks were ~20-40 us of a hop's critical path.
 *
 * Anything else -- more packets waiting (a batch), another key_id, a keepalive or OCC
 * payload, a TCP SYN under mssfix, a packet-id at its limit, no key yet -- comes back as a
 * code that says what was read and where it lies, and the Python path (tunnel/io/lane.py,
 * datapath.py) goes on from there with the same checks in the same order. Nothing is lost
 * and nothing is decided twice. The packet-id counter stays the key's (`_send_pid`), read and
 * written here under the GIL; counters are the caller's.
 *
 * Every offset is fixed when the lane is made and checked then; a call takes no arguments
 * from the network but the bytes it reads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "_aead.h"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* Result codes, in the low 4 bits; bit 4 set for a P_DATA_V1 datagram; the packet's size
 * above them (code | v1 << 4 | size << 5). Device results carry the packet's size, link
 * results the datagram's. */
enum {
    EMPTY = 0,        /* nothing to read */
    SENT = 1,         /* device: sealed and sent (size: plaintext) */
    SEND_FAILED = 2,  /* device: sealed, sendto refused it (size: plaintext) */
    TAKE_LONE = 3,    /* device: read, alone, for the Python path (size: packet) */
    TAKE_MORE = 4,    /* device: read, more waiting: the batch (size: packet) */
    READ_DROPPED = 5, /* device: a frame the Python reader would have dropped too */
    READ_ERROR = 6,   /* device: the read failed; the Python path reads again and sees it */
    DELIVERED = 7,    /* link: opened and written (size: plaintext) */
    TUN_DROPPED = 8,  /* link: opened, the device refused it (size: plaintext) */
    LINK_TAKE = 9,    /* link: read, for the Python path (size, segment, addr, lone) */
    MALFORMED = 10,   /* link: an empty or truncated datagram */
    AUTH_FAILED = 11, /* link: the tag did not verify */
    REPLAYED = 12,    /* link: authentic, refused by the replay window */
    OPENED_TAKE = 13, /* link: opened and accepted; the payload is for the Python path */
    LINK_ERROR = 14,  /* link: the read failed; the Python path reads again */
    TAKE_SUPER = 15,  /* device (offloaded): a TCP super-packet at the read area's start,
                         virtio-net header first, for the TSO path (size: packet) */
};

#define TAG_BYTES 16
#define V2_CT_AT 24 /* op|kid+peer-id (4), packet-id (4), tag (16) */
#define V1_CT_AT 21 /* op|kid (1), packet-id (4), tag (16) */
#define P_DATA_V1 6
#define P_DATA_V2 9
#define OCC_FIRST 0x28
#define PID_MAX 0xFFFFFFFFUL

typedef struct {
    PyObject_HEAD
    int tun_fd, sock_fd, vnet, family;
    Py_buffer block;   /* the lane's pool block, held for the lane's life */
    Py_buffer run;     /* the GRO run behind it (the second iovec of a read) */
    Py_buffer big;     /* a TSO device's read area (set_offloaded), where device() reads */
    Py_ssize_t headroom;
    int has_block, has_big;
    /* the one peer */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    int has_peer;
    /* sending */
    Aead *sealer;
    PyObject *send_key; /* its `_send_pid` is the packet-id counter */
    unsigned long word; /* V2: op|kid << 24 | peer-id; V1: op|kid */
    int v2, mssfix;
    /* opening */
    Aead *opener;
    PyObject *accept; /* the key's replay.accept(pid, now) */
    /* a server's routing: its IPv4 address -> entry dict, its peer-id -> entry list, and
     * the entry the last call sealed or opened for */
    PyObject *routes, *peers, *entry;
    unsigned char v2op, v1op;
    /* what the last call read, for the Python path */
    Py_ssize_t size, segment;
    int lone;
    int held; /* the last read left a lone packet in place that a second step may take */
    struct sockaddr_storage from;
    socklen_t from_len;
} Lane;

static PyObject *SEND_PID; /* interned "_send_pid" */
/* interned attribute names a plan is checked against */
static PyObject *LANE_PLAN, *SESSION, *RING, *CURRENT, *REMOTE_ADDR, *TX_PEER_ID, *COMP, *MSSFIX;
static PyObject *LANE_OPEN_PLAN, *DATA_KEYS, *VIP_INT;

/* A plan: (session, key, remote_addr, tx_peer_id, comp, mssfix -- the inputs, compared by
 * identity -- then sealer, word, v2, mssfix flag, host, port -- what seal_send() takes). */
#define PLAN_INPUTS 6
#define PLAN_LEN 12
/* An open plan: (session, key, remote_addr, comp, mssfix, vip_int -- the inputs -- then
 * key_id, opener, accept, host, port, vip, mssfix flag, deliver -- open_write()'s arguments
 * but `now`). */
#define OPEN_PLAN_INPUTS 6
#define OPEN_PLAN_LEN 14

static void
Lane_clear_send(Lane *self)
{
    Py_CLEAR(self->sealer);
    Py_CLEAR(self->send_key);
}

static void
Lane_clear_open(Lane *self)
{
    Py_CLEAR(self->opener);
    Py_CLEAR(self->accept);
}

static void
Lane_dealloc(Lane *self)
{
    Lane_clear_send(self);
    Lane_clear_open(self);
    Py_CLEAR(self->routes);
    Py_CLEAR(self->peers);
    Py_CLEAR(self->entry);
    if (self->has_block) {
        PyBuffer_Release(&self->block);
        PyBuffer_Release(&self->run);
    }
    if (self->has_big) {
        PyBuffer_Release(&self->big);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Lane_init(Lane *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"tun_fd", "sock_fd", "vnet", "block", "headroom", "run", NULL};
    int tun_fd, sock_fd, vnet;
    Py_ssize_t headroom;
    PyObject *block, *run;
    if (self->has_block) {
        PyErr_SetString(PyExc_TypeError, "Lane is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiiOnO", kwlist, &tun_fd, &sock_fd, &vnet,
                                     &block, &headroom, &run)) {
        return -1;
    }
    if (tun_fd < 0 || sock_fd < 0 || (vnet != 0 && vnet != 10)) {
        PyErr_SetString(PyExc_ValueError, "bad fds or virtio-net header size");
        return -1;
    }
    if (PyObject_GetBuffer(block, &self->block, PyBUF_WRITABLE) < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(run, &self->run, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&self->block);
        return -1;
    }
    self->has_block = 1;
    /* The header goes in front of a sealed packet, the virtio-net header in front of a read
     * one and of an opened one (in the tag's place), and a datagram needs its header's room. */
    if (headroom < V2_CT_AT || headroom < vnet || headroom + V2_CT_AT + 64 > self->block.len
        || self->block.len - headroom > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "the lane's block is too small for its headroom");
        return -1;
    }
    int family;
    socklen_t family_len = sizeof family;
    if (getsockopt(sock_fd, SOL_SOCKET, SO_DOMAIN, &family, &family_len) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (family != AF_INET && family != AF_INET6) {
        PyErr_SetString(PyExc_ValueError, "not an IPv4 or IPv6 socket");
        return -1;
    }
    self->family = family;
    self->tun_fd = tun_fd;
    self->sock_fd = sock_fd;
    self->vnet = vnet;
    self->headroom = headroom;
    return 0;
}

/* The sealing arguments (sealer, word, v2, mssfix), as set_send() and seal_send() take
 * them: 1, or 0 with an exception. */
static int
parse_sealing(PyObject *const *args, Aead **sealer, unsigned long *word, int *v2, int *mssfix)
{
    if (!PyObject_TypeCheck(args[0], &AeadType)) {
        PyErr_SetString(PyExc_TypeError, "the sealer must be an Aead");
        return 0;
    }
    *sealer = (Aead *)args[0];
    if (!(*sealer)->encrypt || (*sealer)->ctx == NULL) {
        PyErr_SetString(PyExc_TypeError, "not a sealing context");
        return 0;
    }
    *word = PyLong_AsUnsignedLong(args[1]);
    if (*word == (unsigned long)-1 && PyErr_Occurred()) {
        return 0;
    }
    *v2 = PyObject_IsTrue(args[2]);
    *mssfix = PyObject_IsTrue(args[3]);
    if (*v2 < 0 || *mssfix < 0) {
        return 0;
    }
    if (*word > (*v2 ? 0xFFFFFFFFUL : 0xFFUL)) {
        PyErr_SetString(PyExc_ValueError, "header word out of range");
        return 0;
    }
    return 1;
}

/* The opening arguments (key_id, opener), as set_open() and open_write() take them: 1, or 0
 * with an exception. */
static int
parse_opening(PyObject *const *args, long *key_id, Aead **opener)
{
    if (!PyObject_TypeCheck(args[1], &AeadType)) {
        PyErr_SetString(PyExc_TypeError, "the opener must be an Aead");
        return 0;
    }
    *opener = (Aead *)args[1];
    if ((*opener)->encrypt || (*opener)->ctx == NULL) {
        PyErr_SetString(PyExc_TypeError, "not an opening context");
        return 0;
    }
    *key_id = PyLong_AsLong(args[0]);
    if (*key_id == -1 && PyErr_Occurred()) {
        return 0;
    }
    if (*key_id < 0 || *key_id > 7) {
        PyErr_SetString(PyExc_ValueError, "key_id outside 0..7");
        return 0;
    }
    return 1;
}

/* set_send(key, sealer, word, v2, mssfix) or set_send(None): the key new packets go out on. */
static PyObject *
Lane_set_send(Lane *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1 && args[0] == Py_None) {
        Lane_clear_send(self);
        Py_RETURN_NONE;
    }
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "takes (key, sealer: Aead, word, v2, mssfix) or (None)");
        return NULL;
    }
    Aead *sealer;
    unsigned long word;
    int v2, mssfix;
    if (!parse_sealing(args + 1, &sealer, &word, &v2, &mssfix)) {
        return NULL;
    }
    Lane_clear_send(self);
    self->send_key = Py_NewRef(args[0]);
    self->sealer = (Aead *)Py_NewRef((PyObject *)sealer);
    self->word = word;
    self->v2 = v2;
    self->mssfix = mssfix;
    Py_RETURN_NONE;
}

/* set_open(key_id, opener, accept) or set_open(None): the key datagrams are opened with. */
static PyObject *
Lane_set_open(Lane *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1 && args[0] == Py_None) {
        Lane_clear_open(self);
        Py_RETURN_NONE;
    }
    if (nargs != 3 || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "takes (key_id, opener: Aead, accept) or (None)");
        return NULL;
    }
    long key_id;
    Aead *opener;
    if (!parse_opening(args, &key_id, &opener)) {
        return NULL;
    }
    Lane_clear_open(self);
    self->opener = (Aead *)Py_NewRef((PyObject *)opener);
    self->accept = Py_NewRef(args[2]);
    self->v2op = (unsigned char)((P_DATA_V2 << 3) | key_id);
    self->v1op = (unsigned char)((P_DATA_V1 << 3) | key_id);
    Py_RETURN_NONE;
}

#define V1_BIT 16
#define SIZE_SHIFT 5

static PyObject *
code(int kind, Py_ssize_t size)
{
    return PyLong_FromSsize_t(kind | (size << SIZE_SHIFT));
}

static int
nothing_behind(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int n;
    do {
        n = poll(&pfd, 1, 0);
    } while (n < 0 && errno == EINTR);
    return n == 0;
}

/* Only a TCP SYN can need the MSS clamp; an IPv4 packet without options that is not one is
 * told apart here (as Session.encrypt/decrypt do before clamp_mss). */
static int
may_need_clamp(const unsigned char *p, Py_ssize_t size)
{
    return size >= 40 && (p[0] != 0x45 || (p[9] == 6 && (p[33] & 0x02)));
}

static Py_ssize_t
ip_length(const unsigned char *p, Py_ssize_t size)
{
    if (size < 20) {
        return 0;
    }
    if (p[0] >> 4 == 4) {
        return (p[2] << 8) | p[3];
    }
    if (p[0] >> 4 == 6) {
        return ((p[4] << 8) | p[5]) + 40;
    }
    return 0;
}

static void
put_be32(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int
same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) {
        return 0;
    }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        /* As the Python path's (host, port): a scoped address goes that way. */
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == 0 && y->sin6_scope_id == 0
            && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

/* (host, port) as the Python path names an address, into a sockaddr of the socket's family;
 * 0 (no exception) when it is not a numeric address of that family. */
static int
parse_address(Lane *self, PyObject *host, PyObject *port, struct sockaddr_storage *out,
              socklen_t *out_len)
{
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL) {
        return -1;
    }
    long number = PyLong_AsLong(port);
    if (number == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (number < 0 || number > 65535) {
        return 0;
    }
    memset(out, 0, sizeof *out);
    if (self->family == AF_INET) {
        struct sockaddr_in *in = (void *)out;
        in->sin_family = AF_INET;
        in->sin_port = htons((unsigned short)number);
        *out_len = sizeof *in;
        return inet_pton(AF_INET, text, &in->sin_addr) == 1;
    }
    struct sockaddr_in6 *in6 = (void *)out;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((unsigned short)number);
    *out_len = sizeof *in6;
    return inet_pton(AF_INET6, text, &in6->sin6_addr) == 1;
}

static int
write_errno_drops(int e)
{
    /* TunDevice's _WRITE_DROP_ERRNOS: the device is full or refuses this packet. */
    return e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == ENOMEM || e == EINVAL
        || e == EIO;
}

/* set_peer(host, port) or set_peer(None): the one address datagrams go to and are taken
 * from; a host that is not a numeric address of the socket's family sets none. */
static PyObject *
Lane_set_peer(Lane *self, PyObject *const *args, Py_ssize_t nargs)
{
    self->has_peer = 0;
    if (nargs == 1 && args[0] == Py_None) {
        Py_RETURN_NONE;
    }
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "takes (host, port) or (None)");
        return NULL;
    }
    int parsed = parse_address(self, args[0], args[1], &self->peer, &self->peer_len);
    if (parsed < 0) {
        return NULL;
    }
    self->has_peer = parsed;
    Py_RETURN_NONE;
}

/* One of the server's maps into `slot` (`fits`: the map is of the kind the slot takes), or
 * None to go without it. */
static PyObject *
set_map(Lane *self, PyObject **slot, PyObject *map, int fits, const char *refusal)
{
    if (map != Py_None && !fits) {
        PyErr_SetString(PyExc_TypeError, refusal);
        return NULL;
    }
    Py_CLEAR(self->entry);
    Py_XSETREF(*slot, map == Py_None ? NULL : Py_NewRef(map));
    Py_RETURN_NONE;
}

/* set_routes(routes) or set_routes(None): a server's IPv4 address -> entry dict, which
 * device() then routes by (see the top of the file). */
static PyObject *
Lane_set_routes(Lane *self, PyObject *routes)
{
    return set_map(self, &self->routes, routes, PyDict_CheckExact(routes),
                   "routes must be a dict or None");
}

/* set_peers(peers) or set_peers(None): a server's peer-id -> entry (or None) list, which
 * link() then finds the client by (see the top of the file). */
static PyObject *
Lane_set_peers(Lane *self, PyObject *peers)
{
    return set_map(self, &self->peers, peers, PyList_CheckExact(peers),
                   "peers must be a list or None");
}

/* set_offloaded(big): the device reads with TSO (TUNSETOFFLOAD granted): a read may be a
 * 64 KB TCP super-packet or leave a checksum partial, so device() reads into `big`, the TUN
 * reader's own read area (TunDevice.read_area, room for a whole super-packet), hands a
 * super-packet over where it lies there (TAKE_SUPER) and copies a plain packet to the
 * block's headroom, its checksum completed. Once, before the first device(). */
static PyObject *
Lane_set_offloaded(Lane *self, PyObject *big)
{
    if (self->has_big || self->vnet != 10) {
        PyErr_SetString(PyExc_ValueError,
                        "set once, and only on a lane over a TUN with virtio-net headers");
        return NULL;
    }
    if (PyObject_GetBuffer(big, &self->big, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (self->big.len < 10 + 65535) {
        PyBuffer_Release(&self->big);
        PyErr_SetString(PyExc_ValueError, "the read area holds no whole super-packet");
        return NULL;
    }
    self->has_big = 1;
    Py_RETURN_NONE;
}

/* Seal the held device packet (`self->size` bytes at the headroom) on `sealer` with `key`'s
 * next packet-id and send it to `to`: SENT, SEND_FAILED, or TAKE_LONE with nothing changed
 * (a TCP SYN under mssfix, the packet-id at its limit). */
static PyObject *
seal_send(Lane *self, PyObject *key, Aead *sealer, unsigned long word, int v2, int mssfix,
          const struct sockaddr_storage *to, socklen_t to_len)
{
    Py_ssize_t size = self->size;
    unsigned char *packet = (unsigned char *)self->block.buf + self->headroom;
    if ((mssfix && may_need_clamp(packet, size)) || size > INT_MAX - 64) {
        return code(TAKE_LONE, size);
    }
    PyObject *last = PyObject_GetAttr(key, SEND_PID);
    if (last == NULL) {
        return NULL;
    }
    unsigned long pid = PyLong_AsUnsignedLong(last);
    Py_DECREF(last);
    if (pid == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (pid >= PID_MAX) {
        return code(TAKE_LONE, size); /* the Python path raises PacketIdExhausted */
    }
    pid += 1;
    Py_ssize_t ct_at = v2 ? V2_CT_AT : V1_CT_AT;
    unsigned char *datagram = packet - ct_at;
    const unsigned char *aad;
    int aad_len;
    if (v2) {
        put_be32(datagram, word);
        put_be32(datagram + 4, pid);
        aad = datagram;
        aad_len = 8;
    }
    else {
        datagram[0] = (unsigned char)word;
        put_be32(datagram + 1, pid);
        aad = datagram + 1;
        aad_len = 4;
    }
    self->held = 0; /* from here on the packet is the datagram */
    if (!aead_run(sealer, pid, aad, aad_len, packet, (int)size, packet - TAG_BYTES)) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto failed to seal");
        return NULL;
    }
    /* The packet-id is used: recorded before the send, as the Python path does. */
    PyObject *used = PyLong_FromUnsignedLong(pid);
    if (used == NULL || PyObject_SetAttr(key, SEND_PID, used) < 0) {
        Py_XDECREF(used);
        return NULL;
    }
    Py_DECREF(used);
    ssize_t sent;
    do {
        sent = sendto(self->sock_fd, datagram, (size_t)(size + ct_at), 0,
                      (const struct sockaddr *)to, to_len);
    } while (sent < 0 && errno == EINTR);
    return code(sent < 0 ? SEND_FAILED : SENT, size);
}

/* Whether `attr` of `obj` is `expected` (the very object): 1, 0, or -1 with an exception. */
static int
attr_is(PyObject *obj, PyObject *attr, PyObject *expected)
{
    PyObject *value = PyObject_GetAttr(obj, attr);
    if (value == NULL) {
        return -1;
    }
    int same = value == expected;
    Py_DECREF(value);
    return same;
}

/* Whether a plan's inputs are still the live ones: `entry`'s session is the plan's item 0,
 * its ring's current key item 1, and each of `names` on the session the object at items
 * 2 onwards; with `key_id` >= 0 the key is also the session's `data_keys[key_id]`.
 * 1, 0 or -1 with an exception. */
static int
plan_holds(PyObject *entry, PyObject *plan, PyObject *const *names, int count,
           Py_ssize_t key_id)
{
    PyObject *session = PyObject_GetAttr(entry, SESSION);
    if (session == NULL) {
        return -1;
    }
    PyObject *key = PyTuple_GET_ITEM(plan, 1);
    int holds = session == PyTuple_GET_ITEM(plan, 0);
    if (holds) {
        PyObject *ring = PyObject_GetAttr(session, RING);
        holds = ring == NULL ? -1 : attr_is(ring, CURRENT, key);
        Py_XDECREF(ring);
    }
    if (holds == 1 && key_id >= 0) {
        PyObject *keys = PyObject_GetAttr(session, DATA_KEYS);
        holds = keys == NULL ? -1
            : PyList_CheckExact(keys) && key_id < PyList_GET_SIZE(keys)
                && PyList_GET_ITEM(keys, key_id) == key;
        Py_XDECREF(keys);
    }
    for (int i = 0; holds == 1 && i < count; i++) {
        holds = attr_is(session, names[i], PyTuple_GET_ITEM(plan, 2 + i));
    }
    Py_DECREF(session);
    return holds;
}

static PyObject *Lane_open_write(Lane *self, PyObject *const *args, Py_ssize_t nargs);

/* The held lone datagram's client found by its peer-id and the datagram opened with that
 * client's open plan (open_write() with the plan's arguments): its code (`entry` set), or
 * LINK_TAKE, still held, for the Python path. */
static PyObject *
route_open(Lane *self, PyObject *now)
{
    Py_ssize_t size = self->size;
    const unsigned char *d = (const unsigned char *)self->block.buf + self->headroom;
    if (d[0] >> 3 != P_DATA_V2 || size < V2_CT_AT) {
        return code(LINK_TAKE, size);
    }
    Py_ssize_t peer_id = ((Py_ssize_t)d[1] << 16) | ((Py_ssize_t)d[2] << 8) | d[3];
    if (peer_id >= PyList_GET_SIZE(self->peers)) {
        return code(LINK_TAKE, size);
    }
    PyObject *entry = PyList_GET_ITEM(self->peers, peer_id); /* borrowed */
    if (entry == Py_None) {
        return code(LINK_TAKE, size);
    }
    Py_INCREF(entry); /* the list may change under the calls below */
    PyObject *plan = PyObject_GetAttr(entry, LANE_OPEN_PLAN);
    PyObject *result = NULL;
    if (plan == NULL) {
        goto done;
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != OPEN_PLAN_LEN
        || PyLong_AsLong(PyTuple_GET_ITEM(plan, OPEN_PLAN_INPUTS)) != (d[0] & 7)) {
        result = PyErr_Occurred() ? NULL : code(LINK_TAKE, size); /* no plan, another key */
        goto done;
    }
    /* the inputs: the entry's IPv4 address (item 5), then the session's (items 0-4) */
    PyObject *const names[] = {REMOTE_ADDR, COMP, MSSFIX};
    int holds = attr_is(entry, VIP_INT, PyTuple_GET_ITEM(plan, 5));
    if (holds == 1) {
        holds = plan_holds(entry, plan, names, 3, d[0] & 7);
    }
    if (holds <= 0) {
        result = holds < 0 ? NULL : code(LINK_TAKE, size);
        goto done;
    }
    PyObject *args[9];
    for (int i = 0; i < 8; i++) {
        args[i] = PyTuple_GET_ITEM(plan, OPEN_PLAN_INPUTS + i);
    }
    args[8] = now; /* link()'s own argument: no float made per datagram */
    result = Lane_open_write(self, args, 9);
    if (result != NULL && (PyLong_AsLong(result) & 15) != LINK_TAKE) {
        Py_XSETREF(self->entry, Py_NewRef(entry));
    }
done:
    Py_XDECREF(plan);
    Py_DECREF(entry);
    return result;
}

/* The held lone packet routed by its IPv4 destination and sealed with that client's plan:
 * SENT / SEND_FAILED (`entry` set), or TAKE_LONE, still held, for the Python path. */
static PyObject *
route_seal(Lane *self)
{
    Py_ssize_t size = self->size;
    const unsigned char *p = (const unsigned char *)self->block.buf + self->headroom;
    if (size < 20 || p[0] >> 4 != 4) {
        return code(TAKE_LONE, size);
    }
    unsigned long to_ip = ((unsigned long)p[16] << 24) | ((unsigned long)p[17] << 16)
        | ((unsigned long)p[18] << 8) | p[19];
    PyObject *key = PyLong_FromUnsignedLong(to_ip);
    if (key == NULL) {
        return NULL;
    }
    PyObject *entry = PyDict_GetItemWithError(self->routes, key); /* borrowed */
    Py_DECREF(key);
    if (entry == NULL) {
        return PyErr_Occurred() ? NULL : code(TAKE_LONE, size); /* iroutes: the Python way */
    }
    Py_INCREF(entry); /* the dict may change under the calls below */
    PyObject *plan = PyObject_GetAttr(entry, LANE_PLAN);
    PyObject *result = NULL;
    if (plan == NULL) {
        goto done;
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != PLAN_LEN) {
        result = code(TAKE_LONE, size); /* no plan yet (None) */
        goto done;
    }
    PyObject *const names[] = {REMOTE_ADDR, TX_PEER_ID, COMP, MSSFIX};
    int holds = plan_holds(entry, plan, names, 4, -1);
    if (holds <= 0) {
        result = holds < 0 ? NULL : code(TAKE_LONE, size);
        goto done;
    }
    Aead *sealer;
    unsigned long word;
    int v2, mssfix;
    PyObject *const *args = &PyTuple_GET_ITEM(plan, PLAN_INPUTS);
    if (!parse_sealing(args, &sealer, &word, &v2, &mssfix)) {
        goto done;
    }
    struct sockaddr_storage to;
    socklen_t to_len;
    int parsed = parse_address(self, args[4], args[5], &to, &to_len);
    if (parsed <= 0) {
        result = parsed < 0 ? NULL : code(TAKE_LONE, size);
        goto done;
    }
    result = seal_send(self, PyTuple_GET_ITEM(plan, 1), sealer, word, v2, mssfix, &to, to_len);
    if (result != NULL) {
        long kind = PyLong_AsLong(result) & 15;
        if (kind == SENT || kind == SEND_FAILED) {
            Py_XSETREF(self->entry, Py_NewRef(entry));
        }
    }
done:
    Py_XDECREF(plan);
    Py_DECREF(entry);
    return result;
}

/* What device() does with a packet it read to the headroom: hand it over when more wait,
 * else seal it (routed, or to the one peer) or hold it for the second step. */
static PyObject *
device_read(Lane *self, Py_ssize_t size)
{
    self->size = size;
    if (!nothing_behind(self->tun_fd)) {
        return code(TAKE_MORE, size);
    }
    self->held = 1; /* a lone packet, in place: seal_send() may take it */
    if (self->routes != NULL) {
        return route_seal(self);
    }
    if (self->sealer == NULL || !self->has_peer) {
        return code(TAKE_LONE, size);
    }
    return seal_send(self, self->send_key, self->sealer, self->word, self->v2, self->mssfix,
                     &self->peer, self->peer_len);
}

/* device() over a TSO device (set_offloaded): as TunDevice._read_ahead's first frame, a
 * frame too short for an IP header is dropped, a super-packet is the TSO path's (where it
 * lies), a plain one is copied to the headroom with its partial checksum completed (or
 * dropped when the offsets do not fit it, as the Python reader drops it). */
static PyObject *
device_offloaded(Lane *self)
{
    unsigned char *big = self->big.buf;
    ssize_t n;
    do {
        n = read(self->tun_fd, big, (size_t)self->big.len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return code(errno == EAGAIN || errno == EWOULDBLOCK ? EMPTY : READ_ERROR, 0);
    }
    Py_ssize_t size = n - 10;
    if (size < 20) {
        return code(READ_DROPPED, 0);
    }
    if (big[1] != 0) { /* gso_type: not GSO_NONE */
        self->size = size;
        return code(TAKE_SUPER, size);
    }
    if (size > self->block.len - self->headroom) {
        return code(READ_DROPPED, 0);
    }
    unsigned char *packet = (unsigned char *)self->block.buf + self->headroom;
    memcpy(packet, big + 10, (size_t)size);
    if (big[0] & 1) { /* VIRTIO_NET_HDR_F_NEEDS_CSUM: csum_start, csum_offset at 6, 8 */
        uint16_t csum_start, csum_offset;
        memcpy(&csum_start, big + 6, 2);
        memcpy(&csum_offset, big + 8, 2);
        if (!csum_complete(packet, size, csum_start, csum_offset)) {
            return code(READ_DROPPED, 0);
        }
    }
    return device_read(self, size);
}

/* device() -> code: see the top of the file. */
static PyObject *
Lane_device(Lane *self, PyObject *Py_UNUSED(ignored))
{
    if (self->has_big) {
        self->held = 0;
        Py_CLEAR(self->entry);
        return device_offloaded(self);
    }
    unsigned char *base = self->block.buf;
    Py_ssize_t at = self->headroom - self->vnet;
    Py_ssize_t room = self->block.len - at;
    self->held = 0;
    Py_CLEAR(self->entry);
    ssize_t n;
    do {
        n = read(self->tun_fd, base + at, (size_t)room);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return code(errno == EAGAIN || errno == EWOULDBLOCK ? EMPTY : READ_ERROR, 0);
    }
    Py_ssize_t size = n - self->vnet;
    unsigned char *packet = base + self->headroom;
    /* As TunDevice._read_plain: a plain packet only (no segmentation, checksum complete),
     * and not cut (as large as the room and shorter than its IP header says). */
    if (size <= 0 || (self->vnet && (base[at + 1] != 0 || (base[at] & 1)))
        || (n >= room && (size < 20 || ip_length(packet, size) > size))) {
        return code(READ_DROPPED, 0);
    }
    return device_read(self, size);
}

/* seal_send(key, sealer, word, v2, mssfix, host, port) -> code: the packet the last
 * device() held (TAKE_LONE), sealed and sent to (host, port); the server's second step,
 * after its routing found the client. TAKE_LONE again, unchanged, when it cannot. */
static PyObject *
Lane_seal_send(Lane *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "takes (key, sealer: Aead, word, v2, mssfix, host, port)");
        return NULL;
    }
    if (!self->held) {
        PyErr_SetString(PyExc_ValueError, "no device packet is held");
        return NULL;
    }
    Aead *sealer;
    unsigned long word;
    int v2, mssfix;
    if (!parse_sealing(args + 1, &sealer, &word, &v2, &mssfix)) {
        return NULL;
    }
    struct sockaddr_storage to;
    socklen_t to_len;
    int parsed = parse_address(self, args[5], args[6], &to, &to_len);
    if (parsed < 0) {
        return NULL;
    }
    if (!parsed) {
        return code(TAKE_LONE, self->size);
    }
    return seal_send(self, args[0], sealer, word, v2, mssfix, &to, to_len);
}

/* Open the held datagram (`self->size` bytes at the headroom, P_DATA of the key whose
 * first bytes are v2op / v1op) on `opener`, the replay window after authentication, and
 * write the payload to the TUN when it is an ordinary IP packet (`vip` >= 0: its IPv4
 * source must be that; `deliver` 0: every payload is the Python path's). */
static PyObject *
open_write(Lane *self, Aead *opener, PyObject *accept, unsigned char v2op, int v1op,
           int mssfix, long long vip, int deliver, double now)
{
    unsigned char *datagram = (unsigned char *)self->block.buf + self->headroom;
    Py_ssize_t size = self->size;
    Py_ssize_t ct_at, aad_from;
    int v1;
    if (datagram[0] == v2op && size >= V2_CT_AT) {
        ct_at = V2_CT_AT;
        aad_from = 0;
        v1 = 0;
    }
    else if (v1op >= 0 && datagram[0] == v1op && size >= V1_CT_AT) {
        ct_at = V1_CT_AT;
        aad_from = 1;
        v1 = V1_BIT;
    }
    else {
        return code(LINK_TAKE, size);
    }
    self->held = 0; /* from here on it is decrypted in place */
    Py_ssize_t tag_at = ct_at - TAG_BYTES;
    const unsigned char *p = datagram + tag_at - 4;
    unsigned long pid = ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16)
        | ((unsigned long)p[2] << 8) | p[3];
    Py_ssize_t plain = size - ct_at;
    unsigned char *payload = datagram + ct_at;
    if (!aead_run(opener, pid, datagram + aad_from, (int)(tag_at - aad_from), payload,
                  (int)plain, datagram + tag_at)) {
        return code(AUTH_FAILED | v1, size);
    }
    /* The replay window only after the tag verified (the key's own window). */
    PyObject *call[2] = {PyLong_FromUnsignedLong(pid), PyFloat_FromDouble(now)};
    if (call[0] == NULL || call[1] == NULL) {
        Py_XDECREF(call[0]);
        Py_XDECREF(call[1]);
        return NULL;
    }
    PyObject *verdict = PyObject_Vectorcall(accept, call, 2, NULL);
    Py_DECREF(call[0]);
    Py_DECREF(call[1]);
    if (verdict == NULL) {
        return NULL;
    }
    int accepted = PyObject_IsTrue(verdict);
    Py_DECREF(verdict);
    if (accepted < 0) {
        return NULL;
    }
    if (!accepted) {
        return code(REPLAYED | v1, size);
    }
    /* A keepalive (16 bytes), OCC (its first byte is never an IP version), a TCP SYN under
     * mssfix, an inner source to check beyond one IPv4 address: the session's own handling. */
    if (!deliver || plain < 20 || payload[0] == OCC_FIRST
        || (mssfix && may_need_clamp(payload, plain))) {
        return code(OPENED_TAKE | v1, size);
    }
    if (vip >= 0) {
        unsigned long source = ((unsigned long)payload[12] << 24)
            | ((unsigned long)payload[13] << 16) | ((unsigned long)payload[14] << 8)
            | payload[15];
        if (payload[0] >> 4 != 4 || source != (unsigned long)vip) {
            return code(OPENED_TAKE | v1, size);
        }
    }
    unsigned char *frame = payload - self->vnet;
    memset(frame, 0, (size_t)self->vnet); /* a zero virtio-net header: complete, plain */
    ssize_t written;
    do {
        written = write(self->tun_fd, frame, (size_t)(plain + self->vnet));
    } while (written < 0 && errno == EINTR);
    if (written < 0) {
        if (!write_errno_drops(errno)) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return code(TUN_DROPPED | v1, size);
    }
    return code(DELIVERED | v1, size);
}

/* link(now) -> code: see the top of the file. */
static PyObject *
Lane_link(Lane *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    self->held = 0;
    Py_CLEAR(self->entry);
    unsigned char *datagram = (unsigned char *)self->block.buf + self->headroom;
    Py_ssize_t tail = self->block.len - self->headroom;
    struct iovec iov[2] = {
        {.iov_base = datagram, .iov_len = (size_t)tail},
        {.iov_base = self->run.buf, .iov_len = (size_t)self->run.len},
    };
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {
        .msg_name = &self->from,
        .msg_namelen = sizeof self->from,
        .msg_iov = iov,
        .msg_iovlen = 2,
        .msg_control = control.buf,
        .msg_controllen = sizeof control.buf,
    };
    ssize_t n;
    do {
        n = recvmsg(self->sock_fd, &msg, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return code(errno == EAGAIN || errno == EWOULDBLOCK ? EMPTY : LINK_ERROR, 0);
    }
    self->from_len = msg.msg_namelen;
    if (n == 0 || (msg.msg_flags & MSG_TRUNC)) {
        return code(MALFORMED, 0);
    }
    Py_ssize_t size = n, segment = n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO
            && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int value;
            memcpy(&value, CMSG_DATA(c), sizeof value);
            if (value > 0) {
                segment = value;
            }
            break;
        }
    }
    self->size = size;
    self->segment = segment;
    self->lone = 0;
    if (segment < size) {
        return code(LINK_TAKE, size); /* a GRO run: the batch path */
    }
    self->lone = nothing_behind(self->sock_fd);
    if (!self->lone || size > tail) {
        return code(LINK_TAKE, size);
    }
    self->held = 1; /* one datagram, alone, in place: open_write() may take it */
    if (self->peers != NULL) {
        return route_open(self, arg);
    }
    if (!self->has_peer || self->opener == NULL || !same_address(&self->from, &self->peer)) {
        return code(LINK_TAKE, size);
    }
    return open_write(self, self->opener, self->accept, self->v2op, (int)self->v1op,
                      self->mssfix, -1, 1, now);
}

/* open_write(key_id, opener, accept, host, port, vip, mssfix, deliver, now) -> code: the
 * datagram the last link() held (LINK_TAKE), when it is P_DATA_V2 of `key_id` from (host,
 * port); the server's second step, after the peer-id found the client. `vip`: the IPv4
 * address its inner source must be (-1: every payload to the Python path). LINK_TAKE, with
 * the datagram untouched, when it is not that. */
static PyObject *
Lane_open_write(Lane *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "takes (key_id, opener: Aead, accept, host, port, "
                                         "vip, mssfix, deliver, now)");
        return NULL;
    }
    if (!self->held) {
        PyErr_SetString(PyExc_ValueError, "no datagram is held");
        return NULL;
    }
    long key_id;
    Aead *opener;
    if (!parse_opening(args, &key_id, &opener)) {
        return NULL;
    }
    long long vip = PyLong_AsLongLong(args[5]);
    if (vip == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int mssfix = PyObject_IsTrue(args[6]), deliver = PyObject_IsTrue(args[7]);
    double now = PyFloat_AsDouble(args[8]);
    if (mssfix < 0 || deliver < 0 || (now == -1.0 && PyErr_Occurred())) {
        return NULL;
    }
    if (vip > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "vip outside IPv4");
        return NULL;
    }
    struct sockaddr_storage expected;
    socklen_t expected_len;
    int parsed = parse_address(self, args[3], args[4], &expected, &expected_len);
    if (parsed < 0) {
        return NULL;
    }
    if (!parsed || !same_address(&self->from, &expected)) {
        return code(LINK_TAKE, self->size); /* from elsewhere: a float is the Python path's */
    }
    return open_write(self, opener, args[2], (unsigned char)((P_DATA_V2 << 3) | key_id), -1,
                      mssfix, vip, deliver, now);
}

/* The last read's source as the Python path names it: (host, port). */
static PyObject *
Lane_get_addr(Lane *self, void *Py_UNUSED(closure))
{
    char host[NI_MAXHOST];
    int family = self->from.ss_family;
    if (self->from_len == 0 || (family != AF_INET && family != AF_INET6)) {
        Py_RETURN_NONE;
    }
    /* getnameinfo, as CPython's own socket address does (a scoped IPv6 address included). */
    if (getnameinfo((struct sockaddr *)&self->from, self->from_len, host, sizeof host, NULL, 0,
                    NI_NUMERICHOST) != 0) {
        Py_RETURN_NONE;
    }
    unsigned short port = family == AF_INET ? ((struct sockaddr_in *)&self->from)->sin_port
                                            : ((struct sockaddr_in6 *)&self->from)->sin6_port;
    return Py_BuildValue("(si)", host, (int)ntohs(port));
}

static PyObject *
Lane_get_size(Lane *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->size);
}

static PyObject *
Lane_get_segment(Lane *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->segment);
}

static PyObject *
Lane_get_held(Lane *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->held);
}

static PyObject *
Lane_get_lone(Lane *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->lone);
}

static PyObject *
Lane_get_entry(Lane *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->entry != NULL ? self->entry : Py_None);
}

static PyGetSetDef Lane_getset[] = {
    {"entry", (getter)Lane_get_entry, NULL,
     "the entry the last device() sealed for (set_routes) or link() opened for (set_peers), "
     "or None", NULL},
    {"addr", (getter)Lane_get_addr, NULL, "the last read's source (host, port)", NULL},
    {"size", (getter)Lane_get_size, NULL, "the last read's size", NULL},
    {"segment", (getter)Lane_get_segment, NULL, "the last read's GRO segment size", NULL},
    {"held", (getter)Lane_get_held, NULL, "a lone packet is in place for a second step", NULL},
    {"lone", (getter)Lane_get_lone, NULL, "nothing was queued behind the last datagram", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Lane_methods[] = {
    {"set_peer", (PyCFunction)(void (*)(void))Lane_set_peer, METH_FASTCALL,
     "set_peer(host, port) or set_peer(None)"},
    {"set_send", (PyCFunction)(void (*)(void))Lane_set_send, METH_FASTCALL,
     "set_send(key, sealer, word, v2, mssfix) or set_send(None)"},
    {"set_open", (PyCFunction)(void (*)(void))Lane_set_open, METH_FASTCALL,
     "set_open(key_id, opener, accept) or set_open(None)"},
    {"set_routes", (PyCFunction)Lane_set_routes, METH_O,
     "set_routes(routes: dict[int, entry]) or set_routes(None)"},
    {"set_peers", (PyCFunction)Lane_set_peers, METH_O,
     "set_peers(peers: list[entry | None]) or set_peers(None)"},
    {"set_offloaded", (PyCFunction)Lane_set_offloaded, METH_O,
     "set_offloaded(big): the device reads with TSO; device() reads into `big`"},
    {"device", (PyCFunction)Lane_device, METH_NOARGS, "device() -> code | size << 5"},
    {"seal_send", (PyCFunction)(void (*)(void))Lane_seal_send, METH_FASTCALL,
     "seal_send(key, sealer, word, v2, mssfix, host, port) -> code: the held device packet"},
    {"open_write", (PyCFunction)(void (*)(void))Lane_open_write, METH_FASTCALL,
     "open_write(key_id, opener, accept, host, port, vip, mssfix, deliver, now) -> code: the "
     "held datagram"},
    {"link", (PyCFunction)Lane_link, METH_O, "link(now) -> code | v1 << 4 | size << 5"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tunnel._aead.Lane",
    .tp_doc = "Lane(tun_fd, sock_fd, vnet, block, headroom, run): a lone packet's hop.",
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Lane_init,
    .tp_dealloc = (destructor)Lane_dealloc,
    .tp_methods = Lane_methods,
    .tp_getset = Lane_getset,
};

int
lane_add_type(PyObject *module)
{
    SEND_PID = PyUnicode_InternFromString("_send_pid");
    LANE_PLAN = PyUnicode_InternFromString("lane_plan");
    SESSION = PyUnicode_InternFromString("session");
    RING = PyUnicode_InternFromString("ring");
    CURRENT = PyUnicode_InternFromString("current");
    REMOTE_ADDR = PyUnicode_InternFromString("remote_addr");
    TX_PEER_ID = PyUnicode_InternFromString("tx_peer_id");
    COMP = PyUnicode_InternFromString("comp");
    MSSFIX = PyUnicode_InternFromString("mssfix");
    LANE_OPEN_PLAN = PyUnicode_InternFromString("lane_open_plan");
    DATA_KEYS = PyUnicode_InternFromString("data_keys");
    VIP_INT = PyUnicode_InternFromString("vip_int");
    if (SEND_PID == NULL || LANE_PLAN == NULL || SESSION == NULL || RING == NULL
        || CURRENT == NULL || REMOTE_ADDR == NULL || TX_PEER_ID == NULL || COMP == NULL
        || MSSFIX == NULL || LANE_OPEN_PLAN == NULL || DATA_KEYS == NULL || VIP_INT == NULL
        || PyType_Ready(&LaneType) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "Lane", (PyObject *)&LaneType);
}
