# Only the libcrypto (OpenSSL >= 3.0) symbols ikecore uses (STYLE.md: declare only what you use).
# One section per module that needs them, so that changes to one stay out of the others' way.

from libc.stddef cimport size_t


cdef extern from "openssl/err.h" nogil:
    unsigned long ERR_get_error()
    unsigned long ERR_peek_error()
    void ERR_clear_error()


cdef extern from "openssl/crypto.h" nogil:
    const char *OpenSSL_version(int type)
    unsigned long OpenSSL_version_num()
    void OPENSSL_cleanse(void *ptr, size_t len)
    int OPENSSL_VERSION


# --- prf.pyx: HMAC / AES-XCBC / AES-CMAC ------------------------------------------------------


# --- aead.pyx, esp.pyx: AES-GCM and ChaCha20-Poly1305 ---------------------------------------


# --- ikemsg.pyx --------------------------------------------------------------------------------
