/*
 * Thin shim over intel-ipsec-mb's direct AES-GCM API for _fast/aead.pyx.
 *
 * setup.py defines IKECORE_HAVE_IPSEC_MB to 1 when intel-ipsec-mb.h was found and links
 * IPSec_MB; with 0 the same names exist as stubs that report "not available", so the
 * Cython code needs no conditional compilation and the package builds without the library.
 *
 * One process-wide IMB_MGR is set up at import (under the GIL): the direct GCM functions it
 * points to keep no state of their own (everything lives in the per-key gcm_key_data and the
 * per-call gcm_context_data on the caller's stack), so sharing it is safe across threads.
 */
#ifndef IKECORE_IPSEC_MB_H
#define IKECORE_IPSEC_MB_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if IKECORE_HAVE_IPSEC_MB

#include <intel-ipsec-mb.h>

typedef struct {
    struct gcm_key_data key; /* expanded AES keys + GHASH powers; must be 64-byte aligned */
    aes_gcm_enc_dec_t seal;
    aes_gcm_enc_dec_t open;
    aes_gcm_init_t init;
    aes_gcm_enc_dec_update_t seal_update;
    aes_gcm_enc_dec_finalize_t seal_finalize;
} ikecore_mb_gcm;

static IMB_MGR *ikecore_mb_manager = NULL;

/* 1 when the library is linked and the CPU has AES-NI + PCLMULQDQ (ipsec-mb's own detection). */
static inline int ikecore_mb_init(void)
{
    IMB_ARCH arch = IMB_ARCH_NONE;
    if (ikecore_mb_manager != NULL)
        return 1;
    IMB_MGR *mgr = alloc_mb_mgr(0);
    if (mgr == NULL)
        return 0;
    init_mb_mgr_auto(mgr, &arch);
    if (imb_get_errno(mgr) != 0 || arch == IMB_ARCH_NONE || arch == IMB_ARCH_NOAESNI ||
        (mgr->features & IMB_FEATURE_AESNI) == 0 || (mgr->features & IMB_FEATURE_PCLMULQDQ) == 0) {
        free_mb_mgr(mgr);
        return 0;
    }
    ikecore_mb_manager = mgr;
    return 1;
}

static inline const char *ikecore_mb_version(void) { return IMB_VERSION_STR; }

/* Expands the key once; NULL on allocation failure or a bad key length. */
static inline ikecore_mb_gcm *ikecore_mb_gcm_new(const uint8_t *key, size_t key_len)
{
    void *memory = NULL;
    ikecore_mb_gcm *ctx;
    if (ikecore_mb_manager == NULL || posix_memalign(&memory, 64, sizeof(ikecore_mb_gcm)) != 0)
        return NULL;
    ctx = (ikecore_mb_gcm *)memory;
    memset(ctx, 0, sizeof(*ctx));
    switch (key_len) {
    case 16:
        IMB_AES128_GCM_PRE(ikecore_mb_manager, key, &ctx->key);
        ctx->seal = ikecore_mb_manager->gcm128_enc;
        ctx->open = ikecore_mb_manager->gcm128_dec;
        ctx->init = ikecore_mb_manager->gcm128_init;
        ctx->seal_update = ikecore_mb_manager->gcm128_enc_update;
        ctx->seal_finalize = ikecore_mb_manager->gcm128_enc_finalize;
        break;
    case 24:
        IMB_AES192_GCM_PRE(ikecore_mb_manager, key, &ctx->key);
        ctx->seal = ikecore_mb_manager->gcm192_enc;
        ctx->open = ikecore_mb_manager->gcm192_dec;
        ctx->init = ikecore_mb_manager->gcm192_init;
        ctx->seal_update = ikecore_mb_manager->gcm192_enc_update;
        ctx->seal_finalize = ikecore_mb_manager->gcm192_enc_finalize;
        break;
    case 32:
        IMB_AES256_GCM_PRE(ikecore_mb_manager, key, &ctx->key);
        ctx->seal = ikecore_mb_manager->gcm256_enc;
        ctx->open = ikecore_mb_manager->gcm256_dec;
        ctx->init = ikecore_mb_manager->gcm256_init;
        ctx->seal_update = ikecore_mb_manager->gcm256_enc_update;
        ctx->seal_finalize = ikecore_mb_manager->gcm256_enc_finalize;
        break;
    default:
        free(memory);
        return NULL;
    }
    return ctx;
}

/* The caller wipes (OPENSSL_cleanse) before freeing. */
static inline void ikecore_mb_gcm_free(ikecore_mb_gcm *ctx) { free(ctx); }

static inline size_t ikecore_mb_gcm_size(void) { return sizeof(ikecore_mb_gcm); }

/* nonce: 12 bytes (salt | explicit IV). src and dst may be the same buffer. */
static inline void ikecore_mb_gcm_seal(const ikecore_mb_gcm *ctx, const uint8_t *nonce,
                                       const uint8_t *aad, size_t aad_len, const uint8_t *src,
                                       size_t len, uint8_t *dst, uint8_t *tag, size_t tag_len)
{
    struct gcm_context_data call;
    ctx->seal(&ctx->key, &call, dst, src, len, nonce, aad, aad_len, tag, tag_len);
}

/*
 * Seals head[0:head_len] | dst[head_len:length] into dst[0:length] and the tag after it,
 * without first copying head next to the part already in dst (ESP: the inner packet, then
 * the trailer written in place). Three streaming calls cost more than a copy of a small
 * packet, so below `copy_below` bytes head is copied and sealed in one call.
 */
static inline void ikecore_mb_gcm_seal_parts(const ikecore_mb_gcm *ctx, const uint8_t *nonce,
                                             const uint8_t *aad, size_t aad_len,
                                             const uint8_t *head, size_t head_len,
                                             uint8_t *dst, size_t length, size_t tag_len,
                                             size_t copy_below)
{
    struct gcm_context_data call;
    if (head_len < copy_below) {
        memmove(dst, head, head_len);
        ctx->seal(&ctx->key, &call, dst, dst, length, nonce, aad, aad_len, dst + length, tag_len);
        return;
    }
    ctx->init(&ctx->key, &call, nonce, aad, aad_len);
    ctx->seal_update(&ctx->key, &call, dst, head, head_len);
    ctx->seal_update(&ctx->key, &call, dst + head_len, dst + head_len, length - head_len);
    ctx->seal_finalize(&ctx->key, &call, dst + length, tag_len);
}

/* Decrypts and writes the computed tag; the caller compares it in constant time. */
static inline void ikecore_mb_gcm_open(const ikecore_mb_gcm *ctx, const uint8_t *nonce,
                                       const uint8_t *aad, size_t aad_len, const uint8_t *src,
                                       size_t len, uint8_t *dst, uint8_t *tag, size_t tag_len)
{
    struct gcm_context_data call;
    ctx->open(&ctx->key, &call, dst, src, len, nonce, aad, aad_len, tag, tag_len);
}

#else /* !IKECORE_HAVE_IPSEC_MB: stubs, never called because ikecore_mb_init() says 0 */

typedef struct {
    int unused;
} ikecore_mb_gcm;

static inline int ikecore_mb_init(void) { return 0; }
static inline const char *ikecore_mb_version(void) { return NULL; }
static inline ikecore_mb_gcm *ikecore_mb_gcm_new(const uint8_t *key, size_t key_len)
{
    (void)key;
    (void)key_len;
    return NULL;
}
static inline void ikecore_mb_gcm_free(ikecore_mb_gcm *ctx) { (void)ctx; }
static inline size_t ikecore_mb_gcm_size(void) { return sizeof(ikecore_mb_gcm); }
static inline void ikecore_mb_gcm_seal(const ikecore_mb_gcm *ctx, const uint8_t *nonce,
                                       const uint8_t *aad, size_t aad_len, const uint8_t *src,
                                       size_t len, uint8_t *dst, uint8_t *tag, size_t tag_len)
{
    (void)ctx; (void)nonce; (void)aad; (void)aad_len; (void)src; (void)len; (void)dst;
    (void)tag; (void)tag_len;
}
static inline void ikecore_mb_gcm_seal_parts(const ikecore_mb_gcm *ctx, const uint8_t *nonce,
                                             const uint8_t *aad, size_t aad_len,
                                             const uint8_t *head, size_t head_len,
                                             uint8_t *dst, size_t length, size_t tag_len,
                                             size_t copy_below)
{
    (void)ctx; (void)nonce; (void)aad; (void)aad_len; (void)head; (void)head_len; (void)dst;
    (void)length; (void)tag_len; (void)copy_below;
}
static inline void ikecore_mb_gcm_open(const ikecore_mb_gcm *ctx, const uint8_t *nonce,
                                       const uint8_t *aad, size_t aad_len, const uint8_t *src,
                                       size_t len, uint8_t *dst, uint8_t *tag, size_t tag_len)
{
    (void)ctx; (void)nonce; (void)aad; (void)aad_len; (void)src; (void)len; (void)dst;
    memset(tag, 0, tag_len);
}

#endif /* IKECORE_HAVE_IPSEC_MB */

#endif /* IKECORE_IPSEC_MB_H */
