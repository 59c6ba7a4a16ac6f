/* The provider registry: config type → implementation. */
#include "upstream/provider.h"

const sl_provider_ops_t *sl_provider_ops_for(sl_provider_type_t type)
{
    switch (type) {
    case SL_PROVIDER_MOCK: return &sl_provider_mock;
    case SL_PROVIDER_OPENAI: return &sl_provider_openai;
    case SL_PROVIDER_AZURE: return &sl_provider_azure;
    case SL_PROVIDER_ANTHROPIC: return &sl_provider_anthropic;
    }
    return NULL;
}
