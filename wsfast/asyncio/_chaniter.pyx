# cython: language_level=3
"""The compiled ``async for`` iterator of :class:`wsfast.asyncio.Channel`.

``Channel.__aiter__`` returns a :class:`Values` when this extension is built (the
pure-Python twin is the async generator ``Channel._values``; both take a value in the
same place and call the channel back in the same cases).

``__anext__`` returns the iterator itself as the awaitable, and nothing is taken until
the awaiting task drives it: a value that is buffered is popped in that first step and
returned at once (on Python 3.10+ through ``am_send``: no coroutine, frame, Future or
StopIteration). Only when the buffer is empty does it delegate to the channel's
``_receive_wait`` coroutine, which parks a waiter and is cancelled, woken and retried
exactly as a ``receive()``: a task cancelled in it takes nothing.

One awaitable at a time per iterator, as for an async generator (``async for`` never has
two); each ``iter(channel)`` made by ``async for`` is its own.

This module is the channel's own code, compiled apart: it reads ``Channel._wake_at`` and
calls ``Channel._took`` and ``Channel._receive_wait``, exactly what ``Channel._values``
does, and nothing else of it (tests/test_async_speedpaths.py runs both twins on the same
cases). Handing it the threshold another way costs the channel's hot path: a deque
subclass carrying ``wake_at`` made ``await ch.receive()`` and ``try_receive()`` 11%
slower (159 -> 177 ns, benchmarks/test_async_channels_bench.py), so the fields stay.
"""

from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF

cdef extern from *:
    """
    #if PY_VERSION_HEX >= 0x030A0000
    #define WSFAST_HAVE_AM_SEND 1
    static int wsfast_iter_send(PyObject *it, PyObject *arg, PyObject **res) {
        return (int)PyIter_Send(it, arg, res);
    }
    static void wsfast_set_am_send(PyObject *t, void *f) {
        PyTypeObject *tp = (PyTypeObject *)t;
        if (tp->tp_as_async != NULL)
            tp->tp_as_async->am_send = (sendfunc)f;
    }
    #else
    #define WSFAST_HAVE_AM_SEND 0
    static int wsfast_iter_send(PyObject *it, PyObject *arg, PyObject **res) {
        *res = NULL;
        PyErr_SetString(PyExc_SystemError, "am_send needs Python 3.10");
        return -1;
    }
    static void wsfast_set_am_send(PyObject *t, void *f) { (void)t; (void)f; }
    #endif
    """
    int WSFAST_HAVE_AM_SEND
    int wsfast_iter_send(PyObject *it, PyObject *arg, PyObject **res)
    void wsfast_set_am_send(PyObject *t, void *f)


cdef class Values:
    """``async for v in channel``: the next value of the channel, until it is closed
    and drained."""

    cdef object ch       # the Channel
    cdef object buf      # its deque (never replaced)
    cdef object _pop     # buf.popleft
    cdef object inner    # the _receive_wait() coroutine while waiting, else None

    def __init__(self, ch, buf):
        self.ch = ch
        self.buf = buf
        self._pop = buf.popleft
        self.inner = None

    def __aiter__(self):
        return self

    def __anext__(self):
        return self

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    cdef object _take(self):
        # a value is buffered: take it (as Channel.receive does)
        value = self._pop()
        if len(self.buf) <= self.ch._wake_at:
            self.ch._took()
        return value

    def send(self, arg):
        if self.inner is None:
            if self.buf:
                raise StopIteration(self._take())
            self.inner = self.ch._receive_wait()
        try:
            return self.inner.send(arg)
        except StopIteration as stop:
            self.inner = None
            return self._finished(stop.value)
        except BaseException:
            self.inner = None
            raise

    def throw(self, typ, val=None, tb=None):
        inner = self.inner
        if inner is None:   # not waiting: the exception is raised here
            if val is None and tb is None:
                raise typ
            raise typ(val).with_traceback(tb) if isinstance(typ, type) else typ
        try:
            if val is None and tb is None:
                return inner.throw(typ)
            return inner.throw(typ, val, tb)
        except StopIteration as stop:
            self.inner = None
            return self._finished(stop.value)
        except BaseException:
            self.inner = None
            raise

    def close(self):
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.close()

    cdef _finished(self, result):
        value, ok = result
        if ok:
            raise StopIteration(value)
        raise StopAsyncIteration


cdef int _am_send(PyObject *o, PyObject *arg, PyObject **result) except -1:
    # Values.send in C, for the interpreter's SEND and PyIter_Send (Python 3.10+):
    # 0 (PYGEN_RETURN) with the value, 1 (PYGEN_NEXT) with what to yield, or -1 with an
    # exception set (StopAsyncIteration once the channel is closed and drained).
    cdef Values self = <Values>o
    cdef PyObject *res = NULL
    cdef int status
    result[0] = NULL
    if self.inner is None:
        if self.buf:
            value = self._take()
            Py_INCREF(value)
            result[0] = <PyObject *>value
            return 0
        self.inner = self.ch._receive_wait()
    status = wsfast_iter_send(<PyObject *>self.inner, arg, &res)
    if status == 1:
        result[0] = res
        return 1
    self.inner = None
    if status == -1:
        return -1
    pair = <object>res
    Py_XDECREF(res)
    value, ok = pair
    if not ok:
        raise StopAsyncIteration
    Py_INCREF(value)
    result[0] = <PyObject *>value
    return 0


AM_SEND = bool(WSFAST_HAVE_AM_SEND)
wsfast_set_am_send(<PyObject *>Values, <void *>_am_send)
