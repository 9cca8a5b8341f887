# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled frame codec: the hot path of wsfast.

Same classes, results and errors as ``_codec_py`` (its pure-Python twin); see that
module for the contract. Here frames are parsed straight out of the caller's buffer
with no Python object per frame header, one object per message, and payloads are
unmasked, validated and copied with the GIL released when they are large.
"""

import os
import zlib

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

from .errors import InvalidOption, ProtocolError
from ._codec_py import Close, Ping, Pong, is_valid_close_code

cimport cython

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    object PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)
    object PyMemoryView_FromMemory(char *mem, Py_ssize_t size, int flags)
    int PyBUF_WRITE
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    object PyUnicode_New(Py_ssize_t size, uint32_t maxchar)
    void *PyUnicode_DATA(object o)

# zlib's C API when setup.py found zlib.h, else stubs (Windows): see _zshim.h
cdef extern from "_zshim.h":
    ctypedef struct z_stream:
        unsigned char *next_in
        unsigned int avail_in
        unsigned char *next_out
        unsigned int avail_out
        const char *msg
    int WSFAST_CZLIB
    int Z_OK, Z_STREAM_END, Z_STREAM_ERROR, Z_DATA_ERROR, Z_MEM_ERROR, Z_BUF_ERROR, Z_SYNC_FLUSH
    int inflateInit2(z_stream *strm, int window_bits)
    int inflate(z_stream *strm, int flush) nogil
    int inflateReset(z_stream *strm)
    int inflateEnd(z_stream *strm)

__all__ = [
    "COMPILED", "Message", "Ping", "Pong", "Close", "FrameParser", "FrameEncoder",
    "apply_mask", "validate_utf8", "is_valid_close_code",
    "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "DEFAULT_READ_LIMIT",
]

COMPILED = True
# permessage-deflate inflates with zlib's C API (built with zlib.h), else with Python's zlib
CZLIB = WSFAST_CZLIB != 0

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_READ_LIMIT = 16 * 1024 * 1024

# WSFAST_PY_ZLIB=1 at import: inflate with Python's zlib even when zlib's C API is compiled in
cdef bint _c_inflate = CZLIB and os.environ.get("WSFAST_PY_ZLIB", "") in ("", "0")


def _use_c_zlib(on=None):
    """Internal (tests): whether parsers made from now on inflate with zlib's C API (only
    when compiled in) or with Python's zlib; returns the setting before the call."""
    global _c_inflate
    cdef bint prev = _c_inflate
    if on is not None:
        _c_inflate = on and CZLIB
    return prev

cdef Py_ssize_t NOGIL_THRESHOLD = 65536     # release the GIL for buffers at least this large
cdef Py_ssize_t KEEP_BUFFER = 262144        # shrink reassembly buffers back to this after a big message
cdef Py_ssize_t DIRECT_MIN = 65536          # payloads this large are read straight into their message
cdef Py_ssize_t DECODE_MAX = 65536          # fragmented text up to this size is decoded as it comes
cdef enum:
    ZIN_SMALL = 512                         # a last compressed fragment this small is copied, tail appended
cdef Py_ssize_t NOGIL_INFLATE = 4096       # inflate this much compressed input with the GIL released
cdef bytes DEFLATE_TAIL = b"\x00\x00\xff\xff"
cdef const uint8_t *DEFLATE_TAIL_C = <const uint8_t *>b"\x00\x00\xff\xff"
cdef str TYPE_TEXT = "text"
cdef str TYPE_BINARY = "binary"
cdef int MASK_POOL = 4096


# ---------------------------------------------------------------- masking, UTF-8

cdef inline void _mask_copy(uint8_t *dst, const uint8_t *src, Py_ssize_t n, const uint8_t *key) noexcept nogil:
    """dst = src XOR key (repeated): four independent 64-bit words per step (compilers vectorize it)."""
    cdef Py_ssize_t i = 0
    cdef uint32_t k32
    cdef uint64_t k64, a, b, c, d
    memcpy(&k32, key, 4)
    k64 = (<uint64_t>k32 << 32) | k32
    while i + 32 <= n:
        memcpy(&a, src + i, 8)
        memcpy(&b, src + i + 8, 8)
        memcpy(&c, src + i + 16, 8)
        memcpy(&d, src + i + 24, 8)
        a ^= k64
        b ^= k64
        c ^= k64
        d ^= k64
        memcpy(dst + i, &a, 8)
        memcpy(dst + i + 8, &b, 8)
        memcpy(dst + i + 16, &c, 8)
        memcpy(dst + i + 24, &d, 8)
        i += 32
    while i + 8 <= n:
        memcpy(&a, src + i, 8)
        a ^= k64
        memcpy(dst + i, &a, 8)
        i += 8
    while i < n:
        dst[i] = src[i] ^ key[i & 3]
        i += 1


cdef struct Utf8State:
    int need       # continuation bytes still expected
    uint8_t lo     # allowed range of the next continuation byte
    uint8_t hi
    uint32_t cp    # _utf8_decode: the code point of the open sequence so far
    uint32_t bits  # _utf8_decode: all code points ORed: which str kind the text needs


cdef inline void _utf8_reset(Utf8State *st) noexcept nogil:
    st.need = 0
    st.lo = 0x80
    st.hi = 0xBF
    st.cp = 0
    st.bits = 0


cdef uint64_t HIGH_BITS = 0x8080808080808080ULL


cdef inline int _utf8_step(Utf8State *st, uint8_t c) noexcept nogil:
    """One byte through the state machine (chunk edges only): 1 when it completes the
    code point ``st.cp``, 0 while a sequence is open, -1 when it cannot be UTF-8."""
    if st.need:
        if c < st.lo or c > st.hi:
            return -1
        st.cp = (st.cp << 6) | (c & 0x3F)
        st.need -= 1
        st.lo = 0x80
        st.hi = 0xBF
        return st.need == 0
    if c < 0x80:
        st.cp = c
        return 1
    if c < 0xC2:
        return -1
    if c < 0xE0:
        st.need = 1
        st.cp = c & 0x1F
    elif c < 0xF0:
        st.need = 2
        st.cp = c & 0x0F
        st.lo = 0xA0 if c == 0xE0 else 0x80
        st.hi = 0x9F if c == 0xED else 0xBF
    elif c < 0xF5:
        st.need = 3
        st.cp = c & 0x07
        st.lo = 0x90 if c == 0xF0 else 0x80
        st.hi = 0x8F if c == 0xF4 else 0xBF
    else:
        return -1
    return 0


cdef int _utf8_feed(Utf8State *st, const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """Advance the validator over n bytes; -1 as soon as the input cannot be UTF-8.

    Whole sequences are checked at once while four bytes remain (ASCII 32 bytes at a
    time); the byte-wise state machine only finishes a sequence cut by a chunk edge.
    """
    cdef Py_ssize_t i = 0
    cdef uint8_t c, c1
    cdef uint64_t a, b, w, x, y
    # 1. the rest of a sequence the previous chunk left open
    while st.need and i < n:
        if _utf8_step(st, p[i]) < 0:
            return -1
        i += 1
    # 2. whole sequences, with at least four bytes left
    while i + 4 <= n:
        c = p[i]
        if c < 0x80:
            i += 1
            while i + 32 <= n:
                memcpy(&a, p + i, 8)
                memcpy(&b, p + i + 8, 8)
                memcpy(&x, p + i + 16, 8)
                memcpy(&y, p + i + 24, 8)
                if (a | b | x | y) & HIGH_BITS:
                    break
                i += 32
            while i + 8 <= n:
                memcpy(&w, p + i, 8)
                if w & HIGH_BITS:
                    break
                i += 8
        elif c < 0xE0:
            if c < 0xC2 or (p[i + 1] ^ 0x80) >= 0x40:
                return -1
            i += 2
        elif c < 0xF0:
            c1 = p[i + 1]
            if (c1 ^ 0x80) >= 0x40 or (p[i + 2] ^ 0x80) >= 0x40:
                return -1
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
                return -1
            i += 3
        elif c < 0xF5:
            c1 = p[i + 1]
            if (c1 ^ 0x80) >= 0x40 or (p[i + 2] ^ 0x80) >= 0x40 or (p[i + 3] ^ 0x80) >= 0x40:
                return -1
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
                return -1
            i += 4
        else:
            return -1
    # 3. the last bytes, maybe a sequence the next chunk finishes
    while i < n:
        if _utf8_step(st, p[i]) < 0:
            return -1
        i += 1
    return 0


cdef int _utf8_check(Utf8State *st, const uint8_t *p, Py_ssize_t n) noexcept:
    cdef int r
    if n >= NOGIL_THRESHOLD:
        with nogil:
            r = _utf8_feed(st, p, n)
        return r
    return _utf8_feed(st, p, n)


cdef Py_ssize_t _utf8_decode(Utf8State *st, const uint8_t *p, Py_ssize_t n,
                             uint32_t *out) noexcept:
    """``_utf8_feed`` that also writes the code points completed by these n bytes to
    ``out`` (room for n); returns how many, or -1 as soon as the input cannot be UTF-8.

    The validation already tells each sequence's length: decoding in the same pass
    costs little, where a second pass (CPython's decoder) pays again for the
    mispredicted branches of mixed-length text, and for widening as it goes.
    """
    cdef Py_ssize_t i = 0, j = 0, k
    cdef uint8_t c, c1, c2, c3
    cdef uint32_t cp, bits = 0
    cdef uint64_t w
    # 1. the rest of a sequence the previous chunk left open
    if st.need:
        i = _utf8_decode_edge(st, p, n, out, &j, True)
        if i < 0:
            return -1
    # 2. whole sequences, with at least four bytes left
    while i + 4 <= n:
        c = p[i]
        if c < 0x80:
            out[j] = c
            i += 1
            j += 1
            while i + 8 <= n:
                memcpy(&w, p + i, 8)
                if w & HIGH_BITS:
                    break
                for k in range(8):
                    out[j + k] = p[i + k]
                i += 8
                j += 8
            continue
        c1 = p[i + 1]
        if (c1 ^ 0x80) >= 0x40:
            return -1
        if c < 0xE0:
            if c < 0xC2:
                return -1
            cp = ((c & 0x1F) << 6) | (c1 & 0x3F)
            i += 2
        elif c < 0xF0:
            c2 = p[i + 2]
            if (c2 ^ 0x80) >= 0x40 or (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
                return -1
            cp = ((c & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F)
            i += 3
        elif c < 0xF5:
            c2 = p[i + 2]
            c3 = p[i + 3]
            if ((c2 ^ 0x80) >= 0x40 or (c3 ^ 0x80) >= 0x40
                    or (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F)):
                return -1
            cp = ((c & 0x07) << 18) | ((c1 & 0x3F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F)
            i += 4
        else:
            return -1
        out[j] = cp
        bits |= cp
        j += 1
    st.bits |= bits
    # 3. the last bytes, maybe a sequence the next chunk finishes
    if i < n and _utf8_decode_edge(st, p + i, n - i, out, &j, False) < 0:
        return -1
    return j


cdef Py_ssize_t _utf8_decode_edge(Utf8State *st, const uint8_t *p, Py_ssize_t n, uint32_t *out,
                                  Py_ssize_t *j, bint open_only) noexcept:
    """Byte-wise decoding at a chunk edge (only while a sequence is open, with
    ``open_only``); returns the bytes consumed, or -1."""
    cdef Py_ssize_t i = 0
    cdef int r
    while i < n and (st.need or not open_only):
        r = _utf8_step(st, p[i])
        if r < 0:
            return -1
        i += 1
        if r:
            out[j[0]] = st.cp
            st.bits |= st.cp
            j[0] += 1
    return i


cdef object _ucs4_str(const uint32_t *src, Py_ssize_t n, uint32_t bits):
    """The str of n code points (``bits``: all of them ORed), in its narrowest kind."""
    cdef uint32_t maxchar = 0x7F if bits < 0x80 else 0xFF if bits < 0x100 else \
        0xFFFF if bits < 0x10000 else 0x10FFFF
    cdef object s = PyUnicode_New(n, maxchar)
    cdef void *data = PyUnicode_DATA(s)
    cdef Py_ssize_t i
    cdef uint8_t *d1
    cdef uint16_t *d2
    if maxchar == 0x10FFFF:
        memcpy(data, src, n * 4)
    elif maxchar == 0xFFFF:
        d2 = <uint16_t *>data
        for i in range(n):
            d2[i] = <uint16_t>src[i]
    else:
        d1 = <uint8_t *>data
        for i in range(n):
            d1[i] = <uint8_t>src[i]
    return s


def validate_utf8(data):
    """True when ``data`` (bytes-like) is valid UTF-8."""
    cdef Py_buffer view
    cdef Utf8State st
    cdef int r
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        _utf8_reset(&st)
        r = _utf8_check(&st, <const uint8_t *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return r == 0 and st.need == 0


def apply_mask(data, mask):
    """XOR ``data`` with the 4-byte ``mask`` (RFC 6455 §5.3); the operation is its own inverse."""
    cdef Py_buffer view, kview
    cdef bytes out
    PyObject_GetBuffer(mask, &kview, PyBUF_SIMPLE)
    try:
        if kview.len != 4:
            raise InvalidOption("mask must be 4 bytes")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            out = PyBytes_FromStringAndSize(NULL, view.len)
            _mask_big(<uint8_t *>PyBytes_AS_STRING(out), <const uint8_t *>view.buf, view.len,
                      <const uint8_t *>kview.buf)
        finally:
            PyBuffer_Release(&view)
    finally:
        PyBuffer_Release(&kview)
    return out


cdef inline void _mask_big(uint8_t *dst, const uint8_t *src, Py_ssize_t n, const uint8_t *key) noexcept:
    if n >= NOGIL_THRESHOLD:
        with nogil:
            _mask_copy(dst, src, n, key)
    else:
        _mask_copy(dst, src, n, key)


# ---------------------------------------------------------------- events

# Not tracked by the cyclic GC: a stream allocates one Message per frame, and tracked
# objects trigger a young-generation collection every 700 allocations that walks every
# message still buffered (18% of the time on a tick stream). A Message holds only a
# str or bytes, so it cannot be part of a reference cycle.
@cython.no_gc
@cython.freelist(1024)
cdef class Message:
    """A data message: ``type`` is "text" (``data`` a str) or "binary" (``data`` bytes)."""

    cdef readonly str type
    cdef readonly object data

    def __init__(self, str type, data):
        if not isinstance(data, (str, bytes)):
            raise TypeError(f"Message data must be str or bytes, not {data.__class__.__name__}")
        self.type = type
        self.data = data

    def __eq__(self, other):
        return (getattr(other, "type", None) == self.type
                and getattr(other, "data", None) == self.data
                and type(other).__name__ == "Message")

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None

    def __repr__(self):
        return f"Message(type={self.type!r}, data={self.data[:60]!r}, size={len(self.data)})"

    def __reduce__(self):
        return Message, (self.type, self.data)


cdef inline Py_ssize_t _header_size(uint8_t b1) noexcept:
    """Bytes of a server frame's header (unmasked), from its second byte."""
    b1 &= 0x7F
    return 4 if b1 == 126 else 10 if b1 == 127 else 2


cdef inline uint64_t _payload_length(const uint8_t *b, Py_ssize_t hlen) noexcept:
    """The payload length in a whole header of ``hlen`` bytes at ``b``."""
    if hlen == 2:
        return b[1] & 0x7F
    if hlen == 4:
        return (<uint64_t>b[2] << 8) | b[3]
    return ((<uint64_t>b[2] << 56) | (<uint64_t>b[3] << 48) | (<uint64_t>b[4] << 40)
            | (<uint64_t>b[5] << 32) | (<uint64_t>b[6] << 24) | (<uint64_t>b[7] << 16)
            | (<uint64_t>b[8] << 8) | <uint64_t>b[9])


cdef inline Message _message(str type, object data):
    cdef Message m = Message.__new__(Message)
    m.type = type
    m.data = data
    return m


cdef object _fail(str message, int code=1002):
    return ProtocolError(message, close_code=code)


# ---------------------------------------------------------------- growable byte buffer

cdef struct ByteBuf:
    uint8_t *data
    Py_ssize_t len
    Py_ssize_t cap


cdef int _buf_resize(ByteBuf *b, Py_ssize_t cap) except -1:
    cdef uint8_t *p = <uint8_t *>PyMem_Realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    return 0


cdef int _buf_reserve(ByteBuf *b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = b.len + extra, cap
    if need <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 4096
    while cap < need:
        cap *= 2
    return _buf_resize(b, cap)


cdef int _buf_append(ByteBuf *b, const uint8_t *src, Py_ssize_t n) except -1:
    if n <= 0:
        # an empty buffer's data is NULL, and memcpy wants valid pointers even for 0 bytes
        # (C11 7.24.1; UBSan reported it for an empty first fragment)
        return 0
    _buf_reserve(b, n)
    if n >= NOGIL_THRESHOLD:
        with nogil:
            memcpy(b.data + b.len, src, n)
    else:
        memcpy(b.data + b.len, src, n)
    b.len += n
    return 0


cdef void _buf_shrink(ByteBuf *b) noexcept:
    """Give back the memory of a big message once it is consumed."""
    cdef uint8_t *p
    if b.cap > KEEP_BUFFER and b.len <= KEEP_BUFFER:
        p = <uint8_t *>PyMem_Realloc(b.data, KEEP_BUFFER)
        if p != NULL:
            b.data = p
            b.cap = KEEP_BUFFER


cdef void _buf_free(ByteBuf *b) noexcept:
    PyMem_Free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


# ---------------------------------------------------------------- parser

cdef class FrameParser:
    """Incremental parser of server-to-client frames.

    ``feed(chunk)`` returns the data messages completed by the chunk, in order;
    control frames (Ping, Pong, Close) collect in ``control`` until ``take_control()``.
    On a protocol violation parsing stops: ``error`` holds the ``ProtocolError``
    (with the close code to send) and the messages completed before it are still
    returned. After a Close frame the rest of the stream is ignored.
    """

    cdef readonly Py_ssize_t read_limit
    cdef Py_ssize_t _wire_limit
    cdef readonly bint compressed
    cdef bint _no_context_takeover
    cdef int _wbits
    cdef object _inflater      # Python's zlib, when not inflating with the C API
    cdef bint _czlib           # inflate with zlib's C API into _msg
    cdef bint _zs_ready        # _zs initialized (inflateEnd at the end)
    cdef bint _zs_end          # the deflate stream ended inside this message (BFINAL)
    cdef z_stream _zs
    cdef uint8_t _zin[ZIN_SMALL + 4]   # a small last fragment and the tail
    cdef ByteBuf _buf          # bytes of a frame not yet complete
    cdef ByteBuf _msg          # payload of a fragmented message
    cdef ByteBuf _ucs          # its code points so far (text up to DECODE_MAX bytes)
    cdef bint _msg_decoding    # _ucs is complete: the str is built from it
    cdef readonly list control
    cdef readonly object error
    cdef readonly bint closed
    cdef bint _msg_open
    cdef bint _msg_text
    cdef bint _msg_deflated
    cdef Py_ssize_t _msg_size
    cdef Py_ssize_t _msg_wire
    cdef Utf8State _utf8
    # A large single-frame message being read straight into its final bytes object:
    cdef bytes _direct
    cdef Py_ssize_t _direct_pos
    cdef Py_ssize_t _direct_hlen
    cdef bint _direct_text

    def __cinit__(self):
        self._buf.data = NULL
        self._buf.len = 0
        self._buf.cap = 0
        self._msg.data = NULL
        self._msg.len = 0
        self._msg.cap = 0
        self._ucs.data = NULL
        self._ucs.len = 0
        self._ucs.cap = 0
        memset(&self._zs, 0, sizeof(z_stream))   # zalloc/zfree/opaque NULL: zlib's allocator

    def __init__(self, Py_ssize_t read_limit=DEFAULT_READ_LIMIT, bint compressed=False,
                 bint no_context_takeover=False, int max_window_bits=15):
        cdef int err
        if read_limit <= 0:
            read_limit = DEFAULT_READ_LIMIT
        self.read_limit = read_limit
        self._wire_limit = read_limit + (read_limit >> 6) + 1024
        self.compressed = compressed
        self._no_context_takeover = no_context_takeover
        self._wbits = -max(9, min(15, max_window_bits))
        self._inflater = None
        if self._zs_ready:      # __init__ called again
            inflateEnd(&self._zs)
            self._zs_ready = False
        self._czlib = compressed and _c_inflate
        self._zs_end = False
        if self._czlib:
            err = inflateInit2(&self._zs, self._wbits)
            if err == Z_MEM_ERROR:
                raise MemoryError()
            if err != Z_OK:
                raise zlib.error(f"Error {err} while creating decompression object")
            self._zs_ready = True
        elif compressed:
            self._inflater = zlib.decompressobj(self._wbits)
        self.control = []
        self.error = None
        self.closed = False
        self._msg_open = False
        _utf8_reset(&self._utf8)

    def __dealloc__(self):
        _buf_free(&self._buf)
        _buf_free(&self._msg)
        _buf_free(&self._ucs)
        if self._zs_ready:
            inflateEnd(&self._zs)

    def take_control(self):
        """Return and clear the control frames received so far."""
        cdef list control = self.control
        self.control = []
        return control

    @property
    def buffered(self):
        """Bytes held of a frame not yet complete."""
        if self._direct is not None:
            return self._direct_hlen + self._direct_pos
        return self._buf.len

    def feed(self, data):
        """Parse a chunk of bytes (any size, any split); return the completed messages."""
        cdef list out = []
        cdef Py_buffer view
        cdef Py_ssize_t pos, n
        cdef const uint8_t *p
        if self.error is not None or self.closed:
            return out
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const uint8_t *>view.buf
            n = view.len
            while n > 0:
                if self._direct is not None:
                    pos = self._direct_copy(p, n, out)
                    p += pos
                    n -= pos
                    if self.error is not None:
                        return out
                elif self._buf.len:
                    # A frame began in an earlier chunk: complete just that frame (or its
                    # header) in _buf, then parse the rest of this chunk where it lies.
                    # (Appending the whole chunk copied every byte once more: a read ends
                    # inside a frame almost every time.)
                    pos = self._pending_need()
                    if pos > n:
                        pos = n
                    _buf_append(&self._buf, p, pos)
                    p += pos
                    n -= pos
                    pos = self._parse(self._buf.data, self._buf.len, out)
                    if pos:
                        memmove(self._buf.data, self._buf.data + pos, self._buf.len - pos)
                        self._buf.len -= pos
                        _buf_shrink(&self._buf)
                    if self.closed:
                        break
                else:
                    pos = self._parse(p, n, out)
                    if pos < n and not self.closed:
                        _buf_append(&self._buf, p + pos, n - pos)
                    break
        except ProtocolError as exc:
            self.error = exc
            self._buf.len = 0
        finally:
            PyBuffer_Release(&view)
        if self.closed or self.error is not None:
            self._buf.len = 0
            _buf_shrink(&self._buf)
            self._msg.len = 0       # e.g. a bomb's first read_limit bytes
            _buf_shrink(&self._msg)
        return out

    cdef Py_ssize_t _pending_need(self) noexcept:
        # Bytes the frame held in _buf still lacks: the rest of its header, or of the
        # whole frame (at least 1; a length too large for memory: PY_SSIZE_T_MAX, so
        # the caller takes everything and _parse judges the length).
        cdef const uint8_t *b = self._buf.data
        cdef Py_ssize_t have = self._buf.len, hlen
        cdef uint64_t length
        if have < 2:
            return 2 - have
        hlen = _header_size(b[1])
        if have < hlen:
            return hlen - have
        length = _payload_length(b, hlen)
        if length >= <uint64_t>(PY_SSIZE_T_MAX - hlen):
            return PY_SSIZE_T_MAX
        if <Py_ssize_t>length + hlen <= have:
            return PY_SSIZE_T_MAX   # (not expected: _parse consumes whole frames)
        return <Py_ssize_t>length + hlen - have

    def read_target(self):
        """Internal: a writable view the caller may ``recv_into`` (then ``advance(n)``),
        while a large message is read straight into its final buffer; else None."""
        if self._direct is None:
            return None
        return PyMemoryView_FromMemory(PyBytes_AS_STRING(self._direct) + self._direct_pos,
                                       PyBytes_GET_SIZE(self._direct) - self._direct_pos, PyBUF_WRITE)

    def advance(self, Py_ssize_t n):
        """Internal: ``n`` bytes were written into ``read_target()``; return completed messages."""
        cdef list out = []
        if self._direct is None or n < 0 or n > PyBytes_GET_SIZE(self._direct) - self._direct_pos:
            raise ValueError("advance() without a matching read_target()")
        self._direct_pos += n
        if self._direct_pos == PyBytes_GET_SIZE(self._direct):
            self._direct_done(out)
        return out

    cdef Py_ssize_t _direct_copy(self, const uint8_t *p, Py_ssize_t n, list out) except -1:
        cdef Py_ssize_t take = PyBytes_GET_SIZE(self._direct) - self._direct_pos
        if take > n:
            take = n
        memcpy(PyBytes_AS_STRING(self._direct) + self._direct_pos, p, take)
        self._direct_pos += take
        if self._direct_pos == PyBytes_GET_SIZE(self._direct):
            self._direct_done(out)
        return take

    cdef int _direct_done(self, list out) except -1:
        cdef bytes data = self._direct
        self._direct = None
        if self._direct_text:
            try:
                out.append(_message(TYPE_TEXT, _decode_text(<const uint8_t *>PyBytes_AS_STRING(data),
                                                            PyBytes_GET_SIZE(data))))
            except ProtocolError as exc:
                self.error = exc
        else:
            out.append(_message(TYPE_BINARY, data))
        return 0

    cdef Py_ssize_t _parse(self, const uint8_t *buf, Py_ssize_t end, list out) except -1:
        cdef Py_ssize_t pos = 0, start, hlen
        cdef uint64_t length
        cdef uint8_t b0, b1
        cdef int opcode
        cdef bint fin
        cdef object text
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            fin = (b0 & 0x80) != 0
            opcode = b0 & 0x0F
            # The common frame (FIN text/binary, no RSV, unmasked, nothing open) skips the checks.
            if not ((b0 == 0x81 or b0 == 0x82) and b1 < 0x80 and not self._msg_open):
                self._check_header(b0, b1)
            hlen = _header_size(b1)
            if end - pos < hlen:
                break
            length = _payload_length(buf + pos, hlen)
            if length >> 63:
                raise _fail("frame length has the most significant bit set")
            if opcode < 8:
                self._check_length(opcode, b0 & 0x40, length)
            if <uint64_t>(end - pos - hlen) < length:
                if (length >= <uint64_t>DIRECT_MIN and fin and (opcode == 1 or opcode == 2)
                        and not (b0 & 0x40)):
                    # a large whole message: allocate it once and read into it
                    start = pos + hlen
                    self._direct = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
                    self._direct_pos = end - start
                    self._direct_hlen = hlen
                    self._direct_text = opcode == 1
                    memcpy(PyBytes_AS_STRING(self._direct), buf + start, end - start)
                    return end
                break
            start = pos + hlen
            pos = start + <Py_ssize_t>length
            if opcode >= 8:
                self._control(opcode, buf + start, <Py_ssize_t>length)
                if self.closed:
                    return pos
            elif opcode != 0:
                if fin and not (b0 & 0x40):
                    if opcode == 1:
                        out.append(_message(TYPE_TEXT, _decode_text(buf + start, <Py_ssize_t>length)))
                    else:
                        out.append(_message(TYPE_BINARY, PyBytes_FromStringAndSize(
                            <const char *>buf + start, <Py_ssize_t>length)))
                else:
                    self._start_message(opcode, b0 & 0x40)
                    self._fragment(buf + start, <Py_ssize_t>length, fin, out)
            else:
                self._fragment(buf + start, <Py_ssize_t>length, fin, out)
        return pos

    cdef int _check_header(self, uint8_t b0, uint8_t b1) except -1:
        cdef int opcode = b0 & 0x0F
        if b1 & 0x80:
            raise _fail("server frames must not be masked")
        if b0 & 0x30:
            raise _fail("reserved bits RSV2/RSV3 set")
        if opcode >= 8:
            if opcode > 0xA:
                raise _fail(f"unknown opcode {opcode:#x}")
            if b0 & 0x40:
                raise _fail("reserved bit RSV1 set on a control frame")
            if not b0 & 0x80:
                raise _fail("fragmented control frame")
            if (b1 & 0x7F) > 125:
                raise _fail("control frame payload over 125 bytes")
        elif opcode == 0:
            if not self._msg_open:
                raise _fail("continuation frame with no message open")
            if b0 & 0x40:
                raise _fail("reserved bit RSV1 set on a continuation frame")
        elif opcode <= 2:
            if self._msg_open:
                raise _fail("new data frame inside a fragmented message")
            if b0 & 0x40 and not self.compressed:
                raise _fail("reserved bit RSV1 set without a negotiated extension")
        else:
            raise _fail(f"unknown opcode {opcode:#x}")
        return 0

    cdef int _check_length(self, int opcode, int rsv1, uint64_t length) except -1:
        cdef bint deflated = self._msg_deflated if opcode == 0 else rsv1 != 0
        cdef uint64_t total
        if deflated:
            total = (<uint64_t>self._msg_wire if opcode == 0 else 0) + length
            if total > <uint64_t>self._wire_limit:
                raise _fail(f"compressed message over the read limit ({self.read_limit} bytes)", 1009)
        else:
            total = (<uint64_t>self._msg_size if opcode == 0 else 0) + length
            if total > <uint64_t>self.read_limit:
                raise _fail(f"message over the read limit ({self.read_limit} bytes)", 1009)
        return 0

    cdef int _control(self, int opcode, const uint8_t *p, Py_ssize_t n) except -1:
        cdef int code
        if opcode == 0x9:
            self.control.append(Ping(PyBytes_FromStringAndSize(<const char *>p, n)))
        elif opcode == 0xA:
            self.control.append(Pong(PyBytes_FromStringAndSize(<const char *>p, n)))
        else:
            if n == 0:
                code = 1005
                reason = ""
            elif n == 1:
                raise _fail("close frame with a 1-byte payload")
            else:
                code = (p[0] << 8) | p[1]
                if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
                    raise _fail(f"invalid close code {code}")
                try:
                    reason = PyUnicode_DecodeUTF8(<const char *>p + 2, n - 2, NULL)
                except UnicodeDecodeError:
                    raise _fail("invalid UTF-8 in close reason", 1007) from None
            self.control.append(Close(code, reason))
            self.closed = True
        return 0

    cdef void _start_message(self, int opcode, int rsv1) noexcept:
        self._msg_open = True
        self._msg_text = opcode == 1
        self._msg_deflated = rsv1 != 0
        self._msg_size = 0
        self._msg_wire = 0
        self._msg.len = 0
        self._ucs.len = 0
        self._msg_decoding = opcode == 1
        _utf8_reset(&self._utf8)

    cdef int _fragment(self, const uint8_t *p, Py_ssize_t n, bint fin, list out) except -1:
        cdef bytes chunk = None
        cdef const uint8_t *cp = p
        cdef Py_ssize_t cn = n
        cdef bint whole
        cdef object data
        if self._msg_deflated and self._czlib:
            return self._fragment_z(p, n, fin, out)
        if self._msg_deflated:
            self._msg_wire += n
            if fin:
                chunk = PyBytes_FromStringAndSize(NULL, n + 4)
                memcpy(PyBytes_AS_STRING(chunk), p, n)
                memcpy(PyBytes_AS_STRING(chunk) + n, b"\x00\x00\xff\xff", 4)
                chunk = self._inflate(chunk)
            else:
                chunk = self._inflate(PyBytes_FromStringAndSize(<const char *>p, n))
            cp = <const uint8_t *>PyBytes_AS_STRING(chunk)
            cn = PyBytes_GET_SIZE(chunk)
        whole = fin and self._msg_size == 0   # the message is this one chunk: no reassembly
        self._msg_size += cn
        if self._msg_size > self.read_limit:
            raise _fail(f"message over the read limit ({self.read_limit} bytes)", 1009)
        if whole:
            if self._msg_text:
                data = _decode_text(cp, cn)
            elif chunk is not None:
                data = chunk
            else:
                data = PyBytes_FromStringAndSize(<const char *>cp, cn)
        else:
            if self._msg_text:
                self._text_part(cp, cn)
            _buf_append(&self._msg, cp, cn)
            if not fin:
                return 0
            data = self._assembled()
        out.append(_message(TYPE_TEXT if self._msg_text else TYPE_BINARY, data))
        self._msg_open = False
        if self._msg_deflated and (self._no_context_takeover or self._inflater.eof):
            self._inflater = zlib.decompressobj(self._wbits)
        return 0

    cdef int _text_part(self, const uint8_t *p, Py_ssize_t n) except -1:
        """The next n bytes of a text message in pieces (``_msg_size`` counts them):
        fail on bad UTF-8 at once; up to DECODE_MAX bytes, also decode them into _ucs."""
        cdef Py_ssize_t decoded
        if self._msg_decoding and self._msg_size > DECODE_MAX:
            self._msg_decoding = False   # big: validate now, decode the bytes at the end
            self._ucs.len = 0
            _buf_shrink(&self._ucs)
        if self._msg_decoding:
            _buf_reserve(&self._ucs, n * 4)
            decoded = _utf8_decode(&self._utf8, p, n, <uint32_t *>(self._ucs.data + self._ucs.len))
            if decoded < 0:
                raise _fail("invalid UTF-8 in text message", 1007)
            self._ucs.len += decoded * 4
        elif _utf8_check(&self._utf8, p, n) < 0:
            raise _fail("invalid UTF-8 in text message", 1007)
        return 0

    cdef object _assembled(self, bint whole=False):
        """The str or bytes of the message gathered in _msg, and empty it. Text came
        through ``_text_part``, unless ``whole`` (one piece: validated as it decodes)."""
        cdef object data
        if not self._msg_text:
            data = PyBytes_FromStringAndSize(<const char *>self._msg.data, self._msg.len)
        elif whole:
            data = _decode_text(self._msg.data, self._msg.len)
        elif self._utf8.need != 0:
            raise _fail("invalid UTF-8 in text message", 1007)
        elif self._msg_decoding:
            data = _ucs4_str(<const uint32_t *>self._ucs.data, self._ucs.len // 4, self._utf8.bits)
            self._ucs.len = 0
        else:
            data = PyUnicode_DecodeUTF8(<const char *>self._msg.data, self._msg.len, NULL)
        self._msg.len = 0
        _buf_shrink(&self._msg)
        return data

    cdef bytes _inflate(self, bytes data):
        cdef Py_ssize_t remaining = self.read_limit - self._msg_size
        cdef bytes chunk
        try:
            chunk = self._inflater.decompress(data, remaining + 1)
        except zlib.error as exc:
            raise _fail(f"invalid compressed data: {exc}", 1007) from None
        if PyBytes_GET_SIZE(chunk) > remaining:
            raise _fail(f"message over the read limit ({self.read_limit} bytes) after inflate", 1009)
        return chunk

    cdef int _fragment_z(self, const uint8_t *p, Py_ssize_t n, bint fin, list out) except -1:
        """_fragment for a deflated message with zlib's C API: inflated from the frame into _msg."""
        cdef Py_ssize_t start = self._msg.len
        cdef bint whole
        cdef object data
        self._msg_wire += n
        if fin and n <= ZIN_SMALL:
            # one call over payload + tail: zlib decodes the last bytes of its input on a
            # slow path (its fast loop wants lookahead), and the tail supplies some
            memcpy(self._zin, p, n)
            memcpy(self._zin + n, DEFLATE_TAIL_C, 4)
            self._zinflate(self._zin, n + 4)
        else:
            self._zinflate(p, n)
            if fin:
                self._zinflate(DEFLATE_TAIL_C, 4)
        self._msg_size = self._msg.len
        whole = fin and start == 0   # the message is this one frame: decoded in one go
        if self._msg_text and not whole:
            # part of a longer message: fail on bad UTF-8 as soon as the other paths do
            self._text_part(self._msg.data + start, self._msg.len - start)
        if not fin:
            return 0
        data = self._assembled(whole)
        out.append(_message(TYPE_TEXT if self._msg_text else TYPE_BINARY, data))
        self._msg_open = False
        if self._no_context_takeover or self._zs_end:
            inflateReset(&self._zs)
            self._zs_end = False
        return 0

    cdef int _zinflate(self, const uint8_t *p, Py_ssize_t n) except -1:
        """Inflate n bytes onto _msg, which holds this message only. Like Python's
        decompress(data, read_limit + 1 - size): never more output than read_limit + 1."""
        cdef z_stream *zs = &self._zs
        cdef ByteBuf *b = &self._msg
        cdef Py_ssize_t budget = self.read_limit + 1, room, cap
        cdef int err
        if self._zs_end:
            return 0        # Python's zlib keeps what follows the end as unused_data
        while True:
            # avail_in/avail_out are 32-bit: at most 1 GiB a call
            zs.next_in = <unsigned char *>p
            zs.avail_in = <unsigned int>(n if n < (1 << 30) else (1 << 30))
            p += zs.avail_in
            n -= zs.avail_in
            while True:
                room = (b.cap if b.cap < budget else budget) - b.len
                if room == 0:
                    # grow, but never past the output budget (peak memory of a bomb)
                    cap = b.cap * 2 if b.cap else 4096
                    _buf_resize(b, cap if cap < budget else budget)
                    room = b.cap - b.len
                zs.next_out = b.data + b.len
                zs.avail_out = <unsigned int>(room if room < (1 << 30) else (1 << 30))
                if zs.avail_in >= NOGIL_INFLATE or b.len >= NOGIL_THRESHOLD:
                    with nogil:
                        err = inflate(zs, Z_SYNC_FLUSH)
                else:
                    err = inflate(zs, Z_SYNC_FLUSH)
                b.len = zs.next_out - b.data
                if err != Z_OK and err != Z_BUF_ERROR and err != Z_STREAM_END:
                    raise _fail(f"invalid compressed data: {_zlib_error(zs, err)}", 1007)
                if b.len > self.read_limit:
                    raise _fail(f"message over the read limit ({self.read_limit} bytes) after inflate", 1009)
                if err == Z_STREAM_END:
                    self._zs_end = True
                    return 0
                if zs.avail_out != 0:
                    break
            if n == 0:
                return 0


cdef str _zlib_error(z_stream *zs, int err):
    """The text of Python's zlib.error for the same failure."""
    cdef str what
    if zs.msg != NULL:
        what = (<bytes>zs.msg)[:200].decode("utf-8", "replace")
    elif err == Z_BUF_ERROR:
        what = "incomplete or truncated stream"
    elif err == Z_STREAM_ERROR:
        what = "inconsistent stream state"
    elif err == Z_DATA_ERROR:
        what = "invalid input data"
    else:
        return f"Error {err} while decompressing data"
    return f"Error {err} while decompressing data: {what}"


cdef object _decode_text(const uint8_t *p, Py_ssize_t n):
    """Decode one whole text payload; 1007 when it is not UTF-8."""
    cdef Utf8State st
    if n >= NOGIL_THRESHOLD:
        # validate with the GIL released; the decode after it is then a fast copy
        _utf8_reset(&st)
        if _utf8_check(&st, p, n) < 0 or st.need != 0:
            raise _fail("invalid UTF-8 in text message", 1007)
    try:
        return PyUnicode_DecodeUTF8(<const char *>p, n, NULL)
    except UnicodeDecodeError:
        raise _fail("invalid UTF-8 in text message", 1007) from None


# ---------------------------------------------------------------- encoder

cdef class FrameEncoder:
    """Builds masked client-to-server frames, compressing messages when negotiated.

    ``threshold``: messages of this many bytes or more are compressed (0 = all).
    ``fragment_size``: when > 0, longer messages are split into frames of that size.
    """

    cdef readonly bint compressed
    cdef bint _no_context_takeover
    cdef int _wbits
    cdef int _level
    cdef object _deflater
    cdef public Py_ssize_t threshold
    cdef public Py_ssize_t fragment_size
    cdef bytes _pool
    cdef int _pool_pos

    def __init__(self, bint compressed=False, bint no_context_takeover=False, int max_window_bits=15,
                 Py_ssize_t threshold=128, int level=6, Py_ssize_t fragment_size=0):
        # zlib cannot deflate with a 256-byte window: if the server asked for one we
        # send every message uncompressed, which RFC 7692 allows.
        self.compressed = compressed and max_window_bits >= 9
        self._no_context_takeover = no_context_takeover
        self._wbits = -min(15, max_window_bits)
        self._level = level
        self._deflater = self._new_deflater() if self.compressed else None
        self.threshold = threshold
        self.fragment_size = fragment_size
        self._pool = b""
        self._pool_pos = MASK_POOL

    def _new_deflater(self):
        return zlib.compressobj(self._level, zlib.DEFLATED, self._wbits)

    cdef inline const uint8_t *_mask_key(self):
        if self._pool_pos + 4 > MASK_POOL:
            self._pool = os.urandom(MASK_POOL)
            self._pool_pos = 0
        self._pool_pos += 4
        return <const uint8_t *>PyBytes_AS_STRING(self._pool) + self._pool_pos - 4

    cdef bytes _frame(self, int opcode, const uint8_t *p, Py_ssize_t n, bint fin, bint rsv1):
        cdef Py_ssize_t hlen = 6 if n < 126 else (8 if n < 65536 else 14)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, hlen + n)
        cdef uint8_t *o = <uint8_t *>PyBytes_AS_STRING(out)
        cdef const uint8_t *key = self._mask_key()
        cdef int i
        o[0] = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        if n < 126:
            o[1] = 0x80 | <uint8_t>n
        elif n < 65536:
            o[1] = 0x80 | 126
            o[2] = <uint8_t>(n >> 8)
            o[3] = <uint8_t>n
        else:
            o[1] = 0x80 | 127
            for i in range(8):
                o[2 + i] = <uint8_t>((<uint64_t>n) >> (56 - 8 * i))
        memcpy(o + hlen - 4, key, 4)
        _mask_big(o + hlen, p, n, key)
        return out

    def encode_frame(self, int opcode, payload=b"", bint fin=True, bint rsv1=False):
        """One masked frame with the given opcode and payload, header and payload in one buffer."""
        cdef Py_buffer view
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            return self._frame(opcode, <const uint8_t *>view.buf, view.len, fin, rsv1)
        finally:
            PyBuffer_Release(&view)

    def encode_message(self, data, opcode=None):
        """The frames of one data message; ``str`` is TEXT, bytes-like BINARY unless ``opcode`` says."""
        cdef Py_buffer view
        cdef const char *p
        cdef Py_ssize_t n
        cdef int op
        if isinstance(data, str):
            op = 1 if opcode is None else opcode
            if not self.compressed and self.fragment_size <= 0:
                # hot path: mask straight out of the str's UTF-8 buffer, one copy
                p = PyUnicode_AsUTF8AndSize(data, &n)
                return self._frame(op, <const uint8_t *>p, n, True, False)
            data = (<str>data).encode("utf-8")
        else:
            op = 2 if opcode is None else opcode
        rsv1 = False
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if self.compressed and view.len >= self.threshold:
                data = self._deflate(data)
                rsv1 = True
            elif self.fragment_size <= 0 or view.len <= self.fragment_size:
                return self._frame(op, <const uint8_t *>view.buf, view.len, True, False)
        finally:
            PyBuffer_Release(&view)
        return self._frames(op, data, rsv1)

    cdef bytes _frames(self, int op, object payload, bint rsv1):
        cdef Py_buffer view
        cdef Py_ssize_t size = self.fragment_size, pos, n, step
        cdef list frames
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            n = view.len
            if size <= 0 or n <= size:
                return self._frame(op, <const uint8_t *>view.buf, n, True, rsv1)
            frames = [self._frame(op, <const uint8_t *>view.buf, size, False, rsv1)]
            pos = size
            while pos < n:
                step = min(size, n - pos)
                frames.append(self._frame(0, <const uint8_t *>view.buf + pos, step, pos + step >= n, False))
                pos += step
            return b"".join(frames)
        finally:
            PyBuffer_Release(&view)

    def encode_close(self, code=1000, str reason=""):
        """A close frame; ``code`` None sends an empty payload."""
        if code is None:
            return self.encode_frame(0x8, b"")
        return self.encode_frame(0x8, int(code).to_bytes(2, "big") + reason.encode("utf-8"))

    cdef bytes _deflate(self, object payload):
        cdef object d = self._deflater
        cdef bytes out = d.compress(payload) + d.flush(zlib.Z_SYNC_FLUSH)
        if self._no_context_takeover:
            self._deflater = self._new_deflater()
        if out.endswith(DEFLATE_TAIL):
            out = out[:-4]
        return out
