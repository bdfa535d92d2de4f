# Shared by aead.pyx and esp.pyx: the per-key AEAD object and its raw seal/open calls, so
# that ESP runs the same engine code as the public AesGcm (one key schedule per SA).

from cpython.buffer cimport PyBUF_WRITABLE, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from ikecore._fast._libcrypto cimport EVP_CIPHER_CTX


cdef extern from *:
    """
    static inline void ikecore_buffer_clear(Py_buffer *view) { view->obj = NULL; view->buf = NULL; view->len = 0; }
    static inline void ikecore_buffer_release(Py_buffer *view) { if (view->obj != NULL) PyBuffer_Release(view); }
    """
    # Marks a Py_buffer as holding nothing, so that releasing it is a no-op.
    void buffer_clear "ikecore_buffer_clear"(Py_buffer *view) noexcept nogil
    # PyBuffer_Release, skipped for the bytes shortcut of acquire_buffer (nothing to release).
    void buffer_release "ikecore_buffer_release"(Py_buffer *view) noexcept


cdef extern from "ikecore_bytes.h" nogil:
    void store_be32 "ikecore_store_be32"(uint8_t *out, uint32_t value) noexcept
    void store_be64 "ikecore_store_be64"(uint8_t *out, uint64_t value) noexcept
    uint32_t load_be32 "ikecore_load_be32"(const uint8_t *data) noexcept
    uint16_t load_be16 "ikecore_load_be16"(const uint8_t *data) noexcept


cdef extern from "ikecore_ipsec_mb.h" nogil:
    ctypedef struct ikecore_mb_gcm:
        pass


cdef class Aead:
    cdef readonly int icv_len
    cdef readonly int key_len
    cdef int _engine
    cdef int _algorithm
    cdef uint8_t _salt[4]
    cdef ikecore_mb_gcm *_mb
    cdef EVP_CIPHER_CTX *_seal_ctx
    cdef EVP_CIPHER_CTX *_open_ctx

    cdef int _setup(self, object key_and_salt, int icv_len, int algorithm, object engine) except -1
    cdef void _release(self) noexcept
    cdef int _check_call(self, Py_buffer *iv, Py_ssize_t length) except -1
    # ciphertext to dst[0:length], ICV to dst[length:length + icv_len]; dst may equal src
    cdef int seal_raw(self, const uint8_t *iv8, const uint8_t *aad, size_t aad_len,
                      const uint8_t *src, size_t length, uint8_t *dst) except -1
    # seals head[0:head_len] | dst[head_len:length] (the rest already in place) into
    # dst[0:length], ICV after it; head must not overlap dst
    cdef int seal_parts(self, const uint8_t *iv8, const uint8_t *aad, size_t aad_len,
                        const uint8_t *head, size_t head_len, uint8_t *dst,
                        size_t length) except -1
    # ICV read from src[length:length + icv_len]; returns 1 when it verified, 0 when not (and
    # then dst[0:length] is wiped so no unauthenticated plaintext is left behind)
    cdef int open_raw(self, const uint8_t *iv8, const uint8_t *aad, size_t aad_len,
                      const uint8_t *src, size_t length, uint8_t *dst) except -1


# Read-only bytes take a shortcut around the buffer protocol (view.obj stays NULL, so
# PyBuffer_Release is a no-op); everything else goes through PyObject_GetBuffer.
cdef inline int acquire_buffer(object obj, Py_buffer *view, int flags) except -1:
    if not (flags & PyBUF_WRITABLE) and PyBytes_CheckExact(obj):
        buffer_clear(view)
        view.buf = PyBytes_AS_STRING(obj)
        view.len = PyBytes_GET_SIZE(obj)
        return 0
    if flags & PyBUF_WRITABLE:
        try:
            return PyObject_GetBuffer(obj, view, flags)
        except BufferError:
            raise TypeError(f"a writable bytes-like object is required, not "
                            f"{type(obj).__name__!r}") from None
    return PyObject_GetBuffer(obj, view, flags)


cpdef Aead make_aead(object algorithm, object key_and_salt, int icv_len=*, object engine=*)
