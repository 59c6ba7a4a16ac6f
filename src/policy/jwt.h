/* JWT bearer verification (DESIGN §6, seed 003): HS256 with a secret, or RS256/ES256 with a PEM
 * public key; the algorithm is pinned by config and never taken from the token (a token that
 * says "none" or any other alg is refused before its signature is looked at); exp (required
 * unless auth.jwt.require_exp is false) and nbf are checked with a small leeway; a configured
 * claim becomes the user id. */
#ifndef SL_POLICY_JWT_H
#define SL_POLICY_JWT_H
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/err.h"

/* sl_jwt_cfg_t (auth.jwt) is defined in config/config.h. */

/* Verifies token (the part after "Bearer "). On success *user is a copy of the user claim
 * (string, or integer as decimal), to free with sl_free. On failure returns SL_EAUTH and *why is
 * a static message safe to show the client (never the token). now is unix seconds. */
SL_MUST_CHECK int sl_jwt_verify(const sl_jwt_cfg_t *cfg, const char *token, int64_t now,
                                char **user, const char **why);

#endif
