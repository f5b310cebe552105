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
 *     escaped;
 *   - as GET /handshake's material (sections 6 and 15): a handshake record,
 *     laid out as
 *         byte 0      messages recorded: count % (MAX_RECORDED + 4), those
 *                     past MAX_RECORDED counted as missed
 *         byte 1      bit 0: a certificate was presented, bit 1 too: it
 *                     was authorized (else explain_refusal says why not);
 *                     bit 2: the session is TLS 1.3's, else TLS 1.2's;
 *                     bit 3: verifying failed (an error code from byte 5)
 *         bytes 2-5   GnuTLS's verification status (big-endian)
 *         bytes 6-7   where the rest splits: the ClientHello body takes
 *                     split % (rest + 1) bytes, the CertificateRequest body
 *                     what is left
 *         then        a byte per message: bit 7 from the client, the rest
 *                     picks its type (every one message_name knows, and one
 *                     it does not)
 *         then        the ClientHello body, then the CertificateRequest body;
 *     draw_handshake builds the page, HTML and plain text, with the server's
 *     end of a real handshake made once here (fuzz_session: a session
 *     from gnutls_init alone crashes GnuTLS); draw_client_hello, and
 *     draw_certificate_request as TLS 1.3 and as TLS 1.2 (the session says
 *     which on the server), are called on the bodies directly too; and the
 *     whole input as a DER certificate (draw_names), as a DER CRL in force
 *     (draw_crls) and as a name's text (say_quoted).  The plain text must
 *     hold no control byte but '\n', and only UTF-8 that log_escape lets
 *     through; the HTML only our own tags (a list of names, attributes with
 *     plain values), no '>' or '"' outside them, no "<script" or "<img" in
 *     any case, every '&' an entity, its UTF-8 whole (a line cut short
 *     inside an entity or a character was a bug: der-cert-quotes);
 *     no line longer than DRAWN_LINE (from DRAWN_TEXT), and a page no longer
 *     than handshake_page_bound (DRAWN_TEXT, DRAWN_CERTS, MAX_RECORDED and
 *     the bodies' sizes, which the CA names and, here only, repeated
 *     supported_versions grow with); the record of the two real handshakes
 *     must show their CA name and certificate.  The seeds hs-* are records
 *     with real bodies (curl's TLS 1.3 and 1.2 ClientHellos, gnutls-cli's
 *     with no extensions, openssl's, our CertificateRequests of both kinds)
 *     or hostile CA names; der-* are certificates and a CRL (no number) with
 *     markup in their names; dn-markup a name's text.
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

/* ---- GET /handshake: the record drawn (sections 6 and 15) ---- */

/* A line of the drawn page, at most: a quoted text is cut by log_escape to
 * DRAWN_TEXT bytes and "...", which html_escape makes at most 6 times as
 * long, after a label of ours (under 100 bytes); our own lines are shorter
 * than that (the longest, the signature algorithms, under 1,300 bytes). */
#define DRAWN_LINE (100 + 6 * (DRAWN_TEXT + 4))
#define DRAWN_ROW 512           /* a row of the diagram without what it carried: our markup */
#define DRAWN_FIXED 2048        /* the headings, the table's head, the verdict: ours */

/* The most lines of "what it carried" one message can have.  Only the
 * ClientHello and the CertificateRequest grow with their bodies: a line per
 * supported_versions extension (5 bytes at least; GnuTLS refuses a second
 * one in a real handshake, so only here), a line per CA name (4 bytes at
 * least) and two per extension; the client's chain is cut at DRAWN_CERTS. */
static size_t carried_lines_max(size_t hello_size, size_t request_size)
{
    size_t most = 2 * DRAWN_CERTS + 1;                  /* subject and issuer, "and N more" */
    if (2 + hello_size / 4 > most)
        most = 2 + hello_size / 4;
    if (3 + request_size / 2 > most)
        most = 3 + request_size / 2;
    return most;
}

static size_t handshake_page_bound(size_t hello_size, size_t request_size)
{
    return DRAWN_FIXED + (6 + 2) * DRAWN_LINE         /* the check, the CRLs' line */
           + MAX_RECORDED * (DRAWN_ROW + carried_lines_max(hello_size, request_size) * DRAWN_LINE);
}

/* Plain text: no control byte but '\n', and its UTF-8 whole and shown as
 * itself (log_escape's promise). */
static void check_plain_page(const char *page)
{
    const unsigned char *p = (const unsigned char *)page;
    while (*p) {
        if (*p < 0x80) {
            assert(*p == '\n' || (*p >= 0x20 && *p != 0x7f));
            p++;
            continue;
        }
        size_t len = utf8_length(p, strlen((const char *)p));
        assert(len > 0 && !deceptive(p, len));
        p += len;
    }
}

/* HTML: only our tags, with plain attribute values; outside them no '>'
 * and no '"'; every '&' one of html_escape's entities, its UTF-8 whole
 * and shown as itself; and no "<script" or "<img" in any spelling.  Our
 * markup never holds these two: a page with them would run or load what a
 * certificate's maker chose. */
static void check_html_page(const char *html)
{
    static const char *const tags[] = {"title", "h1", "h2",   "p",       "a",  "table", "tr",
                                       "th",    "td", "svg", "line", "polygon", "br", "code"};
    static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
    /* Our own words with a quote in them: blanked before the scan (text
     * from the input has its quotes as &quot;, so it never matches). */
    static const char *const own_quotes[] = {"\"yes\""};
    assert(strcasestr(html, "<script") == NULL && strcasestr(html, "<img") == NULL);
    char *page = strdup(html);
    assert(page);
    for (size_t i = 0; i < sizeof own_quotes / sizeof own_quotes[0]; i++)
        for (char *q = page; (q = strstr(q, own_quotes[i])) != NULL;)
            memset(q, ' ', strlen(own_quotes[i]));
    const char *p = page;
    while (*p) {
        unsigned char c = (unsigned char)*p;
        assert(c != '>' && c != '"');
        assert(c == '\n' || (c >= 0x20 && c != 0x7f));
        if (c == '&') {         /* a whole entity: no line was cut inside one */
            bool whole = false;
            for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++)
                whole = whole || strncmp(p, entities[i], strlen(entities[i])) == 0;
            assert(whole);
        }
        if (c >= 0x80) {        /* a whole character: nor inside one */
            size_t len = utf8_length((const unsigned char *)p, strlen(p));
            assert(len > 0 && !deceptive((const unsigned char *)p, len));
            p += len;
            continue;
        }
        if (c != '<') {
            p++;
            continue;
        }
        p++;                                            /* a tag: <name>, </name>, <name a="v"/> */
        if (*p == '/')
            p++;
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789");
        bool known = false;
        for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
            known = known || (strlen(tags[i]) == n && strncmp(p, tags[i], n) == 0);
        assert(known);
        p += n;
        while (*p == ' ') {                             /* attributes: name="plain value" */
            p++;
            n = strspn(p, "abcdefghijklmnopqrstuvwxyz-0123456789");
            assert(n > 0 && p[n] == '=' && p[n + 1] == '"');
            p += n + 2;
            p += strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,./");
            assert(*p == '"');
            p++;
        }
        if (*p == '/')
            p++;
        assert(*p == '>');
        p++;
    }
    free(page);
}

/* The page's length at most bound, and each of its lines (a row of the
 * diagram with its first line in HTML) at most DRAWN_LINE. */
static void check_drawn(const char *page, bool html, size_t bound)
{
    assert(page);
    assert(strlen(page) <= bound);
    for (const char *line = page; *line;) {
        size_t len = strcspn(line, "\n");
        const char *br = html ? strstr(line, "<br>") : NULL;
        if (br && (size_t)(br - line) < len)
            len = (size_t)(br - line) + 4;
        assert(len <= (html ? DRAWN_ROW : 0) + DRAWN_LINE);
        line += len + (line[len] == '\n');
    }
    if (html)
        check_html_page(page);
    else
        check_plain_page(page);
}

/* One message's lines as a page of their own (draw_message takes what
 * say() gathered). */
static char *drawn_alone(struct drawing *d, bool from_client, const char *name)
{
    draw_message(d, from_client, name);
    return text_take(&d->out);
}

/* The session the page asks about: the server's end of a real handshake,
 * made once per version over a socketpair, with a key and certificate
 * made here (CN=fuzz, the CA we trust and the client's certificate too).
 * A session from gnutls_init alone would not do: GnuTLS 3.7.9's
 * gnutls_ciphersuite_get reads through a NULL pointer before a handshake
 * (the server asks it only after one).  Section 6 records these two
 * handshakes, and their pages must show what was sent. */
static gnutls_certificate_credentials_t fuzz_credentials(void)
{
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
    gnutls_certificate_credentials_t creds;
    time_t now = time(NULL);
    assert(gnutls_x509_privkey_init(&key) == 0 && gnutls_x509_crt_init(&crt) == 0);
    assert(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                        GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) == 0);
    assert(gnutls_x509_crt_set_version(crt, 3) == 0 && gnutls_x509_crt_set_serial(crt, "\x01", 1) == 0);
    assert(gnutls_x509_crt_set_activation_time(crt, now - 3600) == 0);
    assert(gnutls_x509_crt_set_expiration_time(crt, now + 86400) == 0);
    assert(gnutls_x509_crt_set_dn(crt, "CN=fuzz", NULL) == 0 && gnutls_x509_crt_set_key(crt, key) == 0);
    assert(gnutls_x509_crt_set_basic_constraints(crt, 1, -1) == 0);
    assert(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) == 0);
    assert(gnutls_certificate_allocate_credentials(&creds) == 0);
    assert(gnutls_certificate_set_x509_key(creds, &crt, 1, key) == 0);
    assert(gnutls_certificate_set_x509_trust(creds, &crt, 1) == 1);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
    return creds;
}

static gnutls_session_t handshaken(gnutls_certificate_credentials_t creds, const char *priority,
                                   struct connection *conn)
{
    int fds[2];
    gnutls_session_t server, client;
    assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    assert(gnutls_init(&server, GNUTLS_SERVER | GNUTLS_NONBLOCK) == 0);
    assert(gnutls_init(&client, GNUTLS_CLIENT | GNUTLS_NONBLOCK) == 0);
    gnutls_session_t both[2] = {server, client};
    for (int i = 0; i < 2; i++) {
        assert(gnutls_priority_set_direct(both[i], priority, NULL) == 0);
        assert(gnutls_credentials_set(both[i], GNUTLS_CRD_CERTIFICATE, creds) == 0);
        gnutls_transport_set_int(both[i], fds[i]);
    }
    gnutls_certificate_server_set_request(server, GNUTLS_CERT_REQUEST);
    record_handshake(server, conn);                     /* section 6, as start_session does */
    int done[2] = {GNUTLS_E_AGAIN, GNUTLS_E_AGAIN};
    for (int round = 0; round < 1000 && (done[0] < 0 || done[1] < 0); round++)
        for (int i = 0; i < 2; i++)
            if (done[i] < 0) {
                done[i] = gnutls_handshake(both[i]);
                assert(done[i] == 0 || !gnutls_error_is_fatal(done[i]));
            }
    assert(done[0] == 0 && done[1] == 0);
    gnutls_deinit(client);
    close(fds[0]);
    close(fds[1]);
    return server;
}

static gnutls_session_t fuzz_session(bool tls13)
{
    static gnutls_session_t sessions[2];                /* made once, kept to the end */
    static struct connection conns[2];
    if (sessions[0] == NULL) {
        gnutls_certificate_credentials_t creds = fuzz_credentials();    /* kept too */
        sessions[0] = handshaken(creds, "NORMAL:-VERS-ALL:+VERS-TLS1.2", &conns[0]);
        sessions[1] = handshaken(creds, "NORMAL:-VERS-ALL:+VERS-TLS1.3", &conns[1]);
        for (int v = 0; v < 2; v++) {
            assert(gnutls_protocol_get_version(sessions[v]) == (v ? GNUTLS_TLS1_3 : GNUTLS_TLS1_2));
            struct handshake_record *r = conns[v].record;
            assert(r && r->count >= 9 && r->missed == 0 && r->client_hello.size > 0 &&
                   r->certificate_request.size > 0);
            struct identity id = {.presented = true, .authorized = true};
            char *page = draw_handshake(sessions[v], r, &id, 0, 0, false);
            assert(page && strstr(page, "    CA name: CN=fuzz\n") &&
                   strstr(page, "    certificate 1 subject: CN=fuzz\n") &&
                   strstr(page, v ? "versions offered: TLS1.3\n" : "versions offered: up to TLS1.2"));
            free(page);
            free_record(&conns[v]);
        }
    }
    return sessions[tls13];
}

/* The bytes as body, in memory of exactly their size: ASan sees a read past
 * the end by the readers of section 15. */
static gnutls_datum_t exact_copy(const uint8_t *data, size_t size)
{
    gnutls_datum_t d = {NULL, (unsigned)size};
    if (size > 0) {
        d.data = malloc(size);
        assert(d.data);
        memcpy(d.data, data, size);
    }
    return d;
}

static void check_handshake_page(const uint8_t *data, size_t size)
{
    static const unsigned types[] = {
        GNUTLS_HANDSHAKE_HELLO_REQUEST,       GNUTLS_HANDSHAKE_CLIENT_HELLO,
        GNUTLS_HANDSHAKE_SERVER_HELLO,        GNUTLS_HANDSHAKE_HELLO_RETRY_REQUEST,
        GNUTLS_HANDSHAKE_NEW_SESSION_TICKET,  GNUTLS_HANDSHAKE_END_OF_EARLY_DATA,
        GNUTLS_HANDSHAKE_ENCRYPTED_EXTENSIONS, GNUTLS_HANDSHAKE_CERTIFICATE_PKT,
        GNUTLS_HANDSHAKE_SERVER_KEY_EXCHANGE, GNUTLS_HANDSHAKE_CERTIFICATE_REQUEST,
        GNUTLS_HANDSHAKE_SERVER_HELLO_DONE,   GNUTLS_HANDSHAKE_CERTIFICATE_VERIFY,
        GNUTLS_HANDSHAKE_CLIENT_KEY_EXCHANGE, GNUTLS_HANDSHAKE_FINISHED,
        GNUTLS_HANDSHAKE_CERTIFICATE_STATUS,  GNUTLS_HANDSHAKE_KEY_UPDATE,
        GNUTLS_HANDSHAKE_COMPRESSED_CERTIFICATE_PKT, GNUTLS_HANDSHAKE_CLIENT_HELLO_V2,
        GNUTLS_HANDSHAKE_SUPPLEMENTAL,      /* one message_name does not know */
    };
    if (size < 8)
        return;
    struct handshake_record r;
    memset(&r, 0, sizeof r);
    unsigned count = data[0] % (MAX_RECORDED + 4);
    struct identity id = {.presented = data[1] & 1, .authorized = (data[1] & 3) == 3};
    gnutls_session_t session = fuzz_session(data[1] & 4);
    unsigned status = (unsigned)data[2] << 24 | (unsigned)data[3] << 16 | (unsigned)data[4] << 8 | data[5];
    int ret = data[1] & 8 ? -(int)(data[5] + 1) : 0;   /* any GnuTLS error, or none */
    if (id.presented && !id.authorized)
        explain_refusal(ret, status, &id);                  /* the 403's reason, as section 3 */
    size_t split = (size_t)data[6] << 8 | data[7];
    const uint8_t *p = data + 8, *end = data + size;
    for (unsigned i = 0; i < count && p < end; i++, p++) {
        if (r.count == MAX_RECORDED) {
            r.missed++;
            continue;
        }
        r.messages[r.count].type = types[(*p & 0x7f) % (sizeof types / sizeof types[0])];
        r.messages[r.count++].from_client = *p & 0x80;
    }
    size_t rest = (size_t)(end - p), hello_size = split % (rest + 1);
    r.client_hello = exact_copy(p, hello_size);
    r.certificate_request = exact_copy(p + hello_size, rest - hello_size);
    size_t bound = handshake_page_bound(r.client_hello.size, r.certificate_request.size);

    for (int html = 0; html < 2; html++) {
        char *page = draw_handshake(session, &r, &id, ret, status, html);
        check_drawn(page, html, bound);
        /* one row per message recorded, and a row for those missed */
        size_t rows = 0;
        if (html) {
            for (const char *q = page; (q = strstr(q, "<tr><td")) != NULL; q++)
                rows++;
        } else {
            for (const char *line = page; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
                rows += strncmp(line, "client -> server  ", 18) == 0 ||
                        strncmp(line, "server -> client  ", 18) == 0;
        }
        assert(rows == (size_t)r.count + (html && r.missed ? 1 : 0));
        free(page);

        /* the two bodies directly, the request read both ways */
        struct drawing d = {.html = html};
        draw_client_hello(&d, &r.client_hello);
        page = drawn_alone(&d, true, "ClientHello");
        check_drawn(page, html, DRAWN_ROW + carried_lines_max(r.client_hello.size, 0) * DRAWN_LINE);
        free(page);
        for (int tls13 = 0; tls13 < 2; tls13++) {
            struct drawing dr = {.html = html};
            draw_certificate_request(&dr, &r.certificate_request, tls13);
            page = drawn_alone(&dr, false, "CertificateRequest");
            check_drawn(page, html,
                        DRAWN_ROW + carried_lines_max(0, r.certificate_request.size) * DRAWN_LINE);
            free(page);
        }
    }
    free(r.client_hello.data);
    free(r.certificate_request.data);
    free_identity(&id);
}

/* The whole input as a certificate's DER (subject and issuer, each a
 * line), as a CRL in force (its issuer on the page), and as the text of a
 * name: whatever its maker put in, a line of text, bounded. */
static void check_drawn_names(const uint8_t *data, size_t size)
{
    gnutls_datum_t der = exact_copy(data, size), pem = {NULL, 0};
    bool crl = gnutls_pem_base64_encode2("X509 CRL", &der, &pem) == 0;
    for (int html = 0; html < 2; html++) {
        struct drawing d = {.html = html};
        draw_names(&d, &der, 1);
        say_quoted(&d, "CA name", (const char *)data, size);
        if (crl) {
            clients.crl_text = pem;                     /* what section 9 keeps in force */
            draw_crls(&d);
            clients.crl_text = (gnutls_datum_t){NULL, 0};
        }
        char *page = drawn_alone(&d, false, "Certificate");
        check_drawn(page, html, DRAWN_ROW + 4 * DRAWN_LINE);
        free(page);
    }
    gnutls_free(pem.data);
    free(der.data);
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
    check_handshake_page(data, size);
    check_drawn_names(data, size);
    return 0;
}
