/* kdns.server._fastudp: one UDP socket's recvmmsg/sendmmsg loop with the compiled answer
 * in C, for the optional fast path of kdns/server/transport.py (_BatchedUDP).
 *
 * Why: a compiled answer costs a few microseconds of Python per datagram even when the
 * system calls are batched; the same work in C costs a fraction of one. What C does is
 * exactly what Handler._quick does for a name whose answer the cluster table already
 * holds (Table.lookup's reads of its nodes and lazy dicts, the very dicts Python serves
 * from), nothing more: every other datagram (a name not compiled or cached yet, a routed
 * or outside name, an answer to truncate, chase, FALLTHROUGH, anything unusual) is
 * handed back to Python's answer_udp unchanged, so the Python path stays the single
 * owner of everything non-trivial. When C answers, it counts the answer as _quick
 * counts it (stats.fast, fast_quick/fast_seconds, or duration_observe over the bound).
 *
 * A response-cache hit Handler._outside remembered (its `hits` memo: the query after its
 * ID -> (cache, served, key, reply after its ID, metrics key)) is served here too, under
 * the conditions _outside serves it: a plain UDP query from an IPv4 client, for a name
 * routed outside the cluster zones (chain.routed) to a plan whose cache is the memo's,
 * not an HINFO (the loop plugin's probes are Python's), and while cache.again(served,
 * key) -- a Python call -- says the entry and its TTL are what a hit would serve. It is
 * counted as _outside counts it: stats.outside[key] += 1 and the duration.
 *
 * An Answer carries what C needs in its `fixed` attribute (kdns.dns.wire.Answer): the
 * flag bytes for [RD][CD] (8), counts (8), counts with our OPT (8), rcode (1), and
 * whether it has answer records (1). Its body, rotations and chase are read per answer:
 * templates patch bodies in place and rotations/chase are set after construction.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>

#define BATCH 32     /* datagrams per recvmmsg/sendmmsg: transport.UDP_BATCH */
#define SLOT 4096    /* bytes per datagram buffer: transport.UDP_SLOT */
#define NAMELEN 28   /* sizeof(struct sockaddr_in6), the largest address */
#define FIXED 26     /* len(Answer.fixed) */
#define KEYS BATCH   /* distinct metric keys buffered per batch */
#define HINFO 13     /* wire.HINFO: the loop plugin's probe type */
#define ABI 3        /* transport.FAST_ABI: a stale build (older source) is not used */

enum { F_FIXED, F_BODY, F_ROTATIONS, F_CHASE };
static const char *const FIELDS[4] = {"fixed", "body", "rotations", "chase"};

typedef struct {
    long qtype, rcode, do_, ipv6, req, resp, count;
} Key;

/* A remembered cache hit served: its metrics key (stats.outside's) and its plan's zone. */
typedef struct {
    PyObject *key, *zone; /* new references */
    double elapsed;
} Hit;

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *fallthrough;  /* kdns.cluster.resolver.FALLTHROUGH */
    PyObject *foreign;      /* kdns.cluster.table.FOREIGN */
    PyTypeObject *answer_type; /* kdns.dns.wire.Answer */
    Py_ssize_t offsets[4];  /* its slots fixed, body, rotations, chase (0: not a slot) */
    int staged;             /* replies waiting in out[] for flush() */
    double bound;           /* kdns.dns.metrics.FAST_BOUND */
    struct mmsghdr in_msgs[BATCH];
    struct mmsghdr out_msgs[BATCH];
    struct iovec in_iov[BATCH];
    struct iovec out_iov[BATCH];
    unsigned char names[BATCH][NAMELEN];
    unsigned char in[BATCH][SLOT];
    unsigned char out[BATCH][SLOT];
} Batch;

static PyObject *s_fixed, *s_body, *s_rotations, *s_chase, *s_fast, *s_fast_quick,
    *s_fast_seconds, *s_duration_observe, *s_again, *s_cache, *s_zone, *s_outside,
    *s_fast_zone, *minus_one;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* what time.perf_counter reads on Linux */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Whether the client counts as IPv6 as answer_udp decides: an AF_INET6 address whose
 * text does not start with "::ffff:". 1 yes, 0 no, -1 unsure (let Python decide). */
static int ipv6_of(const unsigned char *sa, socklen_t len)
{
    if (len < sizeof(struct sockaddr_in6) || ((struct sockaddr *)sa)->sa_family != AF_INET6)
        return 0;
    const unsigned char *a = sa + 8; /* sin6_addr */
    int k = 0;
    while (k < 8 && a[2 * k] == 0 && a[2 * k + 1] == 0)
        k++;
    if (k == 0 || k == 8 || a[2 * k] != 0xff || a[2 * k + 1] != 0xff)
        return 1; /* its first non-zero group is not ffff: the text cannot be ::ffff:... */
    if (k == 5)
        return 0; /* v4-mapped: ::ffff:a.b.c.d */
    return -1;    /* ::ffff:x:... forms: inet_ntop's choice, not ours to guess */
}

/* An Answer's attribute, a new reference or NULL (an exception set only for a real error,
 * not for an unset slot). wire.Answer's slots are read at their offsets: four generic
 * attribute lookups per answer were a visible share of the C path. */
static PyObject *field(Batch *self, PyObject *ans, int which, PyObject *name)
{
    if (Py_TYPE(ans) == self->answer_type && self->offsets[which] > 0) {
        PyObject *value = *(PyObject **)((char *)ans + self->offsets[which]);
        Py_XINCREF(value);
        return value;
    }
    return PyObject_GetAttr(ans, name);
}

static void stage(Batch *self, int slot, Py_ssize_t size)
{
    int o = self->staged++;
    self->out_iov[o].iov_len = (size_t)size;
    self->out_msgs[o].msg_hdr.msg_name = self->names[slot];
    self->out_msgs[o].msg_hdr.msg_namelen = self->in_msgs[slot].msg_hdr.msg_namelen;
}

static void flush(Batch *self)
{
    int sent = 0;
    while (sent < self->staged) {
        int done = sendmmsg(self->fd, self->out_msgs + sent, self->staged - sent, 0);
        if (done <= 0) {
            if (done < 0 && errno == EINTR)
                continue;
            break; /* the socket's buffer is full: UDP replies may be lost, as any */
        }
        sent += done;
    }
    self->staged = 0;
}

/* Handler._outside's remembered hit for datagram i (its name routed to `plan`), staged
 * in out[] when _outside would serve it. 1: served (hit filled); 0: not; -1: an error. */
static int remembered(Batch *self, int i, Py_ssize_t n, PyObject *plan, PyObject *hits,
                      long qtype, int ipv6, double started, Hit *hit)
{
    if (plan == Py_None || hits == Py_None || ipv6 || qtype == HINFO)
        return 0; /* the chain's name; not plain (IPv6); a loop probe may be coming back */
    const unsigned char *pkt = self->in[i];
    PyObject *rest = PyBytes_FromStringAndSize((const char *)pkt + 2, n - 2);
    if (rest == NULL)
        return -1;
    PyObject *memo = PyDict_GetItemWithError(hits, rest); /* borrowed */
    Py_DECREF(rest);
    if (memo == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_CheckExact(memo) || PyTuple_GET_SIZE(memo) != 5)
        return 0;
    Py_INCREF(memo); /* again() runs Python: keep what it is asked about alive */
    int result = 0;
    PyObject *zone = NULL, *ok = NULL;
    PyObject *cache = PyObject_GetAttr(plan, s_cache);
    PyObject *reply = PyTuple_GET_ITEM(memo, 3);
    if (cache == NULL) {
        result = -1;
        goto done;
    }
    if (cache != PyTuple_GET_ITEM(memo, 0) || !PyBytes_CheckExact(reply) ||
        PyBytes_GET_SIZE(reply) + 2 > SLOT)
        goto done; /* another cache's entry (_outside: memo[0] is cache) */
    zone = PyObject_GetAttr(plan, s_zone);
    if (zone == NULL) {
        result = -1;
        goto done;
    }
    PyObject *args[4] = {NULL, cache, PyTuple_GET_ITEM(memo, 1), PyTuple_GET_ITEM(memo, 2)};
    ok = PyObject_VectorcallMethod(s_again, args + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    result = ok == NULL ? -1 : PyObject_IsTrue(ok);
    if (result <= 0)
        goto done; /* False: evicted, expired, replaced or its TTL ticked: _outside's work */
    /* again() counted the hit: from here on it is served. */
    unsigned char *out = self->out[self->staged];
    Py_ssize_t size = 2 + PyBytes_GET_SIZE(reply);
    out[0] = pkt[0];
    out[1] = pkt[1];
    memcpy(out + 2, PyBytes_AS_STRING(reply), (size_t)(size - 2));
    stage(self, i, size);
    hit->key = PyTuple_GET_ITEM(memo, 4);
    Py_INCREF(hit->key);
    hit->zone = zone;
    zone = NULL;
    hit->elapsed = now() - started;
done:
    Py_XDECREF(ok);
    Py_XDECREF(zone);
    Py_XDECREF(cache);
    Py_DECREF(memo);
    return result;
}

/* The compiled answer for datagram i staged in out[], as Handler._quick builds it, or a
 * hit Handler._outside remembered (remembered()). 1: answered (the key is filled for the
 * metrics); 2: a remembered hit served (hit filled); 0: declined (Python answers it). */
static int answer(Batch *self, int i, PyObject *nodes, PyObject *packed, PyObject *lazy,
                  PyObject *routed, PyObject *hits, int ipv6, int positive_only, long max_udp,
                  Key *key, double *elapsed, Hit *hit)
{
    const unsigned char *pkt = self->in[i];
    Py_ssize_t n = (Py_ssize_t)self->in_msgs[i].msg_len;
    if (n < 17 || (pkt[2] & 0xF8))
        return 0; /* a runt, a response or an opcode other than QUERY */
    double started = now();
    /* Walk the labels: a zero byte inside a label is not the end of the name. */
    Py_ssize_t end = 12;
    for (;;) {
        unsigned len = pkt[end];
        if (len == 0)
            break;
        if (len > 63)
            return 0; /* a pointer or a reserved label type */
        if (end + 1 + (Py_ssize_t)len >= n)
            return 0; /* the name runs past the datagram */
        if (memchr(pkt + end + 1, 0, len) != NULL)
            return 0; /* a zero byte inside a label: not the name's end, and in no table */
        end += 1 + len;
    }
    Py_ssize_t qend = end + 5;
    if (qend > n || pkt[end + 3] || pkt[end + 4] != 1)
        return 0; /* cut short, or a class other than IN */
    static const unsigned char none[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    static const unsigned char one[8] = {0, 1, 0, 0, 0, 0, 0, 1};
    int opt = 0, do_ = 0;
    long limit = 512;
    if (memcmp(pkt + 4, none, 8) == 0) {
        if (n != qend)
            return 0;
    } else if (memcmp(pkt + 4, one, 8) == 0 && n >= qend + 11 && pkt[qend] == 0 &&
               pkt[qend + 1] == 0 && pkt[qend + 2] == 41 && pkt[qend + 6] == 0 &&
               qend + 11 + ((pkt[qend + 9] << 8) | pkt[qend + 10]) == n) {
        opt = 1;
        do_ = (pkt[qend + 7] & 0x80) != 0;
        limit = (pkt[qend + 3] << 8) | pkt[qend + 4];
        if (limit < 512)
            limit = 512;
        else if (limit > max_udp)
            limit = max_udp;
    } else {
        return 0; /* other counts, another EDNS version, a bad OPT: the full path */
    }
    long qtype = (pkt[end + 1] << 8) | pkt[end + 2];
    Py_ssize_t namelen = end + 1 - 12;
    PyObject *name = PyBytes_FromStringAndSize(NULL, namelen);
    if (name == NULL)
        return -1;
    unsigned char *lower = (unsigned char *)PyBytes_AS_STRING(name);
    for (Py_ssize_t k = 0; k < namelen; k++) {
        unsigned char c = pkt[12 + k];
        lower[k] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
    }
    int result = 0;
    PyObject *node, *ans, *qt = NULL, *fixed = NULL, *body = NULL, *rot = NULL, *chase = NULL;
    /* _quick: a name seen before outside every cluster zone goes to _outside first. */
    PyObject *plan = PyDict_GetItemWithError(routed, name); /* borrowed */
    if (plan != NULL) {
        Py_INCREF(plan);
        result = remembered(self, i, n, plan, hits, qtype, ipv6, started, hit);
        Py_DECREF(plan);
        if (result > 0)
            result = 2;
        goto done;
    }
    if (PyErr_Occurred()) {
        result = -1;
        goto done;
    }
    if (nodes == Py_None || qtype == 255 || qtype == 252 || qtype == 251)
        goto done; /* no cluster table; table.SPECIAL: ANY, AXFR, IXFR go through Table.lookup */
    /* Table.lookup without its side effects: the unpacked nodes, else the lazy cache. */
    qt = PyLong_FromLong(qtype);
    if (qt == NULL) {
        result = -1;
        goto done;
    }
    node = PyDict_GetItemWithError(nodes, name); /* borrowed */
    if (node != NULL) {
        if (!PyDict_CheckExact(node))
            goto done;
        ans = PyDict_GetItemWithError(node, qt);
        if (ans == NULL && !PyErr_Occurred())
            ans = PyDict_GetItemWithError(node, minus_one); /* node[DEFAULT] */
    } else if (PyErr_Occurred()) {
        result = -1;
        goto done;
    } else {
        int compiled = PyDict_Contains(packed, name);
        if (compiled != 0) {
            result = compiled < 0 ? -1 : 0; /* compiled, not unpacked yet: Table.lookup's work */
            goto done;
        }
        node = PyDict_GetItemWithError(lazy, name);
        if (node == NULL || node == self->foreign || !PyDict_CheckExact(node)) {
            result = PyErr_Occurred() ? -1 : 0; /* never asked, or in no zone of ours */
            goto done;
        }
        ans = PyDict_GetItemWithError(node, qt);
        if (ans == NULL && !PyErr_Occurred())
            ans = PyDict_GetItemWithError(node, minus_one); /* cached.get(DEFAULT) */
    }
    if (ans == NULL) {
        result = PyErr_Occurred() ? -1 : 0; /* Table._compute's work */
        goto done;
    }
    if (ans == self->fallthrough)
        goto done; /* the next plugin */
    fixed = field(self, ans, F_FIXED, s_fixed);
    if (fixed == NULL || !PyBytes_CheckExact(fixed) || PyBytes_GET_SIZE(fixed) != FIXED) {
        result = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    const unsigned char *f = (const unsigned char *)PyBytes_AS_STRING(fixed);
    if (!f[25] && positive_only)
        goto done; /* autopath may complete it from the client's search path */
    chase = field(self, ans, F_CHASE, s_chase);
    if (chase == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    if (chase != Py_None)
        goto done; /* an ExternalName's target, maybe looked up upstream: Python decides */
    body = field(self, ans, F_BODY, s_body);
    rot = field(self, ans, F_ROTATIONS, s_rotations);
    if (body == NULL || rot == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    PyObject *use = body;
    if (PyTuple_CheckExact(rot) && PyTuple_GET_SIZE(rot) > 0)
        use = PyTuple_GET_ITEM(rot, pkt[1] % PyTuple_GET_SIZE(rot)); /* loadbalance */
    if (!PyBytes_CheckExact(use))
        goto done;
    Py_ssize_t blen = PyBytes_GET_SIZE(use);
    Py_ssize_t size = qend + blen + (opt ? 11 : 0);
    if (size > limit || size > SLOT)
        goto done; /* truncation: wire.truncate in Python */
    /* ID, flags for [RD][CD], counts, the question as sent, body, our OPT. */
    unsigned char *out = self->out[self->staged];
    int rd = pkt[2] & 1, cd = (pkt[3] >> 4) & 1;
    out[0] = pkt[0];
    out[1] = pkt[1];
    memcpy(out + 2, f + 2 * (2 * rd + cd), 2);
    memcpy(out + 4, f + (opt ? 16 : 8), 8);
    memcpy(out + 12, pkt + 12, (size_t)(qend - 12));
    memcpy(out + qend, PyBytes_AS_STRING(use), (size_t)blen);
    if (opt) {
        unsigned char *o = out + qend + blen; /* wire.opt_record(max_udp, do) */
        o[0] = 0;
        o[1] = 0;
        o[2] = 41;
        o[3] = (unsigned char)((max_udp >> 8) & 0xff);
        o[4] = (unsigned char)(max_udp & 0xff);
        o[5] = 0;
        o[6] = 0;
        o[7] = do_ ? 0x80 : 0;
        o[8] = 0;
        o[9] = 0;
        o[10] = 0;
    }
    stage(self, i, size);
    key->qtype = qtype < 256 ? qtype : 0;
    key->rcode = f[24];
    key->do_ = do_;
    key->req = n; /* sizes as they are: expand_fast buckets them and sums them */
    key->resp = size;
    *elapsed = now() - started;
    result = 1;
done:
    Py_DECREF(name);
    Py_XDECREF(qt);
    Py_XDECREF(fixed);
    Py_XDECREF(chase);
    Py_XDECREF(body);
    Py_XDECREF(rot);
    return result;
}

/* counts[key] = counts.get(key, 0) + add */
static int add_to(PyObject *counts, PyObject *key, long add)
{
    PyObject *old = PyDict_GetItemWithError(counts, key);
    long long total = add;
    if (old != NULL) {
        total += PyLong_AsLongLong(old);
        if (PyErr_Occurred())
            return -1;
    } else if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *value = PyLong_FromLongLong(total);
    int rc = value == NULL ? -1 : PyDict_SetItem(counts, key, value);
    Py_XDECREF(value);
    return rc;
}

/* stats.fast[key] += count, the key as _quick makes it. */
static int count(PyObject *fast, const Key *k)
{
    PyObject *key = Py_BuildValue("(llOOOll)", k->qtype, k->rcode, k->do_ ? Py_True : Py_False,
                                  Py_False, k->ipv6 ? Py_True : Py_False, k->req, k->resp);
    if (key == NULL)
        return -1;
    int rc = add_to(fast, key, k->count);
    Py_DECREF(key);
    return rc;
}

/* A remembered hit's duration, as _outside counts it: the first bucket (fast_quick and
 * fast_seconds) when under the bound and its zone is stats.fast_zone, else the zone's
 * histogram. `fast_zone` is read once per batch (NULL until then). */
static void time_hit(Batch *self, PyObject *stats, const Hit *hit, PyObject **fast_zone,
                     long *quick, double *seconds)
{
    if (hit->elapsed < self->bound) {
        if (*fast_zone == NULL) {
            *fast_zone = PyObject_GetAttr(stats, s_fast_zone);
            if (*fast_zone == NULL) {
                PyErr_Clear();
                Py_INCREF(Py_None);
                *fast_zone = Py_None;
            }
        }
        int same = PyObject_RichCompareBool(hit->zone, *fast_zone, Py_EQ);
        if (same < 0)
            PyErr_Clear();
        if (same > 0) {
            (*quick)++;
            *seconds += hit->elapsed;
            return;
        }
    }
    PyObject *secs = PyFloat_FromDouble(hit->elapsed);
    PyObject *r = secs == NULL ? NULL
                               : PyObject_CallMethodObjArgs(stats, s_duration_observe, hit->zone,
                                                            secs, NULL);
    if (r == NULL)
        PyErr_Clear(); /* a histogram's failure costs one observation */
    Py_XDECREF(r);
    Py_XDECREF(secs);
}

static int add_float(PyObject *obj, PyObject *attr, double add)
{
    PyObject *old = PyObject_GetAttr(obj, attr);
    if (old == NULL)
        return -1;
    double base = PyFloat_AsDouble(old);
    Py_DECREF(old);
    if (base == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *value = PyFloat_FromDouble(base + add);
    if (value == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, attr, value);
    Py_DECREF(value);
    return rc;
}

static int add_int(PyObject *obj, PyObject *attr, long add)
{
    PyObject *old = PyObject_GetAttr(obj, attr);
    if (old == NULL)
        return -1;
    long long base = PyLong_AsLongLong(old);
    Py_DECREF(old);
    if (base == -1 && PyErr_Occurred())
        return -1;
    PyObject *value = PyLong_FromLongLong(base + add);
    if (value == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, attr, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *Batch_receive(Batch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "receive(nodes, packed, lazy, routed, stats, zone, "
                                         "positive_only, max_udp, declined, hits)");
        return NULL;
    }
    PyObject *nodes = args[0], *packed = args[1], *lazy = args[2], *routed = args[3];
    PyObject *stats = args[4], *zone = args[5];
    int positive_only = PyObject_IsTrue(args[6]);
    long max_udp = PyLong_AsLong(args[7]);
    PyObject *declined = args[8], *hits = args[9];
    if (positive_only < 0 || (max_udp == -1 && PyErr_Occurred()))
        return NULL;
    if (!PyList_Check(declined)) {
        PyErr_SetString(PyExc_TypeError, "declined must be a list");
        return NULL;
    }
    if ((nodes != Py_None &&
         (!PyDict_Check(nodes) || !PyDict_Check(packed) || !PyDict_Check(lazy))) ||
        (routed != Py_None && !PyDict_Check(routed)) || (hits != Py_None && !PyDict_Check(hits)) ||
        (nodes != Py_None && routed == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "nodes, packed, lazy, routed and hits must be dicts "
                                         "(routed, with nodes) or None");
        return NULL;
    }
    if (self->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "closed");
        return NULL;
    }
    flush(self); /* nothing should be left, but never send a stale reply after new ones */
    if (PyList_GET_SIZE(declined) && PyList_SetSlice(declined, 0, PyList_GET_SIZE(declined), NULL) < 0)
        return NULL; /* slots of an earlier batch: they name other datagrams now */
    int n = recvmmsg(self->fd, self->in_msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return PyLong_FromLong(0); /* EAGAIN: drained; other errors (ICMP) concern no query */
    PyObject *fast = NULL, *fast_zone = NULL;
    Key keys[KEYS];
    int nkeys = 0;
    PyObject *served[BATCH]; /* remembered hits' stats.outside keys, by identity */
    long served_count[BATCH];
    int nserved = 0;
    long quick = 0;
    double seconds = 0.0;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        socklen_t namelen = self->in_msgs[i].msg_hdr.msg_namelen;
        int truncated = self->in_msgs[i].msg_hdr.msg_flags & MSG_TRUNC;
        if (truncated)
            continue; /* bigger than any query: not one */
        int got = 0;
        int ipv6 = ipv6_of(self->names[i], namelen);
        Key key = {0};
        Hit hit = {NULL, NULL, 0.0};
        double elapsed = 0.0;
        if (routed != Py_None && ipv6 >= 0 && !failed) {
            got = answer(self, i, nodes, packed, lazy, routed, hits, ipv6, positive_only,
                         max_udp, &key, &elapsed, &hit);
            if (got < 0) {
                PyErr_Clear(); /* a bug costs the fast path, never the answer */
                got = 0;
            }
        }
        if (got == 2) {
            int k = 0;
            while (k < nserved && served[k] != hit.key)
                k++;
            if (k == nserved) {
                served[nserved] = hit.key; /* the reference moves here */
                served_count[nserved++] = 1;
            } else {
                served_count[k]++;
                Py_DECREF(hit.key);
            }
            time_hit(self, stats, &hit, &fast_zone, &quick, &seconds);
            Py_DECREF(hit.zone);
            continue;
        }
        if (got) {
            key.ipv6 = ipv6;
            key.count = 1;
            int k = 0;
            while (k < nkeys && memcmp(&keys[k], &key, offsetof(Key, count)) != 0)
                k++;
            if (k == nkeys)
                keys[nkeys++] = key;
            else
                keys[k].count++;
            if (elapsed < self->bound) {
                quick++;
                seconds += elapsed;
            } else {
                PyObject *secs = PyFloat_FromDouble(elapsed);
                PyObject *r = secs == NULL ? NULL
                                           : PyObject_CallMethodObjArgs(
                                                 stats, s_duration_observe, zone, secs, NULL);
                if (r == NULL)
                    PyErr_Clear(); /* a histogram's failure costs one observation */
                Py_XDECREF(r);
                Py_XDECREF(secs);
            }
            continue;
        }
        PyObject *item = Py_BuildValue("(iy#y#)", i, (const char *)self->in[i],
                                       (Py_ssize_t)self->in_msgs[i].msg_len,
                                       (const char *)self->names[i], (Py_ssize_t)namelen);
        if (item == NULL || PyList_Append(declined, item) < 0) {
            Py_XDECREF(item);
            failed = 1;
            break;
        }
        Py_DECREF(item);
    }
    for (int i = 0; i < n; i++)
        self->in_msgs[i].msg_hdr.msg_namelen = NAMELEN; /* the next recvmmsg fills it again */
    Py_XDECREF(fast_zone);
    if (!failed && nkeys) {
        fast = PyObject_GetAttr(stats, s_fast);
        if (fast == NULL || !PyDict_Check(fast))
            failed = 1;
        for (int k = 0; k < nkeys && !failed; k++)
            failed = count(fast, &keys[k]) < 0;
        Py_XDECREF(fast);
    }
    if (!failed && nserved) {
        PyObject *outside = PyObject_GetAttr(stats, s_outside);
        if (outside == NULL || !PyDict_Check(outside))
            failed = 1;
        for (int k = 0; k < nserved && !failed; k++)
            failed = add_to(outside, served[k], served_count[k]) < 0;
        Py_XDECREF(outside);
    }
    for (int k = 0; k < nserved; k++)
        Py_DECREF(served[k]);
    if (!failed && quick)
        failed = add_int(stats, s_fast_quick, quick) < 0 ||
                 add_float(stats, s_fast_seconds, seconds) < 0;
    if (failed) {
        /* A bug or no memory: C's answers still leave; what it declined is lost (the
         * caller sees the exception, not the list). */
        flush(self);
        PyObject *err_type, *err_value, *err_tb;
        PyErr_Fetch(&err_type, &err_value, &err_tb);
        PyList_SetSlice(declined, 0, PyList_GET_SIZE(declined), NULL);
        PyErr_Restore(err_type, err_value, err_tb);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "stats.fast and stats.outside must be dicts");
        return NULL;
    }
    if (PyList_GET_SIZE(declined) == 0)
        flush(self);
    return PyLong_FromLong(n);
}

static PyObject *Batch_reply(Batch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyLong_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "reply(slot: int, response: bytes)");
        return NULL;
    }
    long slot = PyLong_AsLong(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[1]);
    if (slot < 0 || slot >= BATCH) {
        PyErr_SetString(PyExc_IndexError, "slot out of range");
        return NULL;
    }
    if (size > SLOT || self->staged >= BATCH)
        Py_RETURN_FALSE; /* the caller sends it on its own */
    memcpy(self->out[self->staged], PyBytes_AS_STRING(args[1]), (size_t)size);
    stage(self, (int)slot, size);
    Py_RETURN_TRUE;
}

static PyObject *Batch_flush(Batch *self, PyObject *unused)
{
    if (self->fd >= 0)
        flush(self);
    self->staged = 0;
    Py_RETURN_NONE;
}

static PyObject *Batch_close(Batch *self, PyObject *unused)
{
    self->fd = -1; /* the socket is Python's to close */
    self->staged = 0;
    Py_RETURN_NONE;
}

static int Batch_init(Batch *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "fallthrough", "foreign", "fast_bound", "answer_type", NULL};
    int fd;
    double bound;
    PyObject *fallthrough, *foreign, *answer_type;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOOdO!", kwlist, &fd, &fallthrough, &foreign,
                                     &bound, &PyType_Type, &answer_type))
        return -1;
    for (int k = 0; k < 4; k++) { /* a slot holding an object, or the generic lookup */
        PyObject *descr = PyObject_GetAttrString(answer_type, FIELDS[k]);
        if (descr == NULL)
            return -1;
        self->offsets[k] = 0;
        if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == T_OBJECT_EX && !(member->flags & READ_RESTRICTED))
                self->offsets[k] = member->offset;
        }
        Py_DECREF(descr);
    }
    Py_INCREF(answer_type);
    Py_XSETREF(self->answer_type, (PyTypeObject *)answer_type);
    Py_INCREF(foreign);
    Py_XSETREF(self->foreign, foreign);
    self->bound = bound;
    Py_INCREF(fallthrough);
    Py_XSETREF(self->fallthrough, fallthrough);
    self->fd = fd;
    self->staged = 0;
    for (int i = 0; i < BATCH; i++) {
        self->in_iov[i].iov_base = self->in[i];
        self->in_iov[i].iov_len = SLOT;
        self->out_iov[i].iov_base = self->out[i];
        self->out_iov[i].iov_len = 0;
        memset(&self->in_msgs[i], 0, sizeof(struct mmsghdr));
        memset(&self->out_msgs[i], 0, sizeof(struct mmsghdr));
        self->in_msgs[i].msg_hdr.msg_name = self->names[i];
        self->in_msgs[i].msg_hdr.msg_namelen = NAMELEN;
        self->in_msgs[i].msg_hdr.msg_iov = &self->in_iov[i];
        self->in_msgs[i].msg_hdr.msg_iovlen = 1;
        self->out_msgs[i].msg_hdr.msg_iov = &self->out_iov[i];
        self->out_msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

static void Batch_dealloc(Batch *self)
{
    Py_XDECREF(self->fallthrough);
    Py_XDECREF(self->foreign);
    Py_XDECREF(self->answer_type);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Batch_methods[] = {
    {"receive", (PyCFunction)(void (*)(void))Batch_receive, METH_FASTCALL,
     "Read up to 32 datagrams; answer the compiled ones and the remembered cache hits, "
     "append (slot, packet, address) of the others to `declined`. Returns how many were "
     "read (0: none waiting)."},
    {"reply", (PyCFunction)(void (*)(void))Batch_reply, METH_FASTCALL,
     "Stage Python's reply to datagram `slot`; False when it does not fit a slot."},
    {"flush", (PyCFunction)Batch_flush, METH_NOARGS, "Send the staged replies (sendmmsg)."},
    {"close", (PyCFunction)Batch_close, METH_NOARGS, "Forget the socket (not closed here)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "kdns.server._fastudp.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One UDP socket's recvmmsg/sendmmsg buffers and its compiled-answer loop.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Batch_init,
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_methods = Batch_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastudp",
    "The compiled-answer UDP loop in C (optional; transport.py falls back to ctypes).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastudp(void)
{
    if (PyType_Ready(&BatchType) < 0)
        return NULL;
#define INTERN(var, text)                                   \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;
    INTERN(s_fixed, "fixed");
    INTERN(s_body, "body");
    INTERN(s_rotations, "rotations");
    INTERN(s_chase, "chase");
    INTERN(s_fast, "fast");
    INTERN(s_fast_quick, "fast_quick");
    INTERN(s_fast_seconds, "fast_seconds");
    INTERN(s_duration_observe, "duration_observe");
    INTERN(s_again, "again");
    INTERN(s_cache, "cache");
    INTERN(s_zone, "zone");
    INTERN(s_outside, "outside");
    INTERN(s_fast_zone, "fast_zone");
    if ((minus_one = PyLong_FromLong(-1)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&BatchType);
    if (PyModule_AddObject(m, "Batch", (PyObject *)&BatchType) < 0 ||
        PyModule_AddIntConstant(m, "ABI", ABI) < 0 ||
        PyModule_AddIntConstant(m, "BATCH", BATCH) < 0 ||
        PyModule_AddIntConstant(m, "SLOT", SLOT) < 0 ||
        PyModule_AddObject(m, "SPECIAL", Py_BuildValue("(iii)", 251, 252, 255)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
