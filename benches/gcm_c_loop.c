/*
 * The "c-limit" of the ESP/AEAD benches: a plain C loop over intel-ipsec-mb's direct AES-GCM
 * call, the same call the Cython core makes per packet, with no Python in between. Built at
 * bench time with `cc` and called through ctypes once per burst, so the ctypes overhead is
 * shared by the whole burst.
 *
 *   state = c_loop_new(key_len)            expands the key once; NULL without AES-NI
 *   c_loop_run(state, length, packets, open)
 *       seals (open = 0) or opens and compares the tag (open = 1) `packets` messages of
 *       `length` bytes with an 8-byte AAD and a 16-byte ICV, nonce = salt | counter
 *   c_loop_free(state)
 */
#include <intel-ipsec-mb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LENGTH 16384

struct c_loop {
    struct gcm_key_data key; /* first member: 64-byte aligned with the allocation */
    IMB_MGR *mgr;
    int key_len;
    uint64_t counter;
    uint8_t src[MAX_LENGTH + 16];
    uint8_t dst[MAX_LENGTH + 16];
};

void *c_loop_new(int key_len)
{
    static const uint8_t raw_key[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                        12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                        23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    IMB_ARCH arch = IMB_ARCH_NONE;
    struct c_loop *state = NULL;
    IMB_MGR *mgr = alloc_mb_mgr(0);
    if (mgr == NULL)
        return NULL;
    init_mb_mgr_auto(mgr, &arch);
    if (arch == IMB_ARCH_NONE || arch == IMB_ARCH_NOAESNI ||
        posix_memalign((void **)&state, 64, sizeof(*state)) != 0) {
        free_mb_mgr(mgr);
        return NULL;
    }
    memset(state, 0, sizeof(*state));
    state->mgr = mgr;
    state->key_len = key_len;
    if (key_len == 16)
        IMB_AES128_GCM_PRE(mgr, raw_key, &state->key);
    else if (key_len == 24)
        IMB_AES192_GCM_PRE(mgr, raw_key, &state->key);
    else
        IMB_AES256_GCM_PRE(mgr, raw_key, &state->key);
    return state;
}

/* Returns the number of tag mismatches when opening (every one, since the data is random). */
long c_loop_run(void *opaque, size_t length, long packets, int open)
{
    struct c_loop *s = opaque;
    struct gcm_context_data ctx;
    uint8_t nonce[12] = {0xca, 0xfe, 0xba, 0xbe};
    uint8_t aad[8] = {0, 0, 0x10, 0};
    uint8_t tag[16];
    long i, mismatches = 0;
    aes_gcm_enc_dec_t seal = s->key_len == 16   ? s->mgr->gcm128_enc
                             : s->key_len == 24 ? s->mgr->gcm192_enc
                                                : s->mgr->gcm256_enc;
    aes_gcm_enc_dec_t unseal = s->key_len == 16   ? s->mgr->gcm128_dec
                               : s->key_len == 24 ? s->mgr->gcm192_dec
                                                  : s->mgr->gcm256_dec;
    if (length > MAX_LENGTH)
        return -1;
    for (i = 0; i < packets; i++) {
        s->counter++;
        memcpy(nonce + 4, &s->counter, 8);
        memcpy(aad + 4, &s->counter, 4);
        if (open) {
            unseal(&s->key, &ctx, s->dst, s->src, length, nonce, aad, 8, tag, 16);
            mismatches += memcmp(tag, s->src + length, 16) != 0;
        } else {
            seal(&s->key, &ctx, s->dst, s->src, length, nonce, aad, 8, s->dst + length, 16);
        }
    }
    return mismatches;
}

void c_loop_free(void *opaque)
{
    struct c_loop *s = opaque;
    if (s != NULL) {
        free_mb_mgr(s->mgr);
        free(s);
    }
}
