/* SHA-256, for API keys (only their hashes are kept and compared). */
#ifndef SL_CORE_SHA256_H
#define SL_CORE_SHA256_H
#include <stddef.h>
#include <stdint.h>

void sl_sha256(const void *data, size_t len, uint8_t out[32]);

#endif
