/*
 * The "c-limit" of the key schedule benches: the initial IKE SA key schedule of RFC 7296 §2.14
 * with PRF_HMAC_SHA2_256, as a plain C loop over the SHA-256 code ikecore's prf.pyx runs, with
 * no Python in between: the SHA-NI HMAC kernel of _fast/ikecore_sha256_ni.h where the CPU has
 * the SHA extensions, OpenSSL's one-block compression (SHA256_Transform) elsewhere, as prf.pyx
 * chooses. Built at bench time with `cc` and called through ctypes once per burst of schedules,
 * so the ctypes overhead is shared by the whole burst.
 *
 *   prf_c_loop_run(ni, nr, g_ir, spi_i, spi_r, keymat, keymat_len, count)
 *       runs `count` schedules over the same inputs (Ni and Nr 32 bytes each, g^ir 32 bytes,
 *       SPIs 8 bytes each) and leaves the last KEYMAT ({SK_d | SK_ai | ... | SK_pr}) in
 *       `keymat`, which the bench compares with ikecore's keys. Returns 0, or -1 when
 *       `keymat_len` needs more than 255 prf+ blocks.
 *
 * HMAC (RFC 2104) is keyed once per key: the states after the K0 ^ ipad and K0 ^ opad blocks are
 * kept, and each MAC copies them and pads its message itself (FIPS 180-4 §5.1).
 */
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#include "../_fast/ikecore_sha256_ni.h"

#define BLOCK 64
#define DIGEST 32
#define NONCE 32
#define SPI 8
#define SEED (2 * NONCE + 2 * SPI) /* Ni | Nr | SPIi | SPIr */

struct hmac_key {
    SHA256_CTX inner;
    SHA256_CTX outer;
    uint32_t inner_packed[8]; /* the same two states for the SHA-NI kernel */
    uint32_t outer_packed[8];
};

static int use_sha_ni = -1; /* decided on the first run, as prf.pyx does at import */

static void put_be32(uint8_t *out, uint32_t word)
{
    out[0] = (uint8_t)(word >> 24);
    out[1] = (uint8_t)(word >> 16);
    out[2] = (uint8_t)(word >> 8);
    out[3] = (uint8_t)word;
}

static void digest_out(const SHA256_CTX *ctx, uint8_t *out)
{
    for (int i = 0; i < 8; i++)
        put_be32(out + 4 * i, ctx->h[i]);
}

/* Hashes `data` on from `ctx`, which has absorbed one block (K0 ^ pad) already. */
static void finish(SHA256_CTX *ctx, const uint8_t *data, size_t n, uint8_t *out)
{
    uint8_t tail[2 * BLOCK];
    uint64_t bits = (uint64_t)(BLOCK + n) * 8;
    size_t padded;
    for (; n >= BLOCK; n -= BLOCK, data += BLOCK)
        SHA256_Transform(ctx, data);
    padded = n + 1 + 8 <= BLOCK ? BLOCK : 2 * BLOCK;
    memcpy(tail, data, n);
    tail[n] = 0x80;
    memset(tail + n + 1, 0, padded - n - 1 - 8);
    put_be32(tail + padded - 8, (uint32_t)(bits >> 32));
    put_be32(tail + padded - 4, (uint32_t)bits);
    SHA256_Transform(ctx, tail);
    if (padded > BLOCK)
        SHA256_Transform(ctx, tail + BLOCK);
    digest_out(ctx, out);
}

/* Keys of at most one block only: every key of this schedule is 64 or 32 bytes. */
static void hmac_key(struct hmac_key *k, const uint8_t *key, size_t key_len)
{
    uint8_t pad[BLOCK];
    for (size_t i = 0; i < BLOCK; i++)
        pad[i] = (uint8_t)((i < key_len ? key[i] : 0) ^ 0x36);
    if (use_sha_ni) {
        ikecore_sha256_ni_first_block(pad, k->inner_packed);
    } else {
        SHA256_Init(&k->inner);
        SHA256_Transform(&k->inner, pad);
    }
    for (size_t i = 0; i < BLOCK; i++)
        pad[i] = (uint8_t)((i < key_len ? key[i] : 0) ^ 0x5c);
    if (use_sha_ni) {
        ikecore_sha256_ni_first_block(pad, k->outer_packed);
    } else {
        SHA256_Init(&k->outer);
        SHA256_Transform(&k->outer, pad);
    }
}

static void hmac(const struct hmac_key *k, const uint8_t *data, size_t n, uint8_t *out)
{
    if (use_sha_ni) {
        /* whole blocks in place, the rest padded in `tail` */
        uint8_t tail[2 * BLOCK];
        size_t whole = n / BLOCK, rest = n % BLOCK;
        uint64_t bits = (uint64_t)(BLOCK + n) * 8;
        size_t padded = rest + 1 + 8 <= BLOCK ? BLOCK : 2 * BLOCK;
        memcpy(tail, data + whole * BLOCK, rest);
        tail[rest] = 0x80;
        memset(tail + rest + 1, 0, padded - rest - 1 - 8);
        put_be32(tail + padded - 8, (uint32_t)(bits >> 32));
        put_be32(tail + padded - 4, (uint32_t)bits);
        ikecore_hmac_sha256_ni(k->inner_packed, k->outer_packed, data, whole, tail, padded / BLOCK,
                               out);
        return;
    }
    SHA256_CTX ctx = k->inner;
    uint8_t inner[DIGEST];
    finish(&ctx, data, n, inner);
    ctx = k->outer;
    finish(&ctx, inner, DIGEST, out);
}

int prf_c_loop_run(const uint8_t *ni, const uint8_t *nr, const uint8_t *g_ir, const uint8_t *spi_i,
                   const uint8_t *spi_r, uint8_t *keymat, size_t keymat_len, long count)
{
    /* T(n-1) | Ni | Nr | SPIi | SPIr | n, with T(n-1) empty for the first block */
    uint8_t message[DIGEST + SEED + 1];
    uint8_t skeyseed[DIGEST];
    uint8_t block[DIGEST];
    struct hmac_key key;
    size_t blocks = (keymat_len + DIGEST - 1) / DIGEST;
    if (blocks > 255)
        return -1;
    if (use_sha_ni < 0)
        use_sha_ni = ikecore_sha_ni_supported();
    for (long c = 0; c < count; c++) {
        /* SKEYSEED = prf(Ni | Nr, g^ir) */
        memcpy(message + DIGEST, ni, NONCE);
        memcpy(message + DIGEST + NONCE, nr, NONCE);
        hmac_key(&key, message + DIGEST, 2 * NONCE);
        hmac(&key, g_ir, 32, skeyseed);
        /* {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
         * prf+ (K, S) = T1 | T2 | ...,  T1 = prf(K, S | 0x01),  Tn = prf(K, Tn-1 | S | n) */
        hmac_key(&key, skeyseed, DIGEST);
        memcpy(message + DIGEST + 2 * NONCE, spi_i, SPI);
        memcpy(message + DIGEST + 2 * NONCE + SPI, spi_r, SPI);
        for (size_t n = 1, offset = 0; n <= blocks; n++, offset += DIGEST) {
            message[DIGEST + SEED] = (uint8_t)n;
            if (n == 1)
                hmac(&key, message + DIGEST, SEED + 1, block);
            else
                hmac(&key, message, DIGEST + SEED + 1, block);
            memcpy(message, block, DIGEST);
            memcpy(keymat + offset, block, keymat_len - offset < DIGEST ? keymat_len - offset : DIGEST);
        }
    }
    return 0;
}
