/* The Azure OpenAI provider (seed 004): POST
 * {base_url}/openai/deployments/{deployment}/chat/completions?api-version=V with an api-key
 * header. Body and stream are OpenAI's, so the OpenAI request/decoder is reused; Azure's error
 * bodies are OpenAI-shaped ({"error": {"code", "message"}}) and decode the same way. */
#include <curl/curl.h>

#include "core/alloc.h"
#include "upstream/openai.h"

static int azure_start(const sl_upstream_call_t *call, void **state)
{
    const sl_provider_cfg_t *p = call->provider;
    /* The deployment names the model on Azure: config, else the target's or client's name. */
    const char *deployment = p->deployment         ? p->deployment
                             : call->target->model ? call->target->model
                                                   : call->req->model;
    char *dep = curl_easy_escape(NULL, deployment, 0);
    char *ver = curl_easy_escape(NULL, p->api_version, 0);
    sl_buf_t url;
    sl_buf_init(&url);
    sl_buf_printf(&url, "%s/openai/deployments/%s/chat/completions?api-version=%s", p->base_url,
                  dep ? dep : "", ver ? ver : "");
    curl_free(dep);
    curl_free(ver);
    sl_headers_t h;
    sl_headers_init(&h);
    int rc = p->api_key ? sl_headers_add(&h, "api-key", p->api_key) : 0;
    if (rc == 0)
        rc = sl_oai_start(call, url.data, &h, false, state);
    sl_headers_dispose(&h); /* empty once sl_oai_start took it */
    sl_buf_dispose(&url);
    return rc;
}

const sl_provider_ops_t sl_provider_azure = {
    .type = "azure",
    .start = azure_start,
    .cancel = sl_xfer_cancel,
    .resume = sl_xfer_resume,
};
