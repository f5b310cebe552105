/*
 * tests/fuzz_request.c - libFuzzer harness for server.c's own parsing code.
 *
 * It includes server.c itself (renaming its main), so the functions fuzzed
 * are exactly the ones the server runs, with no fuzz-only branches in the
 * teaching file.  Each input is used three ways:
 *   - as bytes received from a client: skip_empty_lines, find_head_end,
 *     parse_request and the routing helpers, as the server calls them;
 *   - as a certificate name: unescape_dn_value, then html_escape;
 *   - as text a client chose, on its way into the log: log_escape must give
 *     text with no control byte, no bare quote, no broken or deceptive UTF-8,
 *     from which the escapes give back exactly the bytes that went in; and
 *     as request line, subject DN and GnuTLS's reason, remember_request_line,
 *     note_visitor and format_log_line must make one line with no control byte.
 * Build and run: make fuzz (FUZZ_SECONDS=60 by default).
 */
#define main server_main
#include "../server.c"
#undef main

#include <assert.h>
#include <stdint.h>

static void check_request(const char *data, size_t size)
{
    char buf[MAX_REQUEST_HEAD];
    size_t used = size < sizeof buf ? size : sizeof buf;
    memcpy(buf, data, used);

    /* as read_request_head does: past empty lines, up to the empty line */
    size_t skip = skip_empty_lines(buf, used);
    assert(skip <= used);
    const char *head = buf + skip;
    size_t head_len = find_head_end(head, used - skip);
    assert(head_len <= used - skip);
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
    /* what the server relies on after a successful parse: the path is in
     * the head, or "/" for an absolute target with none ("https://host") */
    assert(req.method >= head && req.method + req.method_len <= head + head_len);
    assert((req.path >= head && req.path + req.path_len <= head + head_len) ||
           (req.path_len == 1 && strcmp(req.path, "/") == 0));
    assert(req.method_len > 0 && req.path_len > 0 && req.path[0] == '/');
    assert(memchr(req.path, '?', req.path_len) == NULL);
    (void)method_is(&req, "GET");
    (void)path_is(&req, "/authenticate");
}

/* Undo log_escape: \\ \" \xNN.  Returns the length, or -1 if out holds an
 * escape log_escape never writes or a bare quote. */
static long log_unescape(const char *in, char *out)
{
    size_t o = 0;
    for (const char *p = in; *p; p++) {
        if (*p == '"')
            return -1;
        if (*p != '\\') {
            out[o++] = *p;
            continue;
        }
        p++;
        if (*p == '\\' || *p == '"') {
            out[o++] = *p;
        } else if (*p == 'x' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char hex[3] = {p[1], p[2], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            return -1;
        }
    }
    return (long)o;
}

static void check_log_escape(const char *data, size_t size)
{
    static char escaped[4 * 4096 + 8], back[4096 + 8];
    size_t n = size < 4096 ? size : 4096;
    log_escape(escaped, sizeof escaped, data, n);     /* big enough: never cut */
    for (const unsigned char *p = (const unsigned char *)escaped; *p;) {
        assert(*p >= 0x20 && *p != 0x7f);
        size_t len = *p < 0x80 ? 1 : utf8_length(p, strlen((const char *)p));
        assert(len > 0 && !deceptive(p, len));
        p += len;
    }
    long back_len = log_unescape(escaped, back);
    assert(back_len == (long)n && memcmp(back, data, n) == 0);
    /* and cut short, it still ends on a whole escape */
    char small[40];
    log_escape(small, sizeof small, data, n);
    assert(strlen(small) < sizeof small && log_unescape(small, back) >= 0);
}

static void check_log_line(const char *data, size_t size)
{
    char *text = malloc(size + 1);
    assert(text);
    memcpy(text, data, size);
    text[size] = '\0';
    for (int visitor = 0; visitor < 3; visitor++) {     /* none, refused, admitted */
        struct connection conn;
        struct identity id = {.presented = visitor > 0, .authorized = visitor == 2,
                              .subject_dn = text, .log_reason = text,
                              .page_reason = "it is not trusted"};
        char line[1024];
        memset(&conn, 0, sizeof conn);
        snprintf(conn.peer, sizeof conn.peer, "127.0.0.1");
        remember_request_line(&conn, data, size);
        note_visitor(&conn, &id);
        size_t len = format_log_line(&conn, line, sizeof line);
        assert(len == strlen(line) && len > 0 && line[len - 1] == '\n');
        for (size_t i = 0; i + 1 < len; i++)
            assert((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
    }
    free(text);
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
    check_name((const char *)data, size);
    check_log_escape((const char *)data, size);
    check_log_line((const char *)data, size);
    return 0;
}
