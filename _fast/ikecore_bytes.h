/* Big-endian loads and stores for the packet code, as single word moves (a run of byte stores
 * followed by a word load of the same bytes stalls store forwarding on x86). */
#ifndef IKECORE_BYTES_H
#define IKECORE_BYTES_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define IKECORE_BSWAP32(x) __builtin_bswap32(x)
#define IKECORE_BSWAP64(x) __builtin_bswap64(x)
#else
static inline uint32_t IKECORE_BSWAP32(uint32_t x)
{
    return (x >> 24) | ((x >> 8) & 0xff00u) | ((x << 8) & 0xff0000u) | (x << 24);
}
static inline uint64_t IKECORE_BSWAP64(uint64_t x)
{
    return ((uint64_t)IKECORE_BSWAP32((uint32_t)x) << 32) | IKECORE_BSWAP32((uint32_t)(x >> 32));
}
#endif

static inline int ikecore_little_endian(void)
{
    const uint16_t probe = 1;
    return *(const uint8_t *)&probe == 1;
}

static inline void ikecore_store_be32(uint8_t *out, uint32_t value)
{
    if (ikecore_little_endian())
        value = IKECORE_BSWAP32(value);
    memcpy(out, &value, 4);
}

static inline void ikecore_store_be64(uint8_t *out, uint64_t value)
{
    if (ikecore_little_endian())
        value = IKECORE_BSWAP64(value);
    memcpy(out, &value, 8);
}

static inline uint32_t ikecore_load_be32(const uint8_t *data)
{
    uint32_t value;
    memcpy(&value, data, 4);
    return ikecore_little_endian() ? IKECORE_BSWAP32(value) : value;
}

static inline uint16_t ikecore_load_be16(const uint8_t *data)
{
    return (uint16_t)((data[0] << 8) | data[1]);
}

#endif /* IKECORE_BYTES_H */
