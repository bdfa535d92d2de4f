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

# The one-block SHA interfaces are deprecated in 3.0 but still exported; prf.pyx uses them because
# a keyed HMAC state is then a plain struct that a memcpy reuses (EVP_MD_CTX_copy_ex allocates).
cdef extern from "openssl/sha.h" nogil:
    ctypedef struct SHA_CTX:
        pass
    ctypedef struct SHA256_CTX:
        pass
    ctypedef struct SHA512_CTX:
        pass
    int SHA1_Init(SHA_CTX *c)
    int SHA1_Update(SHA_CTX *c, const void *data, size_t length)
    int SHA1_Final(unsigned char *md, SHA_CTX *c)
    int SHA256_Init(SHA256_CTX *c)
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t length)
    int SHA256_Final(unsigned char *md, SHA256_CTX *c)
    int SHA384_Init(SHA512_CTX *c)
    int SHA384_Update(SHA512_CTX *c, const void *data, size_t length)
    int SHA384_Final(unsigned char *md, SHA512_CTX *c)
    int SHA512_Init(SHA512_CTX *c)
    int SHA512_Update(SHA512_CTX *c, const void *data, size_t length)
    int SHA512_Final(unsigned char *md, SHA512_CTX *c)


cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct EVP_CIPHER_CTX:
        pass
    EVP_CIPHER *EVP_CIPHER_fetch(void *libctx, const char *algorithm, const char *properties)
    EVP_CIPHER_CTX *EVP_CIPHER_CTX_new()
    void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx)
    int EVP_EncryptInit_ex2(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const unsigned char *key,
                            const unsigned char *iv, const void *params)
    int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                          const unsigned char *inp, int inl)
    int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX *ctx, int pad)



# --- aead.pyx, esp.pyx: AES-GCM and ChaCha20-Poly1305 ---------------------------------------


# --- ikemsg.pyx --------------------------------------------------------------------------------
