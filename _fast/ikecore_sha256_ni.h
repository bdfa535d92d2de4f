/* HMAC-SHA-256 with the x86 SHA extensions (SHA-NI), for the prf+ blocks of prf.pyx.
 *
 * Why: a prf+ block of PRF_HMAC_SHA2_256 is three compressions (two inner, one outer). Through
 * OpenSSL's SHA256_Transform each one reloads, reshuffles and stores the chaining value, and the
 * inner digest goes through memory in big-endian form before the outer block. Here the three
 * run in one function: the state stays in registers in the ABEF/CDGH layout the SHA256RNDS2
 * instruction works on, and the inner digest becomes the outer message words directly. On the
 * machine of the benches an HMAC of a prf+ block takes 0.66-0.72 of the time of the
 * SHA256_Transform path in a C loop, and a whole IKE SA key schedule call 0.86-0.94.
 *
 * The two first blocks of an HMAC key (K0 ^ ipad, K0 ^ opad) do not depend on each other; they
 * run interleaved on one 2-lane compression (ikecore_hmac_sha256_ni_key). Measured here, one
 * compression takes 47 ns and two interleaved 69 ns: SHA256RNDS2 has a latency of 1.4 ns and a
 * throughput of one per 1.05 ns, so a second stream fills only part of the wait.
 *
 * The compression is FIPS 180-4 §6.2.2, written from Intel's description of SHA256RNDS2,
 * SHA256MSG1 and SHA256MSG2 (each round pair takes W[t] + K[t] for two rounds). It is used only
 * where CPUID reports SHA, SSSE3 and SSE4.1; keys longer than a block are hashed first by the
 * SHA256_Transform code of prf.pyx. Built only with GCC or Clang on x86-64 (function target
 * attributes), and not with -DIKECORE_NO_SHA_NI; elsewhere IKECORE_SHA_NI is 0 and prf.pyx keeps
 * to SHA256_Transform.
 */
#ifndef IKECORE_SHA256_NI_H
#define IKECORE_SHA256_NI_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(IKECORE_NO_SHA_NI)
#define IKECORE_SHA_NI 1

#include <cpuid.h>
#include <immintrin.h>

#define IKECORE_SHA_NI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* CPUID.1:ECX bit 9 (SSSE3), bit 19 (SSE4.1); CPUID.(7,0):EBX bit 29 (SHA) */
static int ikecore_sha_ni_supported(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return 0;
    if (!(ecx & (1u << 9)) || !(ecx & (1u << 19)))
        return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
        return 0;
    return (ebx & (1u << 29)) != 0;
}

/* FIPS 180-4 §4.2.2 */
static const uint32_t ikecore_sha256_k[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* 16 big-endian message bytes as four words W[i..i+3] in lanes 0..3 */
static inline IKECORE_SHA_NI_TARGET __m128i ikecore_sha256_ni_words(const unsigned char *p)
{
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    return _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), byteswap);
}

/* One compression of the message words w0..w3 (W[0..15]) into the state (abef, cdgh). */
static inline __attribute__((always_inline)) IKECORE_SHA_NI_TARGET void
ikecore_sha256_ni_compress(__m128i *abef, __m128i *cdgh, __m128i w0, __m128i w1, __m128i w2,
                           __m128i w3)
{
    __m128i state0 = *abef, state1 = *cdgh, wk, next;
    __m128i w[4] = {w0, w1, w2, w3};
    int group;
    /* 16 groups of four rounds; w[group % 4] holds W[4 group .. 4 group + 3] */
#if defined(__clang__)
#pragma clang loop unroll(full)
#else
#pragma GCC unroll 16
#endif
    for (group = 0; group < 16; group++) {
        wk = _mm_add_epi32(w[group & 3], _mm_load_si128((const __m128i *)(ikecore_sha256_k + 4 * group)));
        state1 = _mm_sha256rnds2_epu32(state1, state0, wk);
        state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(wk, 0x0e));
        if (group < 12) {
            /* W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16] for the group four ahead */
            next = _mm_sha256msg1_epu32(w[group & 3], w[(group + 1) & 3]);
            next = _mm_add_epi32(next, _mm_alignr_epi8(w[(group + 3) & 3], w[(group + 2) & 3], 4));
            w[group & 3] = _mm_sha256msg2_epu32(next, w[(group + 3) & 3]);
        }
    }
    *abef = _mm_add_epi32(state0, *abef);
    *cdgh = _mm_add_epi32(state1, *cdgh);
}

/* The initial hash value H(0) of FIPS 180-4 §5.3.3, packed (ABEF | CDGH lanes, see _pack). */
static const uint32_t ikecore_sha256_ni_initial[8] __attribute__((aligned(16))) = {
    0x9b05688c, 0x510e527f, 0xbb67ae85, 0x6a09e667, /* F E B A */
    0x5be0cd19, 0x1f83d9ab, 0xa54ff53a, 0x3c6ef372, /* H G D C */
};

/* The state after one block from the initial hash value, packed: an HMAC state after K0 ^ ipad
 * or K0 ^ opad, one at a time. prf.pyx keys with ikecore_hmac_sha256_ni_key; this single-lane
 * form is what the c-limit of benches/test_prf.py (prf_c_loop.c, a plain sequential loop) runs. */
static inline IKECORE_SHA_NI_TARGET void
ikecore_sha256_ni_first_block(const unsigned char block[64], uint32_t packed[8])
{
    __m128i abef = _mm_load_si128((const __m128i *)ikecore_sha256_ni_initial);
    __m128i cdgh = _mm_load_si128((const __m128i *)(ikecore_sha256_ni_initial + 4));
    ikecore_sha256_ni_compress(&abef, &cdgh, ikecore_sha256_ni_words(block),
                               ikecore_sha256_ni_words(block + 16),
                               ikecore_sha256_ni_words(block + 32),
                               ikecore_sha256_ni_words(block + 48));
    _mm_storeu_si128((__m128i *)packed, abef);
    _mm_storeu_si128((__m128i *)(packed + 4), cdgh);
}

/*
 * Two independent compressions, (abef_a, cdgh_a) over wa[0..3] and (abef_b, cdgh_b) over
 * wb[0..3], round group by round group. SHA256RNDS2 is bound by its latency: each pair of rounds
 * waits for the previous one, so one stream leaves the unit idle most of the time and a second,
 * independent stream fills those cycles. Two compressions this way cost little more than one.
 */
static inline __attribute__((always_inline)) IKECORE_SHA_NI_TARGET void
ikecore_sha256_ni_compress2(__m128i *abef_a, __m128i *cdgh_a, __m128i wa[4], __m128i *abef_b,
                            __m128i *cdgh_b, __m128i wb[4])
{
    __m128i state0_a = *abef_a, state1_a = *cdgh_a, state0_b = *abef_b, state1_b = *cdgh_b;
    __m128i k, wk_a, wk_b, next_a, next_b;
    int group;
#if defined(__clang__)
#pragma clang loop unroll(full)
#else
#pragma GCC unroll 16
#endif
    for (group = 0; group < 16; group++) {
        k = _mm_load_si128((const __m128i *)(ikecore_sha256_k + 4 * group));
        wk_a = _mm_add_epi32(wa[group & 3], k);
        wk_b = _mm_add_epi32(wb[group & 3], k);
        state1_a = _mm_sha256rnds2_epu32(state1_a, state0_a, wk_a);
        state1_b = _mm_sha256rnds2_epu32(state1_b, state0_b, wk_b);
        state0_a = _mm_sha256rnds2_epu32(state0_a, state1_a, _mm_shuffle_epi32(wk_a, 0x0e));
        state0_b = _mm_sha256rnds2_epu32(state0_b, state1_b, _mm_shuffle_epi32(wk_b, 0x0e));
        if (group < 12) {
            /* the message schedule of ikecore_sha256_ni_compress, for each stream */
            next_a = _mm_sha256msg1_epu32(wa[group & 3], wa[(group + 1) & 3]);
            next_b = _mm_sha256msg1_epu32(wb[group & 3], wb[(group + 1) & 3]);
            next_a = _mm_add_epi32(next_a, _mm_alignr_epi8(wa[(group + 3) & 3], wa[(group + 2) & 3], 4));
            next_b = _mm_add_epi32(next_b, _mm_alignr_epi8(wb[(group + 3) & 3], wb[(group + 2) & 3], 4));
            wa[group & 3] = _mm_sha256msg2_epu32(next_a, wa[(group + 3) & 3]);
            wb[group & 3] = _mm_sha256msg2_epu32(next_b, wb[(group + 3) & 3]);
        }
    }
    *abef_a = _mm_add_epi32(state0_a, *abef_a);
    *cdgh_a = _mm_add_epi32(state1_a, *cdgh_a);
    *abef_b = _mm_add_epi32(state0_b, *abef_b);
    *cdgh_b = _mm_add_epi32(state1_b, *cdgh_b);
}

/*
 * The HMAC-SHA-256 key states (RFC 2104) of a key of at most one block. K0 is the key zero-padded
 * to 64 bytes; `key` holds its first `key_len` bytes, a multiple of 16 (0 to 64): the zero words
 * after them are made here, so a 32- or 64-byte key is read in place and never copied. The
 * K0 ^ ipad and K0 ^ opad blocks are independent compressions from H(0) and run together on
 * ikecore_sha256_ni_compress2; writes both packed states.
 */
static inline IKECORE_SHA_NI_TARGET void
ikecore_hmac_sha256_ni_key(const unsigned char *key, size_t key_len, uint32_t inner[8],
                           uint32_t outer[8])
{
    /* the pad bytes are the same in every byte, so XOR commutes with the byte swap */
    const __m128i ipad = _mm_set1_epi8(0x36), opad = _mm_set1_epi8(0x5c);
    __m128i abef_i = _mm_load_si128((const __m128i *)ikecore_sha256_ni_initial);
    __m128i cdgh_i = _mm_load_si128((const __m128i *)(ikecore_sha256_ni_initial + 4));
    __m128i abef_o = abef_i, cdgh_o = cdgh_i;
    __m128i w_i[4], w_o[4];
    int i;
    for (i = 0; i < 4; i++) {
        __m128i key_words = 16 * (size_t)i < key_len ? ikecore_sha256_ni_words(key + 16 * i)
                                                     : _mm_setzero_si128();
        w_i[i] = _mm_xor_si128(key_words, ipad);
        w_o[i] = _mm_xor_si128(key_words, opad);
    }
    ikecore_sha256_ni_compress2(&abef_i, &cdgh_i, w_i, &abef_o, &cdgh_o, w_o);
    _mm_storeu_si128((__m128i *)inner, abef_i);
    _mm_storeu_si128((__m128i *)(inner + 4), cdgh_i);
    _mm_storeu_si128((__m128i *)outer, abef_o);
    _mm_storeu_si128((__m128i *)(outer + 4), cdgh_o);
}

/* The state as message words: (A B C D) and (E F G H) in lanes 0..3. */
static inline __attribute__((always_inline)) IKECORE_SHA_NI_TARGET void
ikecore_sha256_ni_digest_words(__m128i abef, __m128i cdgh, __m128i *abcd, __m128i *efgh)
{
    __m128i abef_in_order = _mm_shuffle_epi32(abef, 0x1b); /* A B E F */
    __m128i cdgh_in_order = _mm_shuffle_epi32(cdgh, 0x1b); /* C D G H */
    *abcd = _mm_unpacklo_epi64(abef_in_order, cdgh_in_order);
    *efgh = _mm_unpackhi_epi64(abef_in_order, cdgh_in_order);
}

/*
 * HMAC-SHA-256 (RFC 2104) of a message whose inner hash continues from `inner` (packed, after
 * K0 ^ ipad): `blocks` 64-byte blocks at `message`, then `tail_blocks` blocks at `tail` (the
 * padded end, FIPS 180-4 §5.1.1); the outer hash continues from `outer` (packed, after
 * K0 ^ opad) over the inner digest and its fixed padding. Writes the 32-byte MAC to `out`.
 */
static IKECORE_SHA_NI_TARGET void ikecore_hmac_sha256_ni(const uint32_t inner[8],
                                                          const uint32_t outer[8],
                                                          const unsigned char *message,
                                                          size_t blocks,
                                                          const unsigned char *tail,
                                                          size_t tail_blocks, unsigned char out[32])
{
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef = _mm_loadu_si128((const __m128i *)inner);
    __m128i cdgh = _mm_loadu_si128((const __m128i *)(inner + 4));
    __m128i abcd, efgh;
    for (; blocks; blocks--, message += 64)
        ikecore_sha256_ni_compress(&abef, &cdgh, ikecore_sha256_ni_words(message),
                                   ikecore_sha256_ni_words(message + 16),
                                   ikecore_sha256_ni_words(message + 32),
                                   ikecore_sha256_ni_words(message + 48));
    for (; tail_blocks; tail_blocks--, tail += 64)
        ikecore_sha256_ni_compress(&abef, &cdgh, ikecore_sha256_ni_words(tail),
                                   ikecore_sha256_ni_words(tail + 16),
                                   ikecore_sha256_ni_words(tail + 32),
                                   ikecore_sha256_ni_words(tail + 48));
    ikecore_sha256_ni_digest_words(abef, cdgh, &abcd, &efgh);
    /* outer block: the 32-byte inner digest, 0x80, zeros, the length 64 + 32 bytes = 768 bits */
    abef = _mm_loadu_si128((const __m128i *)outer);
    cdgh = _mm_loadu_si128((const __m128i *)(outer + 4));
    ikecore_sha256_ni_compress(&abef, &cdgh, abcd, efgh, _mm_set_epi32(0, 0, 0, (int)0x80000000),
                               _mm_set_epi32(768, 0, 0, 0));
    ikecore_sha256_ni_digest_words(abef, cdgh, &abcd, &efgh);
    _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(abcd, byteswap));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_shuffle_epi8(efgh, byteswap));
}

#else
#define IKECORE_SHA_NI 0

static int ikecore_sha_ni_supported(void) { return 0; }
/* never called where ikecore_sha_ni_supported() is 0; here so that every caller builds */
static inline void ikecore_sha256_ni_first_block(const unsigned char block[64], uint32_t packed[8])
{
    (void)block;
    (void)packed;
}
static inline void ikecore_hmac_sha256_ni_key(const unsigned char *key, size_t key_len,
                                              uint32_t inner[8], uint32_t outer[8])
{
    (void)key, (void)key_len, (void)inner, (void)outer;
}
static void ikecore_hmac_sha256_ni(const uint32_t inner[8], const uint32_t outer[8],
                                   const unsigned char *message, size_t blocks,
                                   const unsigned char *tail, size_t tail_blocks,
                                   unsigned char out[32])
{
    (void)inner, (void)outer, (void)message, (void)blocks, (void)tail, (void)tail_blocks, (void)out;
}
#endif

#endif
