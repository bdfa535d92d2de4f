# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""AEAD ciphers for IKE and ESP: AES-GCM (RFC 4106, RFC 5282) and ChaCha20-Poly1305 (RFC 7634).

One object per key: the key schedule (and OpenSSL's cipher contexts) are made once in the
constructor and reused for every packet; native key material is wiped on dealloc.

Two engines behind one API (see ``aead.pyi``):

* ``"ipsec-mb"`` -- intel-ipsec-mb's direct AES-GCM API (the library DPDK and VPP use), when
  the package was built with it and the CPU has AES-NI + PCLMULQDQ (ipsec-mb's own detection);
* ``"openssl"`` -- OpenSSL 3 EVP, always built; the only engine for ChaCha20-Poly1305.

``engine=None`` reads ``IKECORE_AEAD_ENGINE`` (``auto``/``openssl``/``ipsec-mb``) so a whole
test run can be forced onto one engine; ``auto`` prefers ipsec-mb for AES-GCM.

The IKE Encrypted payload (RFC 5282 §5, RFC 7383 §2.5) is sealed and opened by ``IkeCipher``.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.ref cimport PyObject, Py_XDECREF
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport getenv
from libc.string cimport memcpy, memmove, memset

from ikecore._fast._libcrypto cimport (
    CRYPTO_memcmp,
    ERR_clear_error,
    EVP_aes_128_gcm,
    EVP_aes_192_gcm,
    EVP_aes_256_gcm,
    EVP_chacha20_poly1305,
    EVP_CIPHER,
    EVP_CIPHER_CTX_ctrl,
    EVP_CIPHER_CTX_free,
    EVP_CIPHER_CTX_new,
    EVP_CipherFinal_ex,
    EVP_CipherInit_ex,
    EVP_CipherUpdate,
    EVP_CTRL_AEAD_GET_TAG,
    EVP_CTRL_AEAD_SET_TAG,
    OPENSSL_cleanse,
)

from ikecore.errors import IntegrityError, MalformedMessage, SequenceExhausted


cdef extern from "ikecore_ipsec_mb.h" nogil:
    int ikecore_mb_init()
    const char *ikecore_mb_version()
    ikecore_mb_gcm *ikecore_mb_gcm_new(const uint8_t *key, size_t key_len)
    void ikecore_mb_gcm_free(ikecore_mb_gcm *ctx)
    size_t ikecore_mb_gcm_size()
    void ikecore_mb_gcm_seal(const ikecore_mb_gcm *ctx, const uint8_t *nonce, const uint8_t *aad,
                             size_t aad_len, const uint8_t *src, size_t length, uint8_t *dst,
                             uint8_t *tag, size_t tag_len)
    void ikecore_mb_gcm_seal_parts(const ikecore_mb_gcm *ctx, const uint8_t *nonce,
                                   const uint8_t *aad, size_t aad_len, const uint8_t *head,
                                   size_t head_len, uint8_t *dst, size_t length, size_t tag_len,
                                   size_t copy_below)
    void ikecore_mb_gcm_open(const ikecore_mb_gcm *ctx, const uint8_t *nonce, const uint8_t *aad,
                             size_t aad_len, const uint8_t *src, size_t length, uint8_t *dst,
                             uint8_t *tag, size_t tag_len)


cdef extern from "Python.h":
    # A new reference Cython does not track, so that _PyBytes_Resize can take it over.
    PyObject *new_bytes_raw "PyBytes_FromStringAndSize"(const char *data, Py_ssize_t size) except NULL
    int _PyBytes_Resize(PyObject **string, Py_ssize_t newsize) except -1
    char *bytes_data_raw "PyBytes_AS_STRING"(PyObject *string)


cdef enum:
    ENGINE_OPENSSL = 0
    ENGINE_IPSEC_MB = 1
    ALG_AES_GCM = 0
    ALG_CHACHA20_POLY1305 = 1
    # EVP_CipherUpdate takes an int length; nothing in IKE or ESP comes near this.
    MAX_AEAD_INPUT = 0x3FFFFFFF
    IKE_HEADER_LEN = 28
    SK_HEADER_LEN = 4
    SKF_HEADER_LEN = 8
    IKE_IV_LEN = 8
    # Below this, copying the head and sealing in one ipsec-mb call beats three streaming
    # calls (measured here: ~10% faster up to 2 KiB, ~20% slower at 9000 bytes).
    MB_COPY_BELOW = 4096
    # Same trade-off for OpenSSL, whose per-update overhead is smaller relative to its cipher.
    EVP_COPY_BELOW = 1024


# Set up at import, under the GIL: afterwards the shared IMB_MGR is only read.
cdef bint _ipsec_mb_usable = ikecore_mb_init() == 1

ENV_ENGINE = "IKECORE_AEAD_ENGINE"
cdef bytes _ENV_ENGINE_NAME = ENV_ENGINE.encode("ascii")


def available_engines() -> tuple:
    """The engines usable in this process, preferred first."""
    return ("ipsec-mb", "openssl") if _ipsec_mb_usable else ("openssl",)


def ipsec_mb_version():
    """The intel-ipsec-mb version the package was built against, or None without it."""
    cdef const char *version = ikecore_mb_version()
    return None if version == NULL else version.decode("ascii")


cdef int _resolve_engine(object engine, int algorithm) except -1:
    cdef bint from_environment = engine is None
    cdef const char *chosen
    if from_environment:
        # The C environment, which os.environ writes through (putenv): getenv costs far less
        # than os.environ.get, and every IkeCipher and ESP SA asks.
        chosen = getenv(_ENV_ENGINE_NAME)
        engine = chosen.decode("utf-8", "replace") if chosen != NULL and chosen[0] else "auto"
    if engine == "openssl":
        return ENGINE_OPENSSL
    if engine == "auto" or (from_environment and engine == "ipsec-mb"
                            and algorithm != ALG_AES_GCM):
        # ChaCha20-Poly1305 runs on OpenSSL whatever the environment prefers.
        if _ipsec_mb_usable and algorithm == ALG_AES_GCM:
            return ENGINE_IPSEC_MB
        return ENGINE_OPENSSL
    if engine == "ipsec-mb":
        if algorithm != ALG_AES_GCM:
            raise ValueError("the ipsec-mb engine is used for AES-GCM only")
        if not _ipsec_mb_usable:
            raise ValueError("the ipsec-mb engine is not available (not built in, or no AES-NI)")
        return ENGINE_IPSEC_MB
    raise ValueError(f"unknown AEAD engine {engine!r}: expected 'auto', 'openssl' or 'ipsec-mb'")


cdef class Aead:
    """Base of AesGcm and ChaCha20Poly1305: nonce = salt (4) | explicit IV (8)."""

    def __init__(self, *args, **kwargs):
        raise TypeError("use AesGcm or ChaCha20Poly1305")

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        if self._mb != NULL:
            OPENSSL_cleanse(self._mb, ikecore_mb_gcm_size())
            ikecore_mb_gcm_free(self._mb)
            self._mb = NULL
        # EVP_CIPHER_CTX_free cleanses the key schedule it holds.
        if self._seal_ctx != NULL:
            EVP_CIPHER_CTX_free(self._seal_ctx)
            self._seal_ctx = NULL
        if self._open_ctx != NULL:
            EVP_CIPHER_CTX_free(self._open_ctx)
            self._open_ctx = NULL
        OPENSSL_cleanse(self._salt, 4)

    cdef int _setup(self, object key_and_salt, int icv_len, int algorithm, object engine) except -1:
        cdef Py_buffer key_view
        cdef const EVP_CIPHER *cipher
        cdef const uint8_t *key
        cdef Py_ssize_t key_len
        cdef int engine_id
        buffer_clear(&key_view)
        acquire_buffer(key_and_salt, &key_view, PyBUF_SIMPLE)
        try:
            key = <const uint8_t *>key_view.buf
            key_len = key_view.len - 4
            if algorithm == ALG_AES_GCM:
                if key_len == 16:
                    cipher = EVP_aes_128_gcm()
                elif key_len == 24:
                    cipher = EVP_aes_192_gcm()
                elif key_len == 32:
                    cipher = EVP_aes_256_gcm()
                else:
                    raise ValueError("AES-GCM key_and_salt must be 20, 28 or 36 bytes (AES key "
                                     f"+ 4-byte salt, RFC 4106 §8.1), got {key_view.len}")
                if icv_len not in (8, 12, 16):
                    raise ValueError(f"AES-GCM icv_len must be 8, 12 or 16, got {icv_len}")
            else:
                if key_len != 32:
                    raise ValueError("ChaCha20-Poly1305 key_and_salt must be 36 bytes (32-byte "
                                     f"key + 4-byte salt, RFC 7634 §2), got {key_view.len}")
                if icv_len != 16:
                    raise ValueError(f"ChaCha20-Poly1305 icv_len is 16, got {icv_len}")
                cipher = EVP_chacha20_poly1305()
            engine_id = _resolve_engine(engine, algorithm)
            self._release()
            if engine_id == ENGINE_IPSEC_MB:
                self._mb = ikecore_mb_gcm_new(key, key_len)
                if self._mb == NULL:
                    raise MemoryError()
            else:
                self._seal_ctx = EVP_CIPHER_CTX_new()
                self._open_ctx = EVP_CIPHER_CTX_new()
                if (self._seal_ctx == NULL or self._open_ctx == NULL
                        or EVP_CipherInit_ex(self._seal_ctx, cipher, NULL, key, NULL, 1) != 1
                        or EVP_CipherInit_ex(self._open_ctx, cipher, NULL, key, NULL, 0) != 1):
                    ERR_clear_error()
                    self._release()
                    raise MemoryError("OpenSSL could not set up the AEAD cipher")
            memcpy(self._salt, key + key_len, 4)
            self.key_len = <int>key_len
            self.icv_len = icv_len
            self._algorithm = algorithm
            self._engine = engine_id
        finally:
            buffer_release(&key_view)
        return 0

    @property
    def engine(self) -> str:
        """``"ipsec-mb"`` or ``"openssl"``."""
        return "ipsec-mb" if self._engine == ENGINE_IPSEC_MB else "openssl"

    @property
    def algorithm(self) -> str:
        """``"aes-gcm"`` or ``"chacha20-poly1305"``."""
        return "aes-gcm" if self._algorithm == ALG_AES_GCM else "chacha20-poly1305"

    cdef int seal_raw(self, const uint8_t *iv8, const uint8_t *aad, size_t aad_len,
                      const uint8_t *src, size_t length, uint8_t *dst) except -1:
        cdef uint8_t nonce[12]
        cdef int out_len
        cdef EVP_CIPHER_CTX *ctx = self._seal_ctx
        memcpy(nonce, self._salt, 4)
        memcpy(nonce + 4, iv8, 8)
        if self._mb != NULL:
            ikecore_mb_gcm_seal(self._mb, nonce, aad, aad_len, src, length, dst, dst + length,
                                self.icv_len)
            return 0
        if ctx == NULL:
            raise ValueError("the AEAD object was not initialised")
        if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 1) != 1
                or (aad_len != 0 and EVP_CipherUpdate(ctx, NULL, &out_len, aad, <int>aad_len) != 1)
                or (length != 0 and EVP_CipherUpdate(ctx, dst, &out_len, src, <int>length) != 1)
                or EVP_CipherFinal_ex(ctx, dst + length, &out_len) != 1
                or EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, self.icv_len, dst + length) != 1):
            ERR_clear_error()
            raise MemoryError("OpenSSL AEAD encryption failed")
        return 0

    cdef int seal_parts(self, const uint8_t *iv8, const uint8_t *aad, size_t aad_len,
                        const uint8_t *head, size_t head_len, uint8_t *dst,
                        size_t length) except -1:
        cdef uint8_t nonce[12]
        cdef int out_len
        cdef EVP_CIPHER_CTX *ctx = self._seal_ctx
        memcpy(nonce, self._salt, 4)
        memcpy(nonce + 4, iv8, 8)
        if self._mb != NULL:
            ikecore_mb_gcm_seal_parts(self._mb, nonce, aad, aad_len, head, head_len, dst, length,
                                      self.icv_len, MB_COPY_BELOW)
            return 0
        if ctx == NULL:
            raise ValueError("the AEAD object was not initialised")
        if head_len < EVP_COPY_BELOW:
            # one EVP update over a copy is cheaper than two for a short packet
            memmove(dst, head, head_len)
            head_len = 0
        if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 1) != 1
                or (aad_len != 0 and EVP_CipherUpdate(ctx, NULL, &out_len, aad, <int>aad_len) != 1)
                or (head_len != 0
                    and EVP_CipherUpdate(ctx, dst, &out_len, head, <int>head_len) != 1)
                or (length > head_len
                    and EVP_CipherUpdate(ctx, dst + head_len, &out_len, dst + head_len,
                                         <int>(length - head_len)) != 1)
                or EVP_CipherFinal_ex(ctx, dst + length, &out_len) != 1
                or EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, self.icv_len, dst + length) != 1):
            ERR_clear_error()
            raise MemoryError("OpenSSL AEAD encryption failed")
        return 0

    cdef int open_raw(self, const uint8_t *iv8, const uint8_t *aad, size_t aad_len,
                      const uint8_t *src, size_t length, uint8_t *dst) except -1:
        cdef uint8_t nonce[12]
        cdef uint8_t tag[16]
        cdef int out_len
        cdef EVP_CIPHER_CTX *ctx = self._open_ctx
        memcpy(nonce, self._salt, 4)
        memcpy(nonce + 4, iv8, 8)
        if self._mb != NULL:
            ikecore_mb_gcm_open(self._mb, nonce, aad, aad_len, src, length, dst, tag, self.icv_len)
            if CRYPTO_memcmp(tag, src + length, self.icv_len) != 0:
                memset(dst, 0, length)
                return 0
            return 1
        if ctx == NULL:
            raise ValueError("the AEAD object was not initialised")
        # Copied first: with in-place decryption dst may alias the bytes after the ciphertext.
        memcpy(tag, src + length, self.icv_len)
        if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 0) != 1
                or (aad_len != 0 and EVP_CipherUpdate(ctx, NULL, &out_len, aad, <int>aad_len) != 1)
                or (length != 0 and EVP_CipherUpdate(ctx, dst, &out_len, src, <int>length) != 1)
                or EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, self.icv_len, tag) != 1):
            ERR_clear_error()
            memset(dst, 0, length)
            raise MemoryError("OpenSSL AEAD decryption failed")
        if EVP_CipherFinal_ex(ctx, dst + length, &out_len) != 1:
            ERR_clear_error()
            memset(dst, 0, length)
            return 0
        return 1

    cdef int _check_call(self, Py_buffer *iv, Py_ssize_t length) except -1:
        if self._mb == NULL and self._seal_ctx == NULL:
            raise ValueError("the AEAD object was not initialised")
        if iv.len != 8:
            raise ValueError(f"iv must be 8 bytes (RFC 4106 §3.1 explicit IV), got {iv.len}")
        if length > MAX_AEAD_INPUT:
            raise ValueError("input too long")
        return 0

    def seal(self, iv, aad, plaintext) -> bytes:
        """Returns ciphertext | ICV."""
        cdef Py_buffer iv_view, aad_view, pt_view
        cdef object result
        buffer_clear(&iv_view)
        buffer_clear(&aad_view)
        buffer_clear(&pt_view)
        try:
            acquire_buffer(iv, &iv_view, PyBUF_SIMPLE)
            acquire_buffer(aad, &aad_view, PyBUF_SIMPLE)
            acquire_buffer(plaintext, &pt_view, PyBUF_SIMPLE)
            self._check_call(&iv_view, pt_view.len + aad_view.len)
            result = PyBytes_FromStringAndSize(NULL, pt_view.len + self.icv_len)
            self.seal_raw(<const uint8_t *>iv_view.buf, <const uint8_t *>aad_view.buf,
                          aad_view.len, <const uint8_t *>pt_view.buf, pt_view.len,
                          <uint8_t *>PyBytes_AS_STRING(result))
            return result
        finally:
            buffer_release(&iv_view)
            buffer_release(&aad_view)
            buffer_release(&pt_view)

    def seal_into(self, iv, aad, plaintext, out) -> int:
        """Writes ciphertext | ICV to the start of ``out``; returns its length."""
        cdef Py_buffer iv_view, aad_view, pt_view, out_view
        buffer_clear(&iv_view)
        buffer_clear(&aad_view)
        buffer_clear(&pt_view)
        buffer_clear(&out_view)
        try:
            acquire_buffer(iv, &iv_view, PyBUF_SIMPLE)
            acquire_buffer(aad, &aad_view, PyBUF_SIMPLE)
            acquire_buffer(plaintext, &pt_view, PyBUF_SIMPLE)
            acquire_buffer(out, &out_view, PyBUF_WRITABLE)
            self._check_call(&iv_view, pt_view.len + aad_view.len)
            if out_view.len < pt_view.len + self.icv_len:
                raise ValueError(f"out holds {out_view.len} bytes, "
                                 f"{pt_view.len + self.icv_len} needed")
            self.seal_raw(<const uint8_t *>iv_view.buf, <const uint8_t *>aad_view.buf,
                          aad_view.len, <const uint8_t *>pt_view.buf, pt_view.len,
                          <uint8_t *>out_view.buf)
            return pt_view.len + self.icv_len
        finally:
            buffer_release(&iv_view)
            buffer_release(&aad_view)
            buffer_release(&pt_view)
            buffer_release(&out_view)

    def open(self, iv, aad, data) -> bytes:
        """``data`` is ciphertext | ICV; returns the plaintext or raises IntegrityError."""
        cdef Py_buffer iv_view, aad_view, ct_view
        cdef object result
        cdef Py_ssize_t length
        buffer_clear(&iv_view)
        buffer_clear(&aad_view)
        buffer_clear(&ct_view)
        try:
            acquire_buffer(iv, &iv_view, PyBUF_SIMPLE)
            acquire_buffer(aad, &aad_view, PyBUF_SIMPLE)
            acquire_buffer(data, &ct_view, PyBUF_SIMPLE)
            self._check_call(&iv_view, ct_view.len + aad_view.len)
            length = ct_view.len - self.icv_len
            if length < 0:
                raise IntegrityError()
            result = PyBytes_FromStringAndSize(NULL, length)
            if not self.open_raw(<const uint8_t *>iv_view.buf, <const uint8_t *>aad_view.buf,
                                 aad_view.len, <const uint8_t *>ct_view.buf, length,
                                 <uint8_t *>PyBytes_AS_STRING(result)):
                raise IntegrityError()
            return result
        finally:
            buffer_release(&iv_view)
            buffer_release(&aad_view)
            buffer_release(&ct_view)

    def open_into(self, iv, aad, data, out) -> int:
        """Writes the plaintext to the start of ``out``; returns its length. On IntegrityError
        that part of ``out`` is zeroed (no unauthenticated plaintext is left)."""
        cdef Py_buffer iv_view, aad_view, ct_view, out_view
        cdef Py_ssize_t length
        buffer_clear(&iv_view)
        buffer_clear(&aad_view)
        buffer_clear(&ct_view)
        buffer_clear(&out_view)
        try:
            acquire_buffer(iv, &iv_view, PyBUF_SIMPLE)
            acquire_buffer(aad, &aad_view, PyBUF_SIMPLE)
            acquire_buffer(data, &ct_view, PyBUF_SIMPLE)
            acquire_buffer(out, &out_view, PyBUF_WRITABLE)
            self._check_call(&iv_view, ct_view.len + aad_view.len)
            length = ct_view.len - self.icv_len
            if length < 0:
                raise IntegrityError()
            if out_view.len < length:
                raise ValueError(f"out holds {out_view.len} bytes, {length} needed")
            if not self.open_raw(<const uint8_t *>iv_view.buf, <const uint8_t *>aad_view.buf,
                                 aad_view.len, <const uint8_t *>ct_view.buf, length,
                                 <uint8_t *>out_view.buf):
                raise IntegrityError()
            return length
        finally:
            buffer_release(&iv_view)
            buffer_release(&aad_view)
            buffer_release(&ct_view)
            buffer_release(&out_view)


cdef class AesGcm(Aead):
    """AES-128/192/256-GCM with a 4-byte salt and 8-byte explicit IV (RFC 4106, RFC 5282)."""

    def __init__(self, key_and_salt, int icv_len=16, *, engine=None):
        self._setup(key_and_salt, icv_len, ALG_AES_GCM, engine)


cdef class ChaCha20Poly1305(Aead):
    """ChaCha20-Poly1305 for IKE and ESP (RFC 7634): 32-byte key + 4-byte salt, 8-byte IV,
    16-byte ICV. OpenSSL engine only."""

    def __init__(self, key_and_salt, int icv_len=16, *, engine=None):
        self._setup(key_and_salt, icv_len, ALG_CHACHA20_POLY1305, engine)


ALGORITHMS = ("aes-gcm", "chacha20-poly1305")


cpdef Aead make_aead(object algorithm, object key_and_salt, int icv_len=16, object engine=None):
    """The AEAD object for ``algorithm`` (``"aes-gcm"`` or ``"chacha20-poly1305"``)."""
    if algorithm == "aes-gcm":
        return AesGcm(key_and_salt, icv_len, engine=engine)
    if algorithm == "chacha20-poly1305":
        return ChaCha20Poly1305(key_and_salt, icv_len, engine=engine)
    raise ValueError(f"unknown AEAD algorithm {algorithm!r}: expected one of {ALGORITHMS}")


cdef class IkeCipher:
    """Seals and opens the IKE Encrypted payload (SK, RFC 7296 §3.14 with RFC 5282 §5) and the
    Encrypted Fragment payload (SKF, RFC 7383 §2.5) under one direction's SK_e.

    The 8-byte IV is a per-key counter (RFC 5282 §3.1: MUST NOT repeat under a key):
    ``iv_counter`` is the last value used, so a restored SA continues where it stopped.
    """

    cdef readonly Aead aead
    cdef uint64_t _iv_counter

    def __init__(self, key_and_salt, int icv_len=16, *, algorithm="aes-gcm", engine=None,
                 iv_counter=0):
        if not 0 <= iv_counter <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError("iv_counter must fit in 64 bits")
        self.aead = make_aead(algorithm, key_and_salt, icv_len, engine)
        self._iv_counter = iv_counter

    @property
    def iv_counter(self) -> int:
        return self._iv_counter

    @property
    def icv_len(self) -> int:
        return self.aead.icv_len

    cdef object _seal(self, object prefix, const uint8_t *header, Py_ssize_t header_len,
                      object inner, int pad_length):
        cdef Py_buffer prefix_view, inner_view
        cdef Py_ssize_t prefix_len, plaintext_len, payload_len, total
        cdef uint8_t *out
        cdef uint8_t iv[8]
        cdef object result
        if not 0 <= pad_length <= 255:
            raise ValueError(f"pad_length must be 0..255, got {pad_length}")
        buffer_clear(&prefix_view)
        buffer_clear(&inner_view)
        try:
            acquire_buffer(prefix, &prefix_view, PyBUF_SIMPLE)
            acquire_buffer(inner, &inner_view, PyBUF_SIMPLE)
            prefix_len = prefix_view.len
            if prefix_len < IKE_HEADER_LEN:
                raise ValueError("prefix must start with the 28-byte IKE header")
            # plaintext = inner payloads | Padding | Pad Length (RFC 7296 §3.14)
            plaintext_len = inner_view.len + pad_length + 1
            payload_len = header_len + IKE_IV_LEN + plaintext_len + self.aead.icv_len
            if payload_len > 0xFFFF:
                raise ValueError(f"Encrypted payload of {payload_len} bytes exceeds 65535")
            total = prefix_len + payload_len
            if self._iv_counter == 0xFFFFFFFFFFFFFFFF:
                raise SequenceExhausted("IKE IV counter exhausted: rekey the IKE SA")
            self._iv_counter += 1
            store_be64(iv, self._iv_counter)
            result = PyBytes_FromStringAndSize(NULL, total)
            out = <uint8_t *>PyBytes_AS_STRING(result)
            memcpy(out, prefix_view.buf, prefix_len)
            # The IKE header Length covers IV, ciphertext and ICV, and it is in the AAD.
            store_be32(out + 24, <uint32_t>total)
            memcpy(out + prefix_len, header, header_len)
            out[prefix_len + 2] = <uint8_t>(payload_len >> 8)
            out[prefix_len + 3] = <uint8_t>(payload_len & 0xFF)
            memcpy(out + prefix_len + header_len, iv, 8)
            out += prefix_len + header_len + IKE_IV_LEN
            memcpy(out, inner_view.buf, inner_view.len)
            memset(out + inner_view.len, 0, pad_length)
            out[plaintext_len - 1] = <uint8_t>pad_length
            # AAD = IKE header through the SK/SKF header (RFC 5282 §5.1, RFC 7383 §2.5).
            self.aead.seal_raw(iv, <const uint8_t *>PyBytes_AS_STRING(result),
                               prefix_len + header_len, out, plaintext_len, out)
            return result
        finally:
            buffer_release(&prefix_view)
            buffer_release(&inner_view)

    cdef object _open(self, object message, Py_ssize_t offset, Py_ssize_t header_len,
                      int *fragment):
        cdef Py_buffer view
        cdef const uint8_t *data
        cdef Py_ssize_t total, body, length, inner_len
        cdef int pad_length, number, count
        cdef PyObject *plain = NULL
        cdef uint8_t *plain_data
        buffer_clear(&view)
        try:
            acquire_buffer(message, &view, PyBUF_SIMPLE)
            data = <const uint8_t *>view.buf
            total = view.len
            if offset < IKE_HEADER_LEN:
                raise ValueError("the Encrypted payload cannot start inside the IKE header")
            if offset + header_len > total:
                raise MalformedMessage("truncated Encrypted payload header", offset)
            if load_be32(data + 24) != total:
                raise MalformedMessage("IKE header Length differs from the message size", 24)
            if load_be16(data + offset + 2) != total - offset:
                # RFC 7296 §3.14: the Encrypted payload is the last one in the message.
                raise MalformedMessage("Encrypted payload does not end the message", offset + 2)
            if header_len == SKF_HEADER_LEN:
                number = load_be16(data + offset + 4)
                count = load_be16(data + offset + 6)
                if number == 0 or number > count:
                    raise MalformedMessage("fragment number outside 1..Total Fragments",
                                           offset + 4)
                fragment[0] = number
                fragment[1] = count
            body = total - offset - header_len
            length = body - IKE_IV_LEN - self.aead.icv_len
            if length < 1:
                raise MalformedMessage("Encrypted payload too short for IV, Pad Length and ICV",
                                       offset + header_len)
            plain = new_bytes_raw(NULL, length)
            plain_data = <uint8_t *>bytes_data_raw(plain)
            if not self.aead.open_raw(data + offset + header_len, data, offset + header_len,
                                      data + offset + header_len + IKE_IV_LEN, length,
                                      plain_data):
                raise IntegrityError()
            pad_length = plain_data[length - 1]
            inner_len = length - 1 - pad_length
            if inner_len < 0:
                raise MalformedMessage("Pad Length longer than the decrypted data",
                                       offset + header_len + IKE_IV_LEN + length - 1)
            _PyBytes_Resize(&plain, inner_len)
            return (data[offset], <object>plain)
        finally:
            Py_XDECREF(plain)
            buffer_release(&view)

    def seal_sk(self, prefix, int next_payload, inner, *, int pad_length=0) -> bytes:
        """``prefix`` = IKE header (+ unprotected payloads), with the Next Payload chain
        already ending in SK (46). Returns the whole message; the IKE header Length and the
        SK Payload Length are filled in here."""
        cdef uint8_t header[SK_HEADER_LEN]
        if not 0 <= next_payload <= 255:
            raise ValueError(f"next_payload must be 0..255, got {next_payload}")
        header[0] = <uint8_t>next_payload
        header[1] = 0
        return self._seal(prefix, header, SK_HEADER_LEN, inner, pad_length)

    def seal_skf(self, prefix, int next_payload, int fragment_number, int total_fragments,
                 data, *, int pad_length=0) -> bytes:
        """Like seal_sk for one Encrypted Fragment (RFC 7383 §2.5); the AAD includes the
        8-byte SKF header. ``next_payload`` is the first inner payload's type in fragment 1
        and 0 in the others."""
        cdef uint8_t header[SKF_HEADER_LEN]
        if not 0 <= next_payload <= 255:
            raise ValueError(f"next_payload must be 0..255, got {next_payload}")
        if not 1 <= fragment_number <= total_fragments <= 0xFFFF:
            raise ValueError("need 1 <= fragment_number <= total_fragments <= 65535")
        header[0] = <uint8_t>next_payload
        header[1] = 0
        header[4] = <uint8_t>(fragment_number >> 8)
        header[5] = <uint8_t>(fragment_number & 0xFF)
        header[6] = <uint8_t>(total_fragments >> 8)
        header[7] = <uint8_t>(total_fragments & 0xFF)
        return self._seal(prefix, header, SKF_HEADER_LEN, data, pad_length)

    def open_sk(self, message, Py_ssize_t sk_offset) -> tuple:
        """Opens the SK payload at ``sk_offset`` of a whole IKE message (no non-ESP marker).
        Returns ``(next_payload, inner_payloads)``; raises MalformedMessage or IntegrityError."""
        cdef int fragment[2]
        return self._open(message, sk_offset, SK_HEADER_LEN, fragment)

    def open_skf(self, message, Py_ssize_t skf_offset) -> tuple:
        """Opens the SKF payload at ``skf_offset``. Returns ``(next_payload, fragment_number,
        total_fragments, data)``."""
        cdef int fragment[2]
        next_payload, data = self._open(message, skf_offset, SKF_HEADER_LEN, fragment)
        return (next_payload, fragment[0], fragment[1], data)
