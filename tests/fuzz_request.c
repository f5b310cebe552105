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
 *     note_visitor and format_log_line must make one line with no control byte;
 *   - as part 2's input: a form body (form_field, form_decode), a serial
 *     (parse_serial) and an invited name (bad_name); put around an
 *     invitation code in a request line, under any spelling of "code",
 *     remember_request_line must hide the code; and as an account's name
 *     and serials, certificates_html must build a whole page with the name
 *     escaped.
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
    /* part 2's header fields: inside the head, the length a number */
    assert(req.content_length >= -1 && req.content_length <= 999999999);
    assert(req.query == NULL || (req.query >= head && req.query + req.query_len <= head + head_len));
    assert(req.origin == NULL || (req.origin >= head && req.origin + req.origin_len <= head + head_len));
    assert(req.host == NULL || (req.host >= head && req.host + req.host_len <= head + head_len));
    (void)from_our_page(&req);
}

/* Part 2's form decoding, on the bytes as a body: a field decodes into no
 * more than its buffer, with no control byte. */
static void check_form(const char *data, size_t size)
{
    static const char *const fields[] = {"code", "passphrase", "legacy", "serial"};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        char out[64];
        memset(out, 'Z', sizeof out);
        int found = form_field(data, size, fields[f], out, 33);
        assert(found >= -1 && found <= 1);
        assert(out[33] == 'Z');                 /* not a byte past cap */
        if (found == 1) {
            size_t n = strlen(out);
            assert(n < 33);
            for (size_t i = 0; i < n; i++)
                assert((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
        }
    }
    /* a serial: only hex digits go in, and the file name that comes out is
     * upper-case hex, so it can't reach outside issued/ */
    char text[64], hex[2 * MAX_SERIAL + 1];
    unsigned char der[MAX_SERIAL];
    size_t len;
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    if (parse_serial(text, der, &len, hex)) {
        /* a positive DER INTEGER: no needless 00, a 00 before a high bit;
         * the hex is its bytes without that 00, as openssl prints them */
        assert(len >= 1 && len <= MAX_SERIAL);
        assert(len == 1 || der[0] != 0 || (der[1] & 0x80));
        assert((der[0] & 0x80) == 0);
        size_t sign = der[0] == 0 && len > 1 ? 1 : 0;
        assert(strlen(hex) == 2 * (len - sign));
        assert(strspn(hex, "0123456789ABCDEF") == strlen(hex));
    }
    /* an invited name: bad_name lets through only what log_escape keeps as
     * it is, so the name reads the same in the page and the log */
    if (bad_name(text) == NULL) {
        char logged[4 * sizeof text];
        log_escape(logged, sizeof logged, text, strlen(text));
        assert(strchr(text, '"') != NULL || strchr(text, '\\') != NULL ||
               strcmp(logged, text) == 0);
    }
}

/* The request line in the log: an invitation code never shows, however
 * its field's name is spelled, wherever the fuzzed bytes put it. */
static void check_redaction(const char *data, size_t size)
{
    static const char *const spellings[] = {"code", "%63ode", "CODE", "co%64e", "c%4Fde"};
    int cut = (int)(size < 100 ? size : 100);
    if (memmem(data, (size_t)cut, "F00DCAFE", 8) != NULL)
        return;                 /* the input holds the digits itself */
    for (size_t k = 0; k < sizeof spellings / sizeof spellings[0]; k++) {
        struct connection conn;
        memset(&conn, 0, sizeof conn);
        char line[400];
        int n = snprintf(line, sizeof line, "GET /enroll?%.*s&%s=F00DCAFEF00DCAFEF00DCAFEF00DCAFE&%.*s HTTP/1.1",
                         cut, data, spellings[k], cut, data);
        remember_request_line(&conn, line, (size_t)n);
        /* the line may be cut at 160 bytes, but no 8 digits of the code survive
         * (upper-case: log_escape writes \xNN in lower case) */
        assert(strstr(conn.request_line, "F00DCAFE") == NULL);
    }
}

/* Part 2's list page, built from hostile parts: an account's name and
 * serials as bytes from the input.  The page is whole (the builder grows),
 * and no byte of the name reaches it as markup. */
static void check_certificates_page(const char *data, size_t size)
{
    struct account acct;
    memset(&acct, 0, sizeof acct);
    memcpy(acct.id, "0123456789ABCDEF", 17);
    size_t n = size < MAX_NAME ? size : MAX_NAME;
    memcpy(acct.name, data, n);
    acct.name[n] = '\0';
    size_t count = size % 50;
    struct listed *list = calloc(count ? count : 1, sizeof *list);
    assert(list);
    for (size_t i = 0; i < count; i++) {
        size_t at = i % size, len = size - at < 20 ? size - at : 20;   /* count > 0: size > 0 */
        to_hex((const unsigned char *)data + at, len, list[i].serial);
        list[i].issued = (time_t)(i * 86400);
        list[i].state = i % 3 == 0 ? "revoked" : "valid";
    }
    char *html = certificates_html(&acct, list, count, count ? list[0].serial : "");
    assert(html);
    char *name = html_escape(acct.name);
    static const char heading[] = "<h1>The certificates of ";
    size_t h = sizeof heading - 1, nl = name ? strlen(name) : 0;
    assert(name && strncmp(html, heading, h) == 0 && strncmp(html + h, name, nl) == 0);
    assert(strncmp(html + h + nl, "</h1>", 5) == 0);   /* the name stayed inside its heading */
    free(name);
    free(html);
    free(list);
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
    check_form((const char *)data, size);
    check_redaction((const char *)data, size);
    check_certificates_page((const char *)data, size);
    return 0;
}
