/* gmf.runtime._uring: the io_uring ring of one event loop, on the kernel's ABI directly.
 *
 * What gmf/runtime/uring_ring.py needs and nothing more: set up a ring (io_uring_setup(2) and
 * its three mmaps), prepare the operations the uring runtime uses (one method per operation,
 * which also sets the SQE's user_data), submit and wait (io_uring_enter(2), the GIL released
 * while it may block), and reap: every ready CQE is dispatched to handlers[user_data](res,
 * flags) from here, so a completion costs one dict lookup and one call.
 *
 * Built by `pip install` (setup.py) and, for a checkout used without installing (the dev
 * container's PYTHONPATH), on first use by gmf/runtime/uring_binding.py. Plain C with the
 * kernel's UAPI header (<linux/io_uring.h>, from linux-libc-dev): no liburing, no CPU-specific
 * instructions, so it runs on every CPU the compiler targets by default.
 *
 * Memory ordering follows liburing: the kernel's SQ head and CQ tail are read with acquire,
 * our SQ tail and CQ head are published with release.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif
/* Defined by kernels newer than some distributions' headers. */
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif
#ifndef IORING_ACCEPT_MULTISHOT
#define IORING_ACCEPT_MULTISHOT (1U << 0)
#endif
#ifndef IORING_FEAT_EXT_ARG
#define IORING_FEAT_EXT_ARG (1U << 8)
#endif
#ifndef IORING_ENTER_EXT_ARG
#define IORING_ENTER_EXT_ARG (1U << 3)
#endif

#define LOAD_ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Same layout as the kernel's struct io_uring_getevents_arg (older headers lack it). */
struct gmf_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t pad;
    uint64_t ts;
};

typedef struct {
    PyObject_HEAD
    int fd;
    unsigned features;
    unsigned sq_entries;
    unsigned cq_entries;
    void *sq_ring;
    size_t sq_ring_sz;
    void *cq_ring; /* == sq_ring with IORING_FEAT_SINGLE_MMAP */
    size_t cq_ring_sz;
    struct io_uring_sqe *sqes;
    size_t sqes_sz;
    unsigned *sq_khead, *sq_ktail, *sq_kflags, *sq_array;
    unsigned sq_mask;
    unsigned *cq_khead, *cq_ktail;
    unsigned cq_mask;
    struct io_uring_cqe *cqes;
    unsigned sqe_head; /* prepared SQEs [sqe_head, sqe_tail) are not yet published */
    unsigned sqe_tail;
} RingObject;

static long sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, void *arg, size_t argsz)
{
    long ret = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
    return ret < 0 ? -errno : ret;
}

static PyObject *os_error(long neg_errno)
{
    errno = (int)-neg_errno;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static void unmap(RingObject *r)
{
    if (r->sqes != NULL && r->sqes != MAP_FAILED)
        munmap(r->sqes, r->sqes_sz);
    if (r->cq_ring != NULL && r->cq_ring != MAP_FAILED && r->cq_ring != r->sq_ring)
        munmap(r->cq_ring, r->cq_ring_sz);
    if (r->sq_ring != NULL && r->sq_ring != MAP_FAILED)
        munmap(r->sq_ring, r->sq_ring_sz);
    r->sqes = NULL;
    r->cq_ring = NULL;
    r->sq_ring = NULL;
}

static void ring_close(RingObject *r)
{
    unmap(r);
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
}

static int check_open(RingObject *r)
{
    if (r->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "the io_uring ring is closed");
        return -1;
    }
    return 0;
}

static int ring_init(RingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"entries", "flags", NULL};
    unsigned int entries = 4096, flags = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|II", kwlist, &entries, &flags))
        return -1;
    ring_close(self);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = flags;
    int fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->fd = fd;
    self->features = p.features;
    self->sq_entries = p.sq_entries;
    self->cq_entries = p.cq_entries;
    self->sq_ring_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    self->cq_ring_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (self->cq_ring_sz > self->sq_ring_sz)
            self->sq_ring_sz = self->cq_ring_sz;
        self->cq_ring_sz = self->sq_ring_sz;
    }
    self->sq_ring = mmap(NULL, self->sq_ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                         IORING_OFF_SQ_RING);
    if (self->sq_ring == MAP_FAILED)
        goto fail;
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        self->cq_ring = self->sq_ring;
    } else {
        self->cq_ring = mmap(NULL, self->cq_ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                             IORING_OFF_CQ_RING);
        if (self->cq_ring == MAP_FAILED)
            goto fail;
    }
    self->sqes_sz = p.sq_entries * sizeof(struct io_uring_sqe);
    self->sqes = mmap(NULL, self->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (self->sqes == MAP_FAILED)
        goto fail;
    char *sq = self->sq_ring, *cq = self->cq_ring;
    self->sq_khead = (unsigned *)(sq + p.sq_off.head);
    self->sq_ktail = (unsigned *)(sq + p.sq_off.tail);
    self->sq_kflags = (unsigned *)(sq + p.sq_off.flags);
    self->sq_array = (unsigned *)(sq + p.sq_off.array);
    self->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    self->cq_khead = (unsigned *)(cq + p.cq_off.head);
    self->cq_ktail = (unsigned *)(cq + p.cq_off.tail);
    self->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    self->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    /* SQE i always sits in slot i of the indirection array. */
    for (unsigned i = 0; i < p.sq_entries; i++)
        self->sq_array[i] = i;
    self->sqe_head = self->sqe_tail = *self->sq_ktail;
    return 0;
fail:
    PyErr_SetFromErrno(PyExc_OSError);
    ring_close(self);
    return -1;
}

static PyObject *ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    RingObject *self = (RingObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->fd = -1;
    return (PyObject *)self;
}

static void ring_dealloc(RingObject *self)
{
    ring_close(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Publish the prepared SQEs; return how many the kernel has not consumed yet. */
static unsigned flush_sq(RingObject *r)
{
    unsigned tail = r->sqe_tail;
    if (r->sqe_head != tail) {
        r->sqe_head = tail;
        STORE_RELEASE(r->sq_ktail, tail);
    }
    return tail - LOAD_ACQUIRE(r->sq_khead);
}

/* io_uring_submit(): enter only when there is something to submit or completions to flush. */
static long submit(RingObject *r)
{
    unsigned to_submit = flush_sq(r);
    unsigned flags = 0;
    if (__atomic_load_n(r->sq_kflags, __ATOMIC_RELAXED) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN))
        flags |= IORING_ENTER_GETEVENTS;
    if (to_submit == 0 && flags == 0)
        return 0;
    return sys_enter(r->fd, to_submit, 0, flags, NULL, 0);
}

static struct io_uring_sqe *get_sqe(RingObject *r)
{
    unsigned next = r->sqe_tail + 1;
    if (next - LOAD_ACQUIRE(r->sq_khead) > r->sq_entries) {
        /* The submission queue is full: hand what we have to the kernel. */
        long ret = submit(r);
        if (ret < 0) {
            os_error(ret);
            return NULL;
        }
        if (next - LOAD_ACQUIRE(r->sq_khead) > r->sq_entries) {
            PyErr_SetString(PyExc_RuntimeError, "io_uring submission queue is full");
            return NULL;
        }
    }
    struct io_uring_sqe *sqe = &r->sqes[r->sqe_tail & r->sq_mask];
    r->sqe_tail = next;
    memset(sqe, 0, sizeof *sqe);
    return sqe;
}

static int arg_int(PyObject *o, int *out)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = (int)v;
    return 0;
}

static int arg_u64(PyObject *o, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int nargs_ok(Py_ssize_t nargs, Py_ssize_t want, const char *name)
{
    if (nargs == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
    return -1;
}

/* prep_recv(fd, buffer, flags, user_data) / prep_send(fd, data, flags, user_data). The caller
 * keeps the buffer alive (and its size unchanged) until the operation's CQE arrives. */
static PyObject *prep_buffer_op(RingObject *self, PyObject *const *args, Py_ssize_t nargs, int op, const char *name)
{
    int fd, msg_flags;
    uint64_t user_data;
    Py_buffer view;
    if (nargs_ok(nargs, 4, name) < 0 || check_open(self) < 0 || arg_int(args[0], &fd) < 0 ||
        arg_int(args[2], &msg_flags) < 0 || arg_u64(args[3], &user_data) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &view, op == IORING_OP_RECV ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return NULL;
    void *buf = view.buf;
    Py_ssize_t len = view.len;
    PyBuffer_Release(&view);
    struct io_uring_sqe *sqe = get_sqe(self);
    if (sqe == NULL)
        return NULL;
    sqe->opcode = (uint8_t)op;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = (uint32_t)len;
    sqe->msg_flags = (uint32_t)msg_flags;
    sqe->user_data = user_data;
    Py_RETURN_NONE;
}

static PyObject *ring_prep_recv(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return prep_buffer_op(self, args, nargs, IORING_OP_RECV, "prep_recv");
}

static PyObject *ring_prep_send(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return prep_buffer_op(self, args, nargs, IORING_OP_SEND, "prep_send");
}

/* prep_accept(fd, flags, multishot, user_data): no peer address is asked for. */
static PyObject *ring_prep_accept(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, flags, multishot;
    uint64_t user_data;
    if (nargs_ok(nargs, 4, "prep_accept") < 0 || check_open(self) < 0 || arg_int(args[0], &fd) < 0 ||
        arg_int(args[1], &flags) < 0 || (multishot = PyObject_IsTrue(args[2])) < 0 ||
        arg_u64(args[3], &user_data) < 0)
        return NULL;
    struct io_uring_sqe *sqe = get_sqe(self);
    if (sqe == NULL)
        return NULL;
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = fd;
    sqe->accept_flags = (uint32_t)flags;
    if (multishot)
        sqe->ioprio |= IORING_ACCEPT_MULTISHOT;
    sqe->user_data = user_data;
    Py_RETURN_NONE;
}

/* An operation on an fd with one integer argument: prep_poll_add(fd, poll_mask, user_data),
 * prep_close(fd, 0, user_data), prep_shutdown(fd, how, user_data). POLL_ADD takes it as its
 * event mask (little-endian in the SQE), the others in len. */
static PyObject *prep_fd_op(RingObject *self, PyObject *const *args, Py_ssize_t nargs, int op, const char *name)
{
    int fd, value;
    uint64_t user_data;
    if (nargs_ok(nargs, 3, name) < 0 || check_open(self) < 0 || arg_int(args[0], &fd) < 0 ||
        arg_int(args[1], &value) < 0 || arg_u64(args[2], &user_data) < 0)
        return NULL;
    struct io_uring_sqe *sqe = get_sqe(self);
    if (sqe == NULL)
        return NULL;
    sqe->opcode = (uint8_t)op;
    sqe->fd = fd;
    if (op == IORING_OP_POLL_ADD) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        sqe->poll32_events = __builtin_bswap32((uint32_t)value);
#else
        sqe->poll32_events = (uint32_t)value;
#endif
    } else {
        sqe->len = (uint32_t)value;
    }
    sqe->user_data = user_data;
    Py_RETURN_NONE;
}

static PyObject *ring_prep_poll_add(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return prep_fd_op(self, args, nargs, IORING_OP_POLL_ADD, "prep_poll_add");
}

static PyObject *ring_prep_close(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return prep_fd_op(self, args, nargs, IORING_OP_CLOSE, "prep_close");
}

static PyObject *ring_prep_shutdown(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return prep_fd_op(self, args, nargs, IORING_OP_SHUTDOWN, "prep_shutdown");
}

/* An operation on another in-flight operation, named by its user_data; its own CQE is
 * ignored (user_data 0): prep_cancel(target) / prep_poll_remove(target). */
static PyObject *prep_target_op(RingObject *self, PyObject *target, int op)
{
    uint64_t user_data;
    if (check_open(self) < 0 || arg_u64(target, &user_data) < 0)
        return NULL;
    struct io_uring_sqe *sqe = get_sqe(self);
    if (sqe == NULL)
        return NULL;
    sqe->opcode = (uint8_t)op;
    sqe->fd = -1;
    sqe->addr = user_data;
    Py_RETURN_NONE;
}

static PyObject *ring_prep_cancel(RingObject *self, PyObject *target)
{
    return prep_target_op(self, target, IORING_OP_ASYNC_CANCEL);
}

static PyObject *ring_prep_poll_remove(RingObject *self, PyObject *target)
{
    return prep_target_op(self, target, IORING_OP_POLL_REMOVE);
}

/* submit() -> number of SQEs the kernel took; enters the kernel only if there is work. */
static PyObject *ring_submit(RingObject *self, PyObject *unused)
{
    if (check_open(self) < 0)
        return NULL;
    long ret = submit(self);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return os_error(ret);
    return PyLong_FromLong(ret < 0 ? 0 : ret);
}

/* wait(timeout) -> None: submit what is prepared and block, without the GIL, until a CQE is
 * ready or ``timeout`` seconds pass (None: no limit). A timeout or a signal just returns. */
static PyObject *ring_wait(RingObject *self, PyObject *timeout)
{
    if (check_open(self) < 0)
        return NULL;
    struct __kernel_timespec ts;
    struct gmf_getevents_arg arg;
    void *argp = NULL;
    size_t argsz = 0;
    unsigned flags = IORING_ENTER_GETEVENTS;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        if (t < 0)
            t = 0;
        if (!(self->features & IORING_FEAT_EXT_ARG)) {
            PyErr_SetString(PyExc_RuntimeError, "io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11 or newer needed)");
            return NULL;
        }
        ts.tv_sec = (long long)t;
        ts.tv_nsec = (long long)((t - (double)ts.tv_sec) * 1e9);
        memset(&arg, 0, sizeof arg);
        arg.ts = (uint64_t)(uintptr_t)&ts;
        argp = &arg;
        argsz = sizeof arg;
        flags |= IORING_ENTER_EXT_ARG;
    }
    unsigned to_submit = flush_sq(self);
    long ret;
    Py_BEGIN_ALLOW_THREADS
    ret = sys_enter(self->fd, to_submit, 1, flags, argp, argsz);
    Py_END_ALLOW_THREADS
    if (ret == -EINTR) {
        if (PyErr_CheckSignals() < 0)
            return NULL;
    } else if (ret < 0 && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY) {
        return os_error(ret);
    }
    Py_RETURN_NONE;
}

/* reap(handlers) -> number of CQEs seen: each ready CQE with a handler in ``handlers`` (a dict
 * keyed by user_data) is passed to it as handler(res, flags); res < 0 is -errno. Each CQE is
 * released before its handler runs, so a handler that raises loses nothing else: the CQEs
 * after it stay for the next reap. */
static PyObject *ring_reap(RingObject *self, PyObject *handlers)
{
    if (check_open(self) < 0)
        return NULL;
    if (!PyDict_Check(handlers)) {
        PyErr_SetString(PyExc_TypeError, "reap() needs a dict of handlers");
        return NULL;
    }
    unsigned head = *self->cq_khead;
    unsigned tail = LOAD_ACQUIRE(self->cq_ktail);
    long seen = 0;
    while (head != tail) {
        struct io_uring_cqe *cqe = &self->cqes[head & self->cq_mask];
        uint64_t user_data = cqe->user_data;
        int res = cqe->res;
        unsigned flags = cqe->flags;
        head++;
        seen++;
        STORE_RELEASE(self->cq_khead, head);
        if (user_data == 0)
            continue;
        PyObject *key = PyLong_FromUnsignedLongLong(user_data);
        if (key == NULL)
            return NULL;
        PyObject *handler = PyDict_GetItemWithError(handlers, key);
        Py_DECREF(key);
        if (handler == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        Py_INCREF(handler);
        PyObject *call_args[2];
        call_args[0] = PyLong_FromLong(res);
        call_args[1] = PyLong_FromUnsignedLong(flags);
        PyObject *result = NULL;
        if (call_args[0] != NULL && call_args[1] != NULL)
            result = PyObject_Vectorcall(handler, call_args, 2, NULL);
        Py_XDECREF(call_args[0]);
        Py_XDECREF(call_args[1]);
        Py_DECREF(handler);
        if (result == NULL)
            return NULL;
        Py_DECREF(result);
        if (self->fd < 0) /* a handler closed the ring */
            break;
    }
    if (self->fd >= 0 && (__atomic_load_n(self->sq_kflags, __ATOMIC_RELAXED) & IORING_SQ_CQ_OVERFLOW)) {
        /* Completions the CQ had no room for wait in the kernel: have them posted. */
        long ret = sys_enter(self->fd, 0, 0, IORING_ENTER_GETEVENTS, NULL, 0);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            return os_error(ret);
    }
    return PyLong_FromLong(seen);
}

static PyObject *ring_sq_ready(RingObject *self, PyObject *unused)
{
    if (check_open(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(self->sqe_tail - LOAD_ACQUIRE(self->sq_khead));
}

static PyObject *ring_cq_ready(RingObject *self, PyObject *unused)
{
    if (check_open(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(LOAD_ACQUIRE(self->cq_ktail) - *self->cq_khead);
}

/* unsupported(opcodes) -> the opcodes (ints) of ``opcodes`` this kernel's io_uring lacks. */
static PyObject *ring_unsupported(RingObject *self, PyObject *opcodes)
{
    if (check_open(self) < 0)
        return NULL;
    size_t size = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = PyMem_Calloc(1, size);
    if (probe == NULL)
        return PyErr_NoMemory();
    long ret = syscall(__NR_io_uring_register, self->fd, IORING_REGISTER_PROBE, probe, 256);
    if (ret < 0) {
        PyMem_Free(probe);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *missing = PyList_New(0);
    PyObject *iter = missing ? PyObject_GetIter(opcodes) : NULL;
    PyObject *item;
    while (iter != NULL && (item = PyIter_Next(iter)) != NULL) {
        long op = PyLong_AsLong(item);
        int ok = !(op == -1 && PyErr_Occurred()) && op >= 0 && op <= probe->last_op && op < 256 &&
                 (probe->ops[op].flags & IO_URING_OP_SUPPORTED);
        if (!PyErr_Occurred() && !ok && PyList_Append(missing, item) < 0) {
            Py_DECREF(item);
            break;
        }
        Py_DECREF(item);
        if (PyErr_Occurred())
            break;
    }
    Py_XDECREF(iter);
    PyMem_Free(probe);
    if (PyErr_Occurred()) {
        Py_XDECREF(missing);
        return NULL;
    }
    return missing;
}

static PyObject *ring_close_method(RingObject *self, PyObject *unused)
{
    ring_close(self);
    Py_RETURN_NONE;
}

static PyObject *ring_get_fd(RingObject *self, void *closure)
{
    return PyLong_FromLong(self->fd);
}

static PyObject *ring_get_features(RingObject *self, void *closure)
{
    return PyLong_FromUnsignedLong(self->features);
}

static PyObject *ring_get_entries(RingObject *self, void *closure)
{
    return Py_BuildValue("(II)", self->sq_entries, self->cq_entries);
}

static PyMethodDef ring_methods[] = {
    {"prep_recv", (PyCFunction)(void (*)(void))ring_prep_recv, METH_FASTCALL,
     "prep_recv(fd, buffer, flags, user_data): receive into buffer (kept alive by the caller)."},
    {"prep_send", (PyCFunction)(void (*)(void))ring_prep_send, METH_FASTCALL,
     "prep_send(fd, data, flags, user_data): send data (kept alive by the caller)."},
    {"prep_poll_add", (PyCFunction)(void (*)(void))ring_prep_poll_add, METH_FASTCALL,
     "prep_poll_add(fd, poll_mask, user_data): one-shot poll."},
    {"prep_accept", (PyCFunction)(void (*)(void))ring_prep_accept, METH_FASTCALL,
     "prep_accept(fd, flags, multishot, user_data)."},
    {"prep_close", (PyCFunction)(void (*)(void))ring_prep_close, METH_FASTCALL,
     "prep_close(fd, 0, user_data)."},
    {"prep_shutdown", (PyCFunction)(void (*)(void))ring_prep_shutdown, METH_FASTCALL,
     "prep_shutdown(fd, how, user_data)."},
    {"prep_cancel", (PyCFunction)ring_prep_cancel, METH_O,
     "prep_cancel(user_data): cancel that operation (it completes with -ECANCELED)."},
    {"prep_poll_remove", (PyCFunction)ring_prep_poll_remove, METH_O,
     "prep_poll_remove(user_data): remove that poll (it completes with -ECANCELED)."},
    {"submit", (PyCFunction)ring_submit, METH_NOARGS, "submit() -> SQEs submitted (enters only when needed)."},
    {"wait", (PyCFunction)ring_wait, METH_O,
     "wait(timeout): submit, then block without the GIL until a CQE is ready or timeout (None: none) passes."},
    {"reap", (PyCFunction)ring_reap, METH_O, "reap(handlers) -> CQEs seen: handlers[user_data](res, flags) for each."},
    {"sq_ready", (PyCFunction)ring_sq_ready, METH_NOARGS, "SQEs prepared and not yet taken by the kernel."},
    {"cq_ready", (PyCFunction)ring_cq_ready, METH_NOARGS, "CQEs ready to reap."},
    {"unsupported", (PyCFunction)ring_unsupported, METH_O,
     "unsupported(opcodes) -> the opcodes this kernel's io_uring lacks (IORING_REGISTER_PROBE)."},
    {"close", (PyCFunction)ring_close_method, METH_NOARGS, "Unmap the ring and close its fd."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ring_getset[] = {
    {"fd", (getter)ring_get_fd, NULL, "the ring's fd (-1 once closed)", NULL},
    {"features", (getter)ring_get_features, NULL, "IORING_FEAT_* bits the kernel reported", NULL},
    {"entries", (getter)ring_get_entries, NULL, "(SQ entries, CQ entries)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gmf.runtime._uring.Ring",
    .tp_basicsize = sizeof(RingObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ring(entries=4096, flags=0): an io_uring instance (io_uring_setup(2) and its mmaps).",
    .tp_new = ring_new,
    .tp_init = (initproc)ring_init,
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_methods = ring_methods,
    .tp_getset = ring_getset,
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "gmf.runtime._uring", "io_uring on the kernel ABI for GMF's uring runtime.", -1, NULL,
};

PyMODINIT_FUNC PyInit__uring(void)
{
    if (PyType_Ready(&RingType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RingType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0) {
        Py_DECREF(&RingType);
        Py_DECREF(m);
        return NULL;
    }
#define ADD(name, value) \
    if (PyModule_AddIntConstant(m, name, (long)(value)) < 0) { Py_DECREF(m); return NULL; }
    ADD("SETUP_COOP_TASKRUN", IORING_SETUP_COOP_TASKRUN);
    ADD("SETUP_TASKRUN_FLAG", IORING_SETUP_TASKRUN_FLAG);
    ADD("FEAT_EXT_ARG", IORING_FEAT_EXT_ARG);
    ADD("OP_POLL_ADD", IORING_OP_POLL_ADD);
    ADD("OP_POLL_REMOVE", IORING_OP_POLL_REMOVE);
    ADD("OP_ACCEPT", IORING_OP_ACCEPT);
    ADD("OP_ASYNC_CANCEL", IORING_OP_ASYNC_CANCEL);
    ADD("OP_CLOSE", IORING_OP_CLOSE);
    ADD("OP_SEND", IORING_OP_SEND);
    ADD("OP_RECV", IORING_OP_RECV);
    ADD("OP_SHUTDOWN", IORING_OP_SHUTDOWN);
#undef ADD
    return m;
}
