# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, binding=False, embedsignature.format=clinic
# binding=False: the functions are builtins; calling a Cython function object cost ~0.005 of an
# IKE SA key schedule call. embedsignature.format=clinic keeps their signatures for inspect.
"""IKEv2 PRFs, prf+ and the key schedules built on them (RFC 7296 §2.13-2.18), in one native call each.

The keyed state of a PRF is computed once per key and reused for every prf+ block:

* HMAC (RFC 2104): the chaining values after the K0 ^ ipad and K0 ^ opad blocks are kept; each
  MAC starts from them (32 or 64 bytes, no allocation) and pads the message tail itself. A prf+
  block of HMAC-SHA-256 over Ni | Nr | SPIi | SPIr is three compressions, the minimum.
  HMAC-SHA-256 on a CPU with the SHA extensions runs on the kernel of ikecore_sha256_ni.h (the
  inner and outer hash in one function, the state in registers; the K0 ^ ipad and K0 ^ opad
  blocks of a key, which do not depend on each other, interleaved on one 2-lane compression,
  and a key of 16, 32, 48 or 64 bytes read in place). The other hashes, and SHA-256
  elsewhere, call libcrypto's one-block compression, SHA*_Init/SHA*_Transform: deprecated in
  OpenSSL 3.0 (absent from builds with no-deprecated) but exported by every 3.x, and kept on
  purpose. The non-deprecated ways to resume a keyed state cost more than the hashing, measured
  per HMAC of a 113-byte prf+ block against the SHA256_Transform path: EVP_MD_CTX_copy_ex from
  keyed contexts + Update + Final 1.1-1.8x the time (the provider allocates per copy),
  EVP_MAC_CTX_dup + update + final 3.0-4.9x; a C loop of the whole key schedule on
  EVP_MD_CTX_copy_ex, without any Python, reaches only 6.6x the stdlib-hmac schedule and 4.9-5.0x
  the best pure-Python one (benches/test_prf.py; the targets are 12x and 6x).
* AES-XCBC-PRF-128 (RFC 3566, RFC 4434) and AES-CMAC-PRF-128 (RFC 4493, RFC 4615): one AES-128-CBC
  context keyed once; each MAC resets its IV to zero, CBC-encrypts all but the last block and
  XORs the last block with the subkey the algorithm picks for a complete or a padded block.

Every function leaves the OpenSSL error queue empty and wipes the native buffers that held key
material (OPENSSL_cleanse). The returned ``bytes`` are the caller's to keep.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongAndOverflow, PyLong_Check
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, PyTypeObject
from libc.string cimport memcpy, memset

from ikecore._fast._libcrypto cimport (
    EVP_CIPHER,
    EVP_CIPHER_CTX,
    EVP_CIPHER_CTX_free,
    EVP_CIPHER_CTX_new,
    EVP_CIPHER_CTX_set_padding,
    EVP_CIPHER_fetch,
    EVP_EncryptInit_ex2,
    EVP_EncryptUpdate,
    ERR_clear_error,
    OPENSSL_cleanse,
    SHA1_Init,
    SHA1_Transform,
    SHA256_CTX,
    SHA256_Init,
    SHA256_Transform,
    SHA384_Init,
    SHA512_CTX,
    SHA512_Init,
    SHA512_Transform,
    SHA_CTX,
)

cdef extern from *:
    """
    /* SHA*_Init/_Transform are deprecated in OpenSSL 3.0 but exported; see the module docstring. */
    #if defined(__GNUC__)
    #pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    #elif defined(_MSC_VER)
    #pragma warning(disable: 4996)
    #endif
    """

cdef extern from "ikecore_sha256_ni.h" nogil:
    int ikecore_sha_ni_supported()
    void ikecore_hmac_sha256_ni_key(const unsigned char *key, size_t key_len, unsigned int *inner,
                                    unsigned int *outer)
    void ikecore_hmac_sha256_ni(const unsigned int *inner, const unsigned int *outer,
                                const unsigned char *message, size_t blocks, const unsigned char *tail,
                                size_t tail_blocks, unsigned char *out)

# IANA Transform Type 2 ids (RFC 7296 §3.3.2, RFC 4434, RFC 4868, RFC 4615).
cdef enum:
    PRF_HMAC_SHA1 = 2
    PRF_AES128_XCBC = 4
    PRF_HMAC_SHA2_256 = 5
    PRF_HMAC_SHA2_384 = 6
    PRF_HMAC_SHA2_512 = 7
    PRF_AES128_CMAC = 8

cdef enum:
    MAX_OUT = 64          # largest PRF output (HMAC-SHA-512)
    MAX_BLOCKS = 255      # the prf+ counter is one octet (RFC 7296 §2.13)
    AES_BLOCK = 16
    STACK_BYTES = 1024    # scratch kept on the stack; larger requests are allocated
    CHAIN_BYTES = 256     # CBC-MAC output is discarded in chunks of this size
    PAD_ROOM = 144        # room after a prf+ message for its hash padding (a block + 16 bytes)

ctypedef unsigned char uchar

cdef union _HashCtx:
    SHA_CTX sha1
    SHA256_CTX sha256
    SHA512_CTX sha512

cdef struct _Sha256NiKey:
    # the HMAC states after K0 ^ ipad and K0 ^ opad in the kernel's packed layout
    unsigned int inner[8]
    unsigned int outer[8]


cdef struct _PrfState:
    int prf_id
    size_t out_len
    size_t hash_state_len    # largest hash block of the portable HMAC keys so far (what _state_wipe clears)
    size_t tail_used         # bytes of ``tail`` written so far (what _state_wipe clears)
    # HMAC: hash states after absorbing K0 ^ ipad and K0 ^ opad (RFC 2104)
    _HashCtx inner
    _HashCtx outer
    _HashCtx work
    uchar tail[256]          # the padded last block(s) of a hash
    uchar outer_tail[128]    # the outer hash's only block: inner digest | padding (set at keying)
    # XCBC / CMAC: AES-128-CBC keyed with K1 (XCBC) or K (CMAC); subkey XORed into a complete
    # last block (XCBC K2, CMAC K1) or into a padded one (XCBC K3, CMAC K2)
    EVP_CIPHER_CTX *cipher
    uchar subkey_complete[AES_BLOCK]
    uchar subkey_padded[AES_BLOCK]
    # HMAC-SHA-256 on the SHA-NI kernel (ikecore_sha256_ni.h): inner/outer in its packed layout
    bint sha_ni              # the current key is on the kernel
    bint sha_ni_used         # some key was (what _state_wipe clears)
    _Sha256NiKey ni


# SHA-NI is used where the CPU has it (_set_sha_ni turns it off, for the tests of both paths)
cdef bint _SHA_NI_PRESENT = ikecore_sha_ni_supported() != 0
cdef bint _sha_ni = _SHA_NI_PRESENT

cdef const EVP_CIPHER *_AES_128_CBC = EVP_CIPHER_fetch(NULL, b"AES-128-CBC", NULL)
if _AES_128_CBC == NULL:
    ERR_clear_error()
    raise ImportError("libcrypto has no AES-128-CBC (needed by PRF_AES128_XCBC / PRF_AES128_CMAC)")

cdef uchar _ZERO_BLOCK[AES_BLOCK]
memset(_ZERO_BLOCK, 0, AES_BLOCK)


# --- argument checks --------------------------------------------------------------------------

cdef inline size_t _output_length(long prf_id) noexcept nogil:
    if prf_id == PRF_HMAC_SHA2_256:
        return 32
    if prf_id == PRF_HMAC_SHA2_384:
        return 48
    if prf_id == PRF_HMAC_SHA2_512:
        return 64
    if prf_id == PRF_HMAC_SHA1:
        return 20
    if prf_id == PRF_AES128_XCBC or prf_id == PRF_AES128_CMAC:
        return 16
    return 0


cdef int _prf_id(object value, str name) except -1:
    """The PRF id as a C int; ValueError for ids this module does not implement."""
    cdef int overflow = 0
    cdef long prf_id
    if not PyLong_Check(value):
        raise TypeError(f"{name} must be an int (a PrfId), not {type(value).__name__}")
    prf_id = PyLong_AsLongAndOverflow(value, &overflow)
    if overflow or _output_length(prf_id) == 0:
        raise ValueError(
            f"unknown or unsupported PRF id {value!r} for {name} "
            "(supported: 2 HMAC_SHA1, 4 AES128_XCBC, 5/6/7 HMAC_SHA2_256/384/512, 8 AES128_CMAC)"
        )
    return <int>prf_id


cdef Py_ssize_t _length(object value, str name) except -1:
    cdef int overflow = 0
    cdef long length
    if not PyLong_Check(value):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    length = PyLong_AsLongAndOverflow(value, &overflow)
    if overflow or length < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return length


cdef int _check_blocks(size_t wanted, size_t out_len, int prf_id) except -1:
    if wanted > <size_t>(MAX_BLOCKS * out_len):
        raise ValueError(
            f"prf+ of PRF {prf_id} is limited to 255 blocks ({MAX_BLOCKS * out_len} bytes); "
            f"{wanted} bytes were requested (RFC 7296 §2.13)"
        )
    return 0


cdef struct _Arg:
    const uchar *ptr
    size_t len
    Py_buffer view
    bint held


cdef inline int _arg(_Arg *arg, object obj, str name) except -1:
    """Point ``arg`` at the bytes of a bytes-like object (bytes without acquiring a buffer)."""
    if PyBytes_CheckExact(obj):
        arg.ptr = <const uchar *>PyBytes_AS_STRING(obj)
        arg.len = <size_t>PyBytes_GET_SIZE(obj)
        return 0
    # apart, so that the bytes case above is inlined into every caller
    return _arg_buffer(arg, obj, name)


cdef int _arg_buffer(_Arg *arg, object obj, str name) except -1:
    if not PyObject_CheckBuffer(obj):
        raise TypeError(f"{name} must be bytes-like (bytes, bytearray, memoryview), not {type(obj).__name__}")
    try:
        PyObject_GetBuffer(obj, &arg.view, PyBUF_SIMPLE)
    except BufferError:
        raise ValueError(f"{name} must be a C-contiguous buffer") from None
    arg.held = True
    arg.ptr = <const uchar *>arg.view.buf
    arg.len = <size_t>arg.view.len
    return 0


cdef inline void _release(_Arg *args, int count) noexcept:
    cdef int i
    for i in range(count):
        if args[i].held:
            PyBuffer_Release(&args[i].view)
            args[i].held = False


cdef inline int _spi(_Arg *arg, object obj, str name) except -1:
    if PyBytes_CheckExact(obj) and PyBytes_GET_SIZE(obj) == 8:
        arg.ptr = <const uchar *>PyBytes_AS_STRING(obj)
        arg.len = 8
        return 0
    return _spi_other(arg, obj, name)


cdef int _spi_other(_Arg *arg, object obj, str name) except -1:
    _arg(arg, obj, name)
    if arg.len != 8:
        raise ValueError(f"{name} must be 8 bytes (an IKE SPI), got {arg.len}")
    return 0


# --- scratch memory ----------------------------------------------------------------------------

cdef struct _Scratch:
    uchar *ptr
    size_t size
    # [public_from, public_to) holds only public bytes (none unless set), which the wipe skips
    size_t public_from
    size_t public_to
    uchar local[STACK_BYTES]


cdef inline int _scratch(_Scratch *s, size_t size) except -1:
    s.size = size
    s.public_from = s.public_to = 0
    if size <= STACK_BYTES:
        s.ptr = s.local
        return 0
    s.ptr = <uchar *>PyMem_Malloc(size)
    if s.ptr == NULL:
        s.size = 0
        raise MemoryError()
    return 0


cdef inline void _scratch_wipe(_Scratch *s) noexcept:
    if s.size:
        if s.public_from:
            OPENSSL_cleanse(s.ptr, s.public_from)
        OPENSSL_cleanse(s.ptr + s.public_to, s.size - s.public_to)
        if s.ptr != s.local:
            PyMem_Free(s.ptr)
        s.size = 0


# --- keyed PRF state ---------------------------------------------------------------------------

cdef inline size_t _hash_block(int prf_id) noexcept nogil:
    return 128 if prf_id == PRF_HMAC_SHA2_384 or prf_id == PRF_HMAC_SHA2_512 else 64


cdef inline void _hash_init(int prf_id, _HashCtx *ctx) noexcept nogil:
    if prf_id == PRF_HMAC_SHA2_256:
        SHA256_Init(&ctx.sha256)
    elif prf_id == PRF_HMAC_SHA2_384:
        SHA384_Init(&ctx.sha512)
    elif prf_id == PRF_HMAC_SHA2_512:
        SHA512_Init(&ctx.sha512)
    else:
        SHA1_Init(&ctx.sha1)


cdef inline void _compress(int prf_id, _HashCtx *ctx, const uchar *block) noexcept nogil:
    if prf_id == PRF_HMAC_SHA2_256:
        SHA256_Transform(&ctx.sha256, block)
    elif prf_id == PRF_HMAC_SHA1:
        SHA1_Transform(&ctx.sha1, block)
    else:
        SHA512_Transform(&ctx.sha512, block)


cdef inline void _copy_words(int prf_id, _HashCtx *dst, const _HashCtx *src) noexcept nogil:
    # only the chaining value (the first member of each struct): counters and buffers are unused
    if prf_id == PRF_HMAC_SHA2_256:
        memcpy(dst.sha256.h, src.sha256.h, 32)
    elif prf_id == PRF_HMAC_SHA1:
        dst.sha1.h0 = src.sha1.h0
        dst.sha1.h1 = src.sha1.h1
        dst.sha1.h2 = src.sha1.h2
        dst.sha1.h3 = src.sha1.h3
        dst.sha1.h4 = src.sha1.h4
    else:
        memcpy(dst.sha512.h, src.sha512.h, 64)


cdef inline void _put32(uchar *out, unsigned int word) noexcept nogil:
    out[0] = <uchar>(word >> 24)
    out[1] = <uchar>(word >> 16)
    out[2] = <uchar>(word >> 8)
    out[3] = <uchar>word


cdef inline void _put64(uchar *out, unsigned long long word) noexcept nogil:
    _put32(out, <unsigned int>(word >> 32))
    _put32(out + 4, <unsigned int>word)


cdef inline void _words_out(_PrfState *st, const _HashCtx *ctx, uchar *out) noexcept nogil:
    """The digest: the chaining value in big-endian byte order."""
    cdef int i
    if st.prf_id == PRF_HMAC_SHA2_256:
        for i in range(8):
            _put32(out + 4 * i, ctx.sha256.h[i])
    elif st.prf_id == PRF_HMAC_SHA1:
        _put32(out, ctx.sha1.h0)
        _put32(out + 4, ctx.sha1.h1)
        _put32(out + 8, ctx.sha1.h2)
        _put32(out + 12, ctx.sha1.h3)
        _put32(out + 16, ctx.sha1.h4)
    else:
        # SHA-384 is SHA-512 with other initial words, cut to its first six
        for i in range(<int>(st.out_len // 8)):
            _put64(out + 8 * i, ctx.sha512.h[i])


cdef inline size_t _pad(int prf_id, uchar *message, size_t n, size_t prefix) noexcept nogil:
    """Write the FIPS 180-4 §5.1 padding after ``message[:n]`` (which has absorbed ``prefix``
    bytes before it): 0x80, zeros, the length in bits in the last 8 (SHA-1, SHA-256) or 16
    (SHA-384/512) bytes of the last block. Needs up to a block + 16 bytes of room; returns the
    padded length."""
    cdef size_t block = _hash_block(prf_id)
    cdef size_t length_field = 16 if block == 128 else 8
    cdef size_t total = ((n + 1 + length_field + block - 1) // block) * block
    message[n] = 0x80
    memset(message + n + 1, 0, total - n - 1 - 8)
    _put64(message + total - 8, <unsigned long long>(prefix + n) * 8)
    return total


cdef void _hash_finish(_PrfState *st, _HashCtx *ctx, size_t prefix, const uchar *data, size_t n,
                       uchar *out) noexcept nogil:
    """Hash ``data`` on from ``ctx`` (which has absorbed ``prefix`` bytes) and write the digest.

    FIPS 180-4 §5.1 padding: 0x80, zeros, then the message length in bits in the last 8 (SHA-1,
    SHA-256) or 16 (SHA-384/512) bytes of the last block.
    """
    cdef size_t block = _hash_block(st.prf_id)
    cdef size_t padded
    while n >= block:
        _compress(st.prf_id, ctx, data)
        data += block
        n -= block
        prefix += block
    memcpy(st.tail, data, n)
    padded = _pad(st.prf_id, st.tail, n, prefix)
    if padded > st.tail_used:
        st.tail_used = padded
    _compress(st.prf_id, ctx, st.tail)
    if padded > block:
        _compress(st.prf_id, ctx, st.tail + block)
    _words_out(st, ctx, out)


cdef void _hmac_key(_PrfState *st, const uchar *key, size_t key_len) noexcept nogil:
    # RFC 2104: K0 = H(K) if K is longer than the block, else K; zero-padded to the block size
    # inner = H(K0 ^ ipad | text), outer = H(K0 ^ opad | inner): keep both states after one block
    cdef uchar hashed_key[MAX_OUT]
    cdef uchar pad[128]
    cdef size_t block = _hash_block(st.prf_id)
    cdef size_t i
    cdef bint long_key = key_len > block
    st.sha_ni = _sha_ni and st.prf_id == PRF_HMAC_SHA2_256
    if long_key or not st.sha_ni:
        # the portable states (and, for a long key, work and tail) will hold key material
        if block > st.hash_state_len:
            st.hash_state_len = block
    if long_key:
        _hash_init(st.prf_id, &st.work)
        _hash_finish(st, &st.work, 0, key, key_len, hashed_key)
        key = hashed_key
        key_len = st.out_len
    if st.sha_ni:
        # the kernel XORs in ipad and opad and runs the two first blocks together
        if key_len % 16 == 0:
            # K0's zero padding is whole 16-byte words, which the kernel makes: no copy
            ikecore_hmac_sha256_ni_key(key, key_len, st.ni.inner, st.ni.outer)
        else:
            memcpy(pad, key, key_len)
            memset(pad + key_len, 0, block - key_len)
            ikecore_hmac_sha256_ni_key(pad, block, st.ni.inner, st.ni.outer)
            OPENSSL_cleanse(pad, key_len)
        st.sha_ni_used = True
    else:
        for i in range(block):
            pad[i] = (key[i] if i < key_len else 0) ^ 0x36
        _hash_init(st.prf_id, &st.inner)
        _compress(st.prf_id, &st.inner, pad)
        for i in range(block):
            pad[i] = (key[i] if i < key_len else 0) ^ 0x5c
        _hash_init(st.prf_id, &st.outer)
        _compress(st.prf_id, &st.outer, pad)
        # the outer hash always covers K0 ^ opad and one digest: its padding never changes
        _pad(st.prf_id, st.outer_tail, st.out_len, block)
        OPENSSL_cleanse(pad, block)
    if long_key:
        OPENSSL_cleanse(hashed_key, MAX_OUT)


cdef inline void _hmac_outer(_PrfState *st, uchar *out) noexcept nogil:
    # the inner digest is already in outer_tail, in front of its padding
    _copy_words(st.prf_id, &st.work, &st.outer)
    _compress(st.prf_id, &st.work, st.outer_tail)
    _words_out(st, &st.work, out)


cdef inline void _hmac(_PrfState *st, const uchar *data, size_t n, uchar *out) noexcept nogil:
    cdef size_t whole, padded
    if st.sha_ni:
        # the whole blocks straight from ``data``, the rest padded in ``tail``
        whole = n // 64
        memcpy(st.tail, data + 64 * whole, n - 64 * whole)
        padded = _pad(st.prf_id, st.tail, n - 64 * whole, 64 + 64 * whole)
        if padded > st.tail_used:
            st.tail_used = padded
        ikecore_hmac_sha256_ni(st.ni.inner, st.ni.outer, data, whole, st.tail, padded // 64, out)
        return
    _copy_words(st.prf_id, &st.work, &st.inner)
    _hash_finish(st, &st.work, _hash_block(st.prf_id), data, n, st.outer_tail)
    _hmac_outer(st, out)


cdef inline void _hmac_padded(_PrfState *st, const uchar *message, size_t padded, uchar *out) noexcept nogil:
    """HMAC of a message already followed by its padding (see ``_pad``)."""
    cdef size_t block = _hash_block(st.prf_id), offset = 0
    if st.sha_ni:
        ikecore_hmac_sha256_ni(st.ni.inner, st.ni.outer, message, padded // 64, NULL, 0, out)
        return
    _copy_words(st.prf_id, &st.work, &st.inner)
    while offset < padded:
        _compress(st.prf_id, &st.work, message + offset)
        offset += block
    _words_out(st, &st.work, st.outer_tail)
    _hmac_outer(st, out)


cdef int _aes_mac(_PrfState *st, const uchar *data, size_t n, uchar *out) noexcept nogil:
    # CBC-MAC over all but the last block, then E(last ^ subkey ^ chain) (RFC 3566 §4, RFC 4493 §2.4).
    # The last block is complete only for a non-empty message whose length is a multiple of 16;
    # otherwise it is padded with 0x80 00.. (both RFCs).
    cdef uchar last[AES_BLOCK]
    cdef uchar chain[CHAIN_BYTES]
    cdef size_t lead = ((n - 1) // AES_BLOCK) * AES_BLOCK if n else 0
    cdef size_t rest = n - lead
    cdef size_t pos = 0, step
    cdef int outl, i, rc = -1
    cdef const uchar *subkey
    if EVP_EncryptInit_ex2(st.cipher, NULL, NULL, _ZERO_BLOCK, NULL) != 1:
        return -1
    while pos < lead:
        step = lead - pos
        if step > CHAIN_BYTES:
            step = CHAIN_BYTES
        if EVP_EncryptUpdate(st.cipher, chain, &outl, data + pos, <int>step) != 1:
            break
        pos += step
    else:
        if rest == AES_BLOCK:
            memcpy(last, data + lead, AES_BLOCK)
            subkey = st.subkey_complete
        else:
            memset(last, 0, AES_BLOCK)
            memcpy(last, data + lead, rest)
            last[rest] = 0x80
            subkey = st.subkey_padded
        for i in range(AES_BLOCK):
            last[i] ^= subkey[i]
        if EVP_EncryptUpdate(st.cipher, out, &outl, last, AES_BLOCK) == 1:
            rc = 0
    OPENSSL_cleanse(last, AES_BLOCK)
    if lead:
        OPENSSL_cleanse(chain, CHAIN_BYTES if lead > CHAIN_BYTES else lead)
    return rc


cdef inline void _cmac_double(const uchar *src, uchar *dst) noexcept nogil:
    # RFC 4493 §2.3: dst = src << 1, XOR Rb = 0x87 if the top bit of src was set
    cdef int i
    cdef uchar carry = 0
    for i in range(AES_BLOCK - 1, -1, -1):
        dst[i] = <uchar>((src[i] << 1) | carry)
        carry = src[i] >> 7
    if carry:
        dst[AES_BLOCK - 1] ^= 0x87


cdef int _aes_key16(_PrfState *st, const uchar *key) noexcept nogil:
    cdef uchar constants[3 * AES_BLOCK]
    cdef uchar derived[3 * AES_BLOCK]
    cdef int outl, i, rc = -1
    if st.cipher == NULL:
        st.cipher = EVP_CIPHER_CTX_new()
        if st.cipher == NULL:
            return -1
    if EVP_EncryptInit_ex2(st.cipher, _AES_128_CBC, key, _ZERO_BLOCK, NULL) != 1:
        return -1
    EVP_CIPHER_CTX_set_padding(st.cipher, 0)
    if st.prf_id == PRF_AES128_CMAC:
        # RFC 4493 §2.3: L = AES-128(K, 0^128); K1 = double(L); K2 = double(K1)
        if EVP_EncryptUpdate(st.cipher, derived, &outl, _ZERO_BLOCK, AES_BLOCK) == 1:
            _cmac_double(derived, st.subkey_complete)
            _cmac_double(st.subkey_complete, st.subkey_padded)
            rc = 0
        OPENSSL_cleanse(derived, AES_BLOCK)
        return rc
    # RFC 3566 §4: K1 = E(K, 0x01^16), K2 = E(K, 0x02^16), K3 = E(K, 0x03^16); MAC keyed with K1
    for i in range(3):
        memset(constants + i * AES_BLOCK, i + 1, AES_BLOCK)
        if (EVP_EncryptInit_ex2(st.cipher, NULL, NULL, _ZERO_BLOCK, NULL) != 1
                or EVP_EncryptUpdate(st.cipher, derived + i * AES_BLOCK, &outl,
                                     constants + i * AES_BLOCK, AES_BLOCK) != 1):
            break
    else:
        memcpy(st.subkey_complete, derived + AES_BLOCK, AES_BLOCK)
        memcpy(st.subkey_padded, derived + 2 * AES_BLOCK, AES_BLOCK)
        if EVP_EncryptInit_ex2(st.cipher, NULL, derived, _ZERO_BLOCK, NULL) == 1:
            rc = 0
    OPENSSL_cleanse(derived, sizeof(derived))
    return rc


cdef int _aes_key(_PrfState *st, const uchar *key, size_t key_len) noexcept nogil:
    cdef uchar fixed[AES_BLOCK]
    cdef int rc
    if key_len == AES_BLOCK:
        return _aes_key16(st, key)
    if st.prf_id == PRF_AES128_XCBC and key_len < AES_BLOCK:
        # RFC 4434 §2: a shorter key is padded on the right with zero bits to 128 bits
        memset(fixed, 0, AES_BLOCK)
        memcpy(fixed, key, key_len)
    else:
        # RFC 4434 §2 (longer keys) and RFC 4615 §3 (any length but 16): K = MAC(0^128, key)
        if _aes_key16(st, _ZERO_BLOCK) < 0 or _aes_mac(st, key, key_len, fixed) < 0:
            return -1
    rc = _aes_key16(st, fixed)
    OPENSSL_cleanse(fixed, AES_BLOCK)
    return rc


cdef int _state_key(_PrfState *st, int prf_id, const uchar *key, size_t key_len) except -1:
    """Key (or re-key, with the same or another PRF) ``st``, made by ``_state_new``."""
    st.prf_id = prf_id
    st.out_len = _output_length(prf_id)
    if prf_id == PRF_AES128_XCBC or prf_id == PRF_AES128_CMAC:
        if _aes_key(st, key, key_len) < 0:
            ERR_clear_error()
            raise MemoryError("libcrypto could not key AES-128-CBC")
    else:
        _hmac_key(st, key, key_len)
    return 0


cdef inline void _state_new(_PrfState *st) noexcept nogil:
    st.cipher = NULL
    st.sha_ni = st.sha_ni_used = False
    st.prf_id = 0
    st.hash_state_len = st.tail_used = 0


cdef void _state_wipe(_PrfState *st) noexcept nogil:
    if st.cipher != NULL:
        EVP_CIPHER_CTX_free(st.cipher)   # frees (and clears) the AES key schedule
        st.cipher = NULL
        OPENSSL_cleanse(st.subkey_complete, 2 * AES_BLOCK)
    if st.hash_state_len:
        # only the chaining values and the tail bytes the hashes used
        OPENSSL_cleanse(&st.inner, st.hash_state_len)
        OPENSSL_cleanse(&st.outer, st.hash_state_len)
        OPENSSL_cleanse(&st.work, st.hash_state_len)
        OPENSSL_cleanse(st.outer_tail, st.hash_state_len)
    if st.sha_ni_used:
        OPENSSL_cleanse(&st.ni, sizeof(st.ni))
    if st.tail_used:
        # the padded message tails of the MACs
        OPENSSL_cleanse(st.tail, st.tail_used)


cdef inline int _mac(_PrfState *st, const uchar *data, size_t n, uchar *out) except -1:
    if st.prf_id != PRF_AES128_XCBC and st.prf_id != PRF_AES128_CMAC:
        _hmac(st, data, n, out)
        return 0
    if _aes_mac(st, data, n, out) < 0:
        ERR_clear_error()
        raise MemoryError("libcrypto AES-128-CBC failed")
    return 0


cdef int _expand(_PrfState *st, uchar *work, size_t seed_len, uchar *out, size_t out_len) except -1:
    """prf+ (RFC 7296 §2.13) of the keyed ``st`` over the seed at ``work + MAX_OUT``.

    ``work`` holds MAX_OUT bytes of room for T(n-1), the seed, one byte for the counter and
    PAD_ROOM bytes, so that every block's input is contiguous, the seed is written once, and an
    HMAC hashes the input in place: T2, T3, ... have the same length, so their padding (written
    after the counter) is the same and is written once.
    """
    cdef size_t h = st.out_len, done = 0, take, padded = 0
    cdef size_t block = _hash_block(st.prf_id)
    cdef bint hmac = st.prf_id != PRF_AES128_XCBC and st.prf_id != PRF_AES128_CMAC
    cdef uchar *message = work + MAX_OUT
    cdef uchar *t = work + MAX_OUT - h    # T(n), where the next block's input begins
    cdef size_t message_len = seed_len + 1
    cdef uchar n = 1
    while done < out_len:
        # T1 = prf(K, S | 0x01);  Tn = prf(K, T(n-1) | S | n)
        # (every MAC reads all of its input before it writes its output: T(n) may replace T(n-1))
        work[MAX_OUT + seed_len] = n
        if not hmac:
            _mac(st, message, message_len, t)
        else:
            if n <= 2:
                padded = _pad(st.prf_id, message, message_len, block)
            _hmac_padded(st, message, padded, t)
        take = out_len - done
        if take > h:
            take = h
        memcpy(out + done, t, take)
        done += take
        message = t
        message_len = h + seed_len + 1
        n += 1
    return 0


cdef inline object _bytes(const uchar *ptr, size_t n):
    return PyBytes_FromStringAndSize(<const char *>ptr, <Py_ssize_t>n)


# --- public functions --------------------------------------------------------------------------

def output_length(prf_id) -> int:
    """Output length of the PRF in bytes (= its preferred key length, RFC 7296 §2.13)."""
    return _output_length(_prf_id(prf_id, "prf_id"))


def _set_sha_ni(bint enabled) -> bool:
    """Use the SHA-NI kernel for HMAC-SHA-256 (where the CPU has it) or not; returns the previous
    setting. For the tests, which run the vectors and the oracle over both paths."""
    global _sha_ni
    previous = _sha_ni
    _sha_ni = enabled and _SHA_NI_PRESENT
    return previous


def _sha_ni_present() -> bool:
    """Whether this CPU has the SHA extensions (and this build the kernel)."""
    return _SHA_NI_PRESENT


def prf(prf_id, key, data) -> bytes:
    """prf(K, S) of RFC 7296 §2.13 with the key rules of RFC 2104, RFC 4434 and RFC 4615."""
    cdef int alg = _prf_id(prf_id, "prf_id")
    cdef _Arg args[2]
    cdef _PrfState st
    cdef uchar out[MAX_OUT]
    args[0].held = args[1].held = False
    _state_new(&st)
    try:
        _arg(&args[0], key, "key")
        _arg(&args[1], data, "data")
        _state_key(&st, alg, args[0].ptr, args[0].len)
        _mac(&st, args[1].ptr, args[1].len, out)
        return _bytes(out, st.out_len)
    finally:
        _release(args, 2)
        _state_wipe(&st)
        OPENSSL_cleanse(out, MAX_OUT)


def prf_plus(prf_id, key, seed, length) -> bytes:
    """prf+(K, S) = T1 | T2 | ... cut to ``length`` bytes (RFC 7296 §2.13), at most 255 blocks."""
    cdef int alg = _prf_id(prf_id, "prf_id")
    cdef Py_ssize_t wanted = _length(length, "length")
    cdef _Arg args[2]
    cdef _PrfState st
    cdef _Scratch work
    cdef bytes result
    _check_blocks(wanted, _output_length(alg), alg)
    args[0].held = args[1].held = False
    work.size = 0
    _state_new(&st)
    try:
        _arg(&args[0], key, "key")
        _arg(&args[1], seed, "seed")
        _scratch(&work, MAX_OUT + args[1].len + 1 + PAD_ROOM)
        memcpy(work.ptr + MAX_OUT, args[1].ptr, args[1].len)
        _state_key(&st, alg, args[0].ptr, args[0].len)
        result = PyBytes_FromStringAndSize(NULL, wanted)
        _expand(&st, work.ptr, args[1].len, <uchar *>PyBytes_AS_STRING(result), wanted)
        return result
    finally:
        _release(args, 2)
        _state_wipe(&st)
        _scratch_wipe(&work)


cdef size_t _skeyseed_into(_PrfState *st, int alg, const _Arg *ni, const _Arg *nr,
                           const uchar *ni_nr, const _Arg *g_ir, uchar *out) except 0:
    """SKEYSEED of an initial IKE SA into ``out``; ``ni_nr`` is Ni | Nr, contiguous."""
    cdef uchar truncated[16]
    if alg == PRF_AES128_XCBC or alg == PRF_AES128_CMAC:
        # RFC 7296 §2.14: for these fixed-key PRFs SKEYSEED = prf(Ni[0:8] | Nr[0:8], g^ir)
        if ni.len < 8 or nr.len < 8:
            raise ValueError("ni and nr must have at least 8 bytes each for PRF_AES128_XCBC/CMAC")
        memcpy(truncated, ni.ptr, 8)
        memcpy(truncated + 8, nr.ptr, 8)
        _state_key(st, alg, truncated, 16)
        OPENSSL_cleanse(truncated, 16)
    else:
        # RFC 7296 §2.14: SKEYSEED = prf(Ni | Nr, g^ir)
        _state_key(st, alg, ni_nr, ni.len + nr.len)
    _mac(st, g_ir.ptr, g_ir.len, out)
    return st.out_len


def skeyseed(prf_id, ni, nr, g_ir) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) of an initial IKE SA (RFC 7296 §2.14)."""
    cdef int alg = _prf_id(prf_id, "prf_id")
    cdef _Arg args[3]
    cdef _PrfState st
    cdef _Scratch work
    cdef uchar out[MAX_OUT]
    cdef size_t n
    args[0].held = args[1].held = args[2].held = False
    work.size = 0
    _state_new(&st)
    try:
        _arg(&args[0], ni, "ni")
        _arg(&args[1], nr, "nr")
        _arg(&args[2], g_ir, "g_ir")
        _scratch(&work, args[0].len + args[1].len)
        memcpy(work.ptr, args[0].ptr, args[0].len)
        memcpy(work.ptr + args[0].len, args[1].ptr, args[1].len)
        n = _skeyseed_into(&st, alg, &args[0], &args[1], work.ptr, &args[2], out)
        return _bytes(out, n)
    finally:
        _release(args, 3)
        _state_wipe(&st)
        _scratch_wipe(&work)
        OPENSSL_cleanse(out, MAX_OUT)


cdef size_t _skeyseed_rekey_into(_PrfState *st, int old_alg, const _Arg *sk_d_old, const _Arg *g_ir,
                                 const _Arg *ni, const _Arg *nr, uchar *message, uchar *out) except 0:
    """SKEYSEED of a rekeyed or cloned IKE SA; ``message`` has room for g^ir | Ni | Nr."""
    # RFC 7296 §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
    memcpy(message, g_ir.ptr, g_ir.len)
    memcpy(message + g_ir.len, ni.ptr, ni.len)
    memcpy(message + g_ir.len + ni.len, nr.ptr, nr.len)
    _state_key(st, old_alg, sk_d_old.ptr, sk_d_old.len)
    _mac(st, message, g_ir.len + ni.len + nr.len, out)
    return st.out_len


def skeyseed_rekey(old_prf_id, sk_d_old, g_ir, ni, nr) -> bytes:
    """SKEYSEED = prf_old(SK_d_old, g^ir (new) | Ni | Nr) of an IKE SA rekey or clone (§2.18)."""
    cdef int old_alg = _prf_id(old_prf_id, "old_prf_id")
    cdef _Arg args[4]
    cdef _PrfState st
    cdef _Scratch work
    cdef uchar out[MAX_OUT]
    cdef size_t n
    args[0].held = args[1].held = args[2].held = args[3].held = False
    work.size = 0
    _state_new(&st)
    try:
        _arg(&args[0], sk_d_old, "sk_d_old")
        _arg(&args[1], g_ir, "g_ir")
        _arg(&args[2], ni, "ni")
        _arg(&args[3], nr, "nr")
        _scratch(&work, args[1].len + args[2].len + args[3].len)
        n = _skeyseed_rekey_into(&st, old_alg, &args[0], &args[1], &args[2], &args[3], work.ptr, out)
        return _bytes(out, n)
    finally:
        _release(args, 4)
        _state_wipe(&st)
        _scratch_wipe(&work)
        OPENSSL_cleanse(out, MAX_OUT)


# --- results ---------------------------------------------------------------------------------
# Native classes rather than dataclasses: the keys are stored straight into the fields, which
# costs a tenth of a dataclass's per-field attribute machinery (that cost more than the hashing).


@cython.final
@cython.freelist(8)
cdef class IkeKeys:
    """The seven keys of an IKE SA (RFC 7296 §2.14). *_i protect what the original initiator
    sends, *_r the other direction; AEAD encryption keys end with their 4-byte salt.
    Immutable; the repr shows key lengths only."""

    cdef readonly bytes sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr

    __match_args__ = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")

    def __init__(self, bytes sk_d not None, bytes sk_ai not None, bytes sk_ar not None,
                 bytes sk_ei not None, bytes sk_er not None, bytes sk_pi not None,
                 bytes sk_pr not None):
        self.sk_d, self.sk_ai, self.sk_ar = sk_d, sk_ai, sk_ar
        self.sk_ei, self.sk_er, self.sk_pi, self.sk_pr = sk_ei, sk_er, sk_pi, sk_pr

    cdef tuple _fields(self):
        return (self.sk_d, self.sk_ai, self.sk_ar, self.sk_ei, self.sk_er, self.sk_pi, self.sk_pr)

    def __eq__(self, other):
        if type(other) is not IkeKeys:
            return NotImplemented
        return self._fields() == (<IkeKeys>other)._fields()

    def __hash__(self):
        return hash(self._fields())

    def __reduce__(self):
        return (IkeKeys, self._fields())

    def __repr__(self):
        return _lengths_repr("IkeKeys", self.__match_args__, self._fields())


@cython.final
@cython.freelist(8)
cdef class ChildKeys:
    """The keys of a Child SA pair (RFC 7296 §2.17). *_i protect initiator-to-responder traffic
    (the SA whose SPI the responder chose), *_r the reverse; AEAD keys end with their salt.
    Immutable; the repr shows key lengths only."""

    cdef readonly bytes encr_i, integ_i, encr_r, integ_r

    __match_args__ = ("encr_i", "integ_i", "encr_r", "integ_r")

    def __init__(self, bytes encr_i not None, bytes integ_i not None, bytes encr_r not None,
                 bytes integ_r not None):
        self.encr_i, self.integ_i, self.encr_r, self.integ_r = encr_i, integ_i, encr_r, integ_r

    cdef tuple _fields(self):
        return (self.encr_i, self.integ_i, self.encr_r, self.integ_r)

    def __eq__(self, other):
        if type(other) is not ChildKeys:
            return NotImplemented
        return self._fields() == (<ChildKeys>other)._fields()

    def __hash__(self):
        return hash(self._fields())

    def __reduce__(self):
        return (ChildKeys, self._fields())

    def __repr__(self):
        return _lengths_repr("ChildKeys", self.__match_args__, self._fields())


cdef str _lengths_repr(str name, tuple names, tuple values):
    """``Name(field=<N bytes>, ...)``: lengths only, so keys never reach a log."""
    shown = ", ".join([f"{field}=<{len(value)} bytes>" for field, value in zip(names, values)])
    return f"{name}({shown})"


cdef IkeKeys _ike_record(const uchar *keymat, size_t prf_len, size_t integ_len, size_t encr_len):
    # KEYMAT = SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr (RFC 7296 §2.14)
    cdef IkeKeys keys = IkeKeys.__new__(IkeKeys)
    keys.sk_d = _bytes(keymat, prf_len)
    keymat += prf_len
    keys.sk_ai = _bytes(keymat, integ_len)
    keys.sk_ar = _bytes(keymat + integ_len, integ_len)
    keymat += 2 * integ_len
    keys.sk_ei = _bytes(keymat, encr_len)
    keys.sk_er = _bytes(keymat + encr_len, encr_len)
    keymat += 2 * encr_len
    keys.sk_pi = _bytes(keymat, prf_len)
    keys.sk_pr = _bytes(keymat + prf_len, prf_len)
    return keys


cdef ChildKeys _child_record(const uchar *keymat, size_t encr_len, size_t integ_len):
    # KEYMAT = encr_i | integ_i | encr_r | integ_r (RFC 7296 §2.17)
    cdef ChildKeys keys = ChildKeys.__new__(ChildKeys)
    keys.encr_i = _bytes(keymat, encr_len)
    keys.integ_i = _bytes(keymat + encr_len, integ_len)
    keymat += encr_len + integ_len
    keys.encr_r = _bytes(keymat, encr_len)
    keys.integ_r = _bytes(keymat + encr_len, integ_len)
    return keys


cdef IkeKeys _ike_sa_keys(_PrfState *st, int alg, const uchar *key, size_t key_len, _Scratch *work,
                          size_t seed_len, size_t integ_len, size_t encr_len):
    """The seven keys from prf+(key, seed at work + MAX_OUT), keymat after the seed in ``work``."""
    # RFC 7296 §2.14:
    # {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
    cdef size_t prf_len = _output_length(alg)
    cdef uchar *keymat = work.ptr + MAX_OUT + seed_len + 1 + PAD_ROOM
    _state_key(st, alg, key, key_len)
    _expand(st, work.ptr, seed_len, keymat, 3 * prf_len + 2 * integ_len + 2 * encr_len)
    return _ike_record(keymat, prf_len, integ_len, encr_len)


cdef struct _Suite:
    int prf_id
    size_t integ_len
    size_t encr_len


@cython.final
cdef class _KeySchedule:
    """What the native IKE key schedules read from an IkeSuite: its PRF and key lengths, checked
    once when the suite is made (IkeSuite._key_schedule). A native record rather than a tuple:
    unpacking and checking a tuple of ints on every key schedule cost 0.04 of the call."""

    cdef _Suite suite

    def __init__(self, prf_id, integ_key_len, encr_key_len):
        cdef size_t h
        self.suite.prf_id = _prf_id(prf_id, "suite.prf")
        h = _output_length(self.suite.prf_id)
        self.suite.integ_len = _length(integ_key_len, "suite.integ_key_len")
        self.suite.encr_len = _length(encr_key_len, "suite.encr_key_len")
        # each length on its own first, so that the sum cannot wrap around
        _check_blocks(self.suite.integ_len, h, self.suite.prf_id)
        _check_blocks(self.suite.encr_len, h, self.suite.prf_id)
        _check_blocks(3 * h + 2 * self.suite.integ_len + 2 * self.suite.encr_len, h, self.suite.prf_id)

    def __reduce__(self):
        return (_KeySchedule, (self.suite.prf_id, self.suite.integ_len, self.suite.encr_len))

    def __repr__(self):
        return (f"_KeySchedule(prf={self.suite.prf_id}, integ_key_len={self.suite.integ_len}, "
                f"encr_key_len={self.suite.encr_len})")


cdef extern from "structmember.h":
    int T_OBJECT_EX

cdef extern from *:
    """
    /* The object in the __slots__ member at `offset` of `obj` when it is exactly of `type`, else
       NULL (an empty slot, or another object put there). A borrowed reference. */
    static inline PyObject *ikecore_slot_of_type(PyObject *obj, Py_ssize_t offset, PyTypeObject *type)
    {
        PyObject *value = *(PyObject **)((char *)obj + offset);
        return value != NULL && Py_TYPE(value) == type ? value : NULL;
    }
    """
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    PyObject *ikecore_slot_of_type(PyObject *obj, Py_ssize_t offset, PyTypeObject *type)

from types import MemberDescriptorType

# IkeSuite keeps its _KeySchedule in a __slots__ member. ikecore.keys registers the class, and
# _suite reads that member straight from an IkeSuite (a type comparison and a load) instead of a
# generic attribute look-up through the type's dictionaries, which cost ~0.01 of a key schedule.
# Any other object (a subclass, a duck-typed suite) takes the attribute look-up.
cdef type _suite_type = None
cdef Py_ssize_t _suite_schedule_offset = 0


def _register_suite_type(type cls):
    """Let the key schedules read ``cls._key_schedule`` from its slot (called by ikecore.keys)."""
    global _suite_type, _suite_schedule_offset
    member = cls.__dict__.get("_key_schedule")
    if type(member) is not MemberDescriptorType or (<PyMemberDescrObject *>member).d_member.type != T_OBJECT_EX:
        raise TypeError(f"{cls.__name__} must keep _key_schedule in a __slots__ member")
    _suite_schedule_offset = (<PyMemberDescrObject *>member).d_member.offset
    _suite_type = cls


cdef inline int _suite(_Suite *out, object suite) except -1:
    """The PRF and key lengths of an IkeSuite, from the record it keeps for this (read from its
    slot; the suite is duck-typed, the record is the checked part)."""
    cdef PyObject *record
    if type(suite) is _suite_type:
        record = ikecore_slot_of_type(<PyObject *>suite, _suite_schedule_offset,
                                      <PyTypeObject *>_KeySchedule)
        if record != NULL:
            out[0] = (<_KeySchedule>record).suite
            return 0
    return _suite_by_attribute(out, suite)


cdef int _suite_by_attribute(_Suite *out, object suite) except -1:
    try:
        schedule = suite._key_schedule
    except AttributeError:
        raise TypeError(f"suite must be an IkeSuite, not {type(suite).__name__}") from None
    if type(schedule) is not _KeySchedule:
        raise TypeError(
            f"suite._key_schedule must be an ikecore._fast.prf._KeySchedule, not {type(schedule).__name__}"
        )
    out[0] = (<_KeySchedule>schedule).suite
    return 0


cdef inline size_t _ike_seed(_Scratch *work, size_t keymat_len, const _Arg *ni, const _Arg *nr,
                             const _Arg *spi_i, const _Arg *spi_r) except 0:
    """Allocate ``work`` and write the seed Ni | Nr | SPIi | SPIr at ``work + MAX_OUT``."""
    cdef size_t seed_len = ni.len + nr.len + 16
    cdef uchar *seed
    _scratch(work, MAX_OUT + seed_len + 1 + PAD_ROOM + keymat_len)
    seed = work.ptr + MAX_OUT
    memcpy(seed, ni.ptr, ni.len)
    memcpy(seed + ni.len, nr.ptr, nr.len)
    memcpy(seed + ni.len + nr.len, spi_i.ptr, 8)
    memcpy(seed + ni.len + nr.len + 8, spi_r.ptr, 8)
    # the seed, the prf+ counter after it and the hash padding are public (Ni, Nr and the SPIs
    # travel in the clear in IKE_SA_INIT, RFC 7296 §1.2): the wipe leaves them out
    work.public_from = MAX_OUT
    work.public_to = MAX_OUT + seed_len + 1 + PAD_ROOM
    return seed_len


cdef inline size_t _ike_keymat_len(const _Suite *suite) noexcept nogil:
    return 3 * _output_length(suite.prf_id) + 2 * suite.integ_len + 2 * suite.encr_len


def ike_keys(suite, skeyseed, ni, nr, spi_i, spi_r) -> IkeKeys:
    """The seven SK_* keys of an IKE SA from SKEYSEED (RFC 7296 §2.14); SPIs are 8 bytes."""
    cdef _Suite s
    cdef size_t seed_len
    cdef _Arg args[5]
    cdef _PrfState st
    cdef _Scratch work
    _suite(&s, suite)
    args[0].held = args[1].held = args[2].held = args[3].held = args[4].held = False
    work.size = 0
    _state_new(&st)
    try:
        _arg(&args[0], skeyseed, "skeyseed")
        _arg(&args[1], ni, "ni")
        _arg(&args[2], nr, "nr")
        _spi(&args[3], spi_i, "spi_i")
        _spi(&args[4], spi_r, "spi_r")
        seed_len = _ike_seed(&work, _ike_keymat_len(&s), &args[1], &args[2], &args[3], &args[4])
        return _ike_sa_keys(&st, s.prf_id, args[0].ptr, args[0].len, &work, seed_len, s.integ_len,
                            s.encr_len)
    finally:
        _release(args, 5)
        _state_wipe(&st)
        _scratch_wipe(&work)


def ike_keys_initial(suite, ni, nr, g_ir, spi_i, spi_r) -> IkeKeys:
    """SKEYSEED and the seven SK_* keys of an initial IKE SA in one call (RFC 7296 §2.14).

    Same result as ``ike_keys(suite, skeyseed(suite.prf, ni, nr, g_ir), ni, nr, spi_i, spi_r)``;
    SKEYSEED never leaves native memory.
    """
    cdef _Suite s
    cdef size_t seed_len
    cdef _Arg args[5]
    cdef _PrfState st
    cdef _Scratch work
    cdef uchar seed_key[MAX_OUT]
    cdef size_t seed_key_len
    _suite(&s, suite)
    args[0].held = args[1].held = args[2].held = args[3].held = args[4].held = False
    work.size = 0
    _state_new(&st)
    try:
        _arg(&args[0], ni, "ni")
        _arg(&args[1], nr, "nr")
        _arg(&args[2], g_ir, "g_ir")
        _spi(&args[3], spi_i, "spi_i")
        _spi(&args[4], spi_r, "spi_r")
        seed_len = _ike_seed(&work, _ike_keymat_len(&s), &args[0], &args[1], &args[3], &args[4])
        # the seed begins with Ni | Nr: the SKEYSEED key needs no copy of its own
        seed_key_len = _skeyseed_into(&st, s.prf_id, &args[0], &args[1], work.ptr + MAX_OUT,
                                      &args[2], seed_key)
        return _ike_sa_keys(&st, s.prf_id, seed_key, seed_key_len, &work, seed_len, s.integ_len,
                            s.encr_len)
    finally:
        _release(args, 5)
        _state_wipe(&st)
        _scratch_wipe(&work)
        OPENSSL_cleanse(seed_key, MAX_OUT)


def ike_keys_rekey(old_prf_id, sk_d_old, suite, g_ir, ni, nr, spi_i, spi_r) -> IkeKeys:
    """SKEYSEED and the seven SK_* keys of a rekeyed or cloned IKE SA in one call (§2.18, RFC 7791).

    SKEYSEED uses the old SA's PRF and SK_d; prf+ uses the new SA's PRF (``suite``); SPIi and
    SPIr are the new SA's SPIs (from the Proposal SPI fields).
    """
    cdef int old_alg = _prf_id(old_prf_id, "old_prf_id")
    cdef _Suite s
    cdef size_t seed_len, seed_key_len, keymat_len, message_len
    cdef _Arg args[6]
    cdef _PrfState st
    cdef _Scratch work
    cdef uchar seed_key[MAX_OUT]
    _suite(&s, suite)
    args[0].held = args[1].held = args[2].held = args[3].held = args[4].held = args[5].held = False
    work.size = 0
    _state_new(&st)
    try:
        _arg(&args[0], sk_d_old, "sk_d_old")
        _arg(&args[1], g_ir, "g_ir")
        _arg(&args[2], ni, "ni")
        _arg(&args[3], nr, "nr")
        _spi(&args[4], spi_i, "spi_i")
        _spi(&args[5], spi_r, "spi_r")
        # room for the keymat and, in the same place beforehand, g^ir | Ni | Nr
        keymat_len = _ike_keymat_len(&s)
        message_len = args[1].len + args[2].len + args[3].len
        seed_len = _ike_seed(&work, keymat_len if keymat_len > message_len else message_len,
                             &args[2], &args[3], &args[4], &args[5])
        seed_key_len = _skeyseed_rekey_into(&st, old_alg, &args[0], &args[1], &args[2], &args[3],
                                            work.ptr + MAX_OUT + seed_len + 1 + PAD_ROOM, seed_key)
        return _ike_sa_keys(&st, s.prf_id, seed_key, seed_key_len, &work, seed_len, s.integ_len,
                            s.encr_len)
    finally:
        _release(args, 6)
        _state_wipe(&st)
        _scratch_wipe(&work)
        OPENSSL_cleanse(seed_key, MAX_OUT)


def child_keys(prf_id, sk_d, ni, nr, encr_key_len, integ_key_len, g_ir=None) -> ChildKeys:
    """KEYMAT of a Child SA pair (RFC 7296 §2.17), with PFS when ``g_ir`` is given.

    ``encr_key_len`` includes an AEAD salt (e.g. 36 for AES-GCM-256); ``integ_key_len`` is 0
    for AEAD. Ni/Nr are those of the exchange that creates the Child SA (IKE_SA_INIT's for the
    Child SA of IKE_AUTH).
    """
    cdef int alg = _prf_id(prf_id, "prf_id")
    cdef size_t encr_len = _length(encr_key_len, "encr_key_len")
    cdef size_t integ_len = _length(integ_key_len, "integ_key_len")
    cdef size_t seed_len, keymat_len
    cdef _Arg args[4]
    cdef _PrfState st
    cdef _Scratch work
    cdef uchar *seed
    cdef uchar *keymat
    # each length on its own first, so that the sum cannot wrap around
    _check_blocks(encr_len, _output_length(alg), alg)
    _check_blocks(integ_len, _output_length(alg), alg)
    keymat_len = 2 * (encr_len + integ_len)
    _check_blocks(keymat_len, _output_length(alg), alg)
    args[0].held = args[1].held = args[2].held = args[3].held = False
    args[3].len = 0
    work.size = 0
    _state_new(&st)
    try:
        _arg(&args[0], sk_d, "sk_d")
        _arg(&args[1], ni, "ni")
        _arg(&args[2], nr, "nr")
        if g_ir is not None:
            _arg(&args[3], g_ir, "g_ir")
        # RFC 7296 §2.17: KEYMAT = prf+(SK_d, Ni | Nr)               without PFS
        #                 KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)   with PFS
        # taken in order: initiator-to-responder keys (encryption, integrity), then the reverse
        seed_len = args[3].len + args[1].len + args[2].len
        _scratch(&work, MAX_OUT + seed_len + 1 + PAD_ROOM + keymat_len)
        seed = work.ptr + MAX_OUT
        if args[3].len:
            memcpy(seed, args[3].ptr, args[3].len)
        memcpy(seed + args[3].len, args[1].ptr, args[1].len)
        memcpy(seed + args[3].len + args[1].len, args[2].ptr, args[2].len)
        keymat = seed + seed_len + 1 + PAD_ROOM
        _state_key(&st, alg, args[0].ptr, args[0].len)
        _expand(&st, work.ptr, seed_len, keymat, keymat_len)
        return _child_record(keymat, encr_len, integ_len)
    finally:
        _release(args, 4)
        _state_wipe(&st)
        _scratch_wipe(&work)


def psk_auth(prf_id, psk, signed_octets) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (RFC 7296 §2.15)."""
    cdef int alg = _prf_id(prf_id, "prf_id")
    cdef _Arg args[2]
    cdef _PrfState st
    cdef uchar pad_key[MAX_OUT]
    cdef uchar out[MAX_OUT]
    args[0].held = args[1].held = False
    _state_new(&st)
    try:
        _arg(&args[0], psk, "psk")
        _arg(&args[1], signed_octets, "signed_octets")
        _state_key(&st, alg, args[0].ptr, args[0].len)
        _mac(&st, <const uchar *>b"Key Pad for IKEv2", 17, pad_key)
        _state_key(&st, alg, pad_key, st.out_len)
        _mac(&st, args[1].ptr, args[1].len, out)
        return _bytes(out, st.out_len)
    finally:
        _release(args, 2)
        _state_wipe(&st)
        OPENSSL_cleanse(pad_key, MAX_OUT)
        OPENSSL_cleanse(out, MAX_OUT)


def nat_detection_hash(bytes spi_i not None, bytes spi_r not None, bytes packed_address not None) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port) of NAT_DETECTION_*_IP (RFC 7296 §2.23), ``packed_address``
    being the 4- or 16-byte IP then the port in network order.

    At most 34 bytes: one padded block, one compression (hashlib builds and frees a digest
    context per hash, most of what 8 hashes per handshake cost).
    """
    cdef Py_ssize_t address_len = PyBytes_GET_SIZE(packed_address)
    cdef uchar block[64 + 16]  # _pad's room
    cdef SHA_CTX ctx
    cdef uchar out[20]
    if PyBytes_GET_SIZE(spi_i) != 8 or PyBytes_GET_SIZE(spi_r) != 8:
        raise ValueError("spi_i and spi_r must be 8 bytes")
    if address_len != 6 and address_len != 18:
        raise ValueError("packed_address must be 6 (IPv4) or 18 (IPv6) bytes")
    memcpy(block, PyBytes_AS_STRING(spi_i), 8)
    memcpy(block + 8, PyBytes_AS_STRING(spi_r), 8)
    memcpy(block + 16, PyBytes_AS_STRING(packed_address), address_len)
    _pad(PRF_HMAC_SHA1, block, 16 + address_len, 0)
    SHA1_Init(&ctx)
    SHA1_Transform(&ctx, block)
    _put32(out, ctx.h0)
    _put32(out + 4, ctx.h1)
    _put32(out + 8, ctx.h2)
    _put32(out + 12, ctx.h3)
    _put32(out + 16, ctx.h4)
    return PyBytes_FromStringAndSize(<char *>out, 20)
