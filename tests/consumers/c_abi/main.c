/* The C consumer of the installed C ABI (llm_stream_c.h, libllm_stream_c), built by CMake's
   find_package(llm_stream COMPONENTS c) and by `pkg-config --cflags --libs llm_stream_c`: a config with
   no base URL streams the stub's reply through the library's real pipeline, no network. */
#include "llm_stream_c.h"

#include <stdio.h>

int main(void) {
    lls_config* config = lls_config_new();
    lls_client* client = NULL;
    lls_stream* stream = NULL;
    const char* chunk = NULL;
    size_t size = 0;
    size_t total = 0;
    int status = 1;
    if (config == NULL) goto done;
    client = lls_client_new(config);
    if (client == NULL) goto done;
    stream = lls_client_stream_prompt(client, "hello", NULL);
    if (stream == NULL) goto done;
    while ((chunk = lls_stream_next_chunk(stream, &size)) != NULL) total += size;
    if (lls_stream_error(stream)->code != LLS_OK || total == 0) goto done;
    printf("consumer_c: %lu bytes streamed by %s\n", (unsigned long)total, lls_version());
    status = 0;
done:
    if (status != 0) fprintf(stderr, "consumer_c: no reply streamed\n");
    lls_stream_free(stream);
    lls_client_free(client);
    lls_config_free(config);
    return status;
}
