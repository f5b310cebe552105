/*
 * tests/fuzz_request.c - libFuzzer harness for server.c's own parsing code.
 *
 * It includes server.c itself (renaming its main), so the functions fuzzed
 * are exactly the ones the server runs, with no fuzz-only branches in the
 * teaching file.  Each input is used three ways:
 *   - as bytes received from a client: find_head_end, parse_request and the
 *     routing helpers, as serve_connection calls them;
 *   - as the log's copy of a request line: remember_request_line;
 *   - as a certificate name: unescape_dn_value, then html_escape.
 * Build and run: make fuzz (FUZZ_SECONDS=60 by default).
 */
#define main server_main
#include "../server.c"
#undef main

#include <assert.h>
#include <stdint.h>

static void check_request(const char *data, size_t size)
{
    char head[MAX_REQUEST_HEAD];
    size_t used = size < sizeof head ? size : sizeof head;
    memcpy(head, data, used);

    size_t head_len = find_head_end(head, used);
    assert(head_len <= used);
    if (head_len == 0)
        return;
    struct request req;
    memset(&req, 0, sizeof req);
    int status = parse_request(head, head_len, &req);
    assert(status == 0 || status == 400 || status == 505);
    if (status != 0) {
        assert(req.problem != NULL);
        return;
    }
    /* what the server relies on after a successful parse */
    assert(req.method >= head && req.method + req.method_len <= head + head_len);
    assert(req.path >= head && req.path + req.path_len <= head + head_len);
    assert(req.method_len > 0 && req.path_len > 0 && req.path[0] == '/');
    assert(memchr(req.path, '?', req.path_len) == NULL);
    (void)method_is(&req, "GET");
    (void)path_is(&req, "/authenticate");
}

static void check_log_copy(const char *data, size_t size)
{
    struct connection conn;
    memset(&conn, 0, sizeof conn);
    remember_request_line(&conn, data, size);
    for (const char *p = conn.request_line; *p; p++)
        assert(*p >= 0x20 && *p < 0x7f && *p != '"');
}

static void check_name(const char *data, size_t size)
{
    char *name = malloc(size + 1);
    assert(name);
    memcpy(name, data, size);
    name[size] = '\0';
    unescape_dn_value(name);
    char *html = html_escape(name);
    assert(html);
    assert(strpbrk(html, "<>\"'") == NULL);
    /* every & starts one of the five entities */
    for (const char *p = strchr(html, '&'); p; p = strchr(p + 1, '&'))
        assert(!strncmp(p, "&amp;", 5) || !strncmp(p, "&lt;", 4) || !strncmp(p, "&gt;", 4) ||
               !strncmp(p, "&quot;", 6) || !strncmp(p, "&#39;", 5));
    free(html);
    free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_request((const char *)data, size);
    check_log_copy((const char *)data, size);
    check_name((const char *)data, size);
    return 0;
}
