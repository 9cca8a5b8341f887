/* zlib for _codec.pyx.
 *
 * setup.py defines WSFAST_HAVE_ZLIB (and links -lz) when a test program with zlib.h
 * builds. Without it (Windows has no zlib headers, or WSFAST_NO_CZLIB=1) the stubs
 * below let the module compile; WSFAST_CZLIB is then 0 and the parser inflates with
 * Python's zlib module, so the stubs are never called.
 */
#ifndef WSFAST_ZSHIM_H
#define WSFAST_ZSHIM_H

#ifdef WSFAST_HAVE_ZLIB

#include <zlib.h>
#define WSFAST_CZLIB 1

#else

#define WSFAST_CZLIB 0

#define Z_OK 0
#define Z_STREAM_END 1
#define Z_NEED_DICT 2
#define Z_STREAM_ERROR (-2)
#define Z_DATA_ERROR (-3)
#define Z_MEM_ERROR (-4)
#define Z_BUF_ERROR (-5)
#define Z_SYNC_FLUSH 2

typedef struct {
    unsigned char *next_in;
    unsigned int avail_in;
    unsigned char *next_out;
    unsigned int avail_out;
    const char *msg;
} z_stream;

Py_LOCAL_INLINE(int) inflateInit2(z_stream *strm, int window_bits)
{
    (void)strm; (void)window_bits;
    return Z_STREAM_ERROR;
}

Py_LOCAL_INLINE(int) inflate(z_stream *strm, int flush)
{
    (void)strm; (void)flush;
    return Z_STREAM_ERROR;
}

Py_LOCAL_INLINE(int) inflateReset(z_stream *strm)
{
    (void)strm;
    return Z_STREAM_ERROR;
}

Py_LOCAL_INLINE(int) inflateEnd(z_stream *strm)
{
    (void)strm;
    return Z_STREAM_ERROR;
}

#endif /* WSFAST_HAVE_ZLIB */

#endif /* WSFAST_ZSHIM_H */
