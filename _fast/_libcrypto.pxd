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

# The low-level SHA interfaces are deprecated in 3.0 but still exported. prf.pyx keeps HMAC's
# keyed states as the hash words of these structs and calls the one-block compression directly
# (EVP_MD_CTX_copy_ex allocates per copy; SHA*_Update/Final add a buffer copy per call; the
# measured costs are in prf.pyx's docstring). HMAC-SHA-256 on SHA-NI CPUs does not use them.
cdef extern from "openssl/sha.h" nogil:
    ctypedef struct SHA_CTX:
        unsigned int h0, h1, h2, h3, h4
    ctypedef struct SHA256_CTX:
        unsigned int h[8]
    ctypedef struct SHA512_CTX:
        unsigned long long h[8]
    int SHA1_Init(SHA_CTX *c)
    void SHA1_Transform(SHA_CTX *c, const unsigned char *data)
    int SHA256_Init(SHA256_CTX *c)
    void SHA256_Transform(SHA256_CTX *c, const unsigned char *data)
    int SHA384_Init(SHA512_CTX *c)
    int SHA512_Init(SHA512_CTX *c)
    void SHA512_Transform(SHA512_CTX *c, const unsigned char *data)


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

cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct EVP_CIPHER_CTX:
        pass
    const EVP_CIPHER *EVP_aes_128_gcm()
    const EVP_CIPHER *EVP_aes_192_gcm()
    const EVP_CIPHER *EVP_aes_256_gcm()
    const EVP_CIPHER *EVP_chacha20_poly1305()
    EVP_CIPHER_CTX *EVP_CIPHER_CTX_new()
    void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx)
    int EVP_CipherInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, void *impl,
                          const unsigned char *key, const unsigned char *iv, int enc)
    int EVP_CipherUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                         const unsigned char *in_, int inl)
    int EVP_CipherFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl)
    int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr)
    int EVP_CTRL_AEAD_SET_IVLEN
    int EVP_CTRL_AEAD_GET_TAG
    int EVP_CTRL_AEAD_SET_TAG


cdef extern from "openssl/crypto.h" nogil:
    int CRYPTO_memcmp(const void *a, const void *b, size_t len)


# --- ikemsg.pyx --------------------------------------------------------------------------------
