/*
 * server.c - "Authentication using HTTPS client certificates", told in C.
 *
 * The tutorial (Node.js + express, 2017) builds an HTTPS server that asks
 * every visitor for a client certificate and answers:
 *
 *   GET /              a landing page with a "Log in" link, for everyone;
 *   GET /authenticate  200 "Hello Alice, ..."   certificate issued by our CA,
 *                      403 "Sorry Bob, ..."     certificate we don't trust,
 *                      401 "Sorry, but ..."     no certificate at all.
 *
 * This file does the same with GnuTLS and the C library: make && ./server.
 *
 * WHERE EACH STEP OF THE TUTORIAL LIVES
 *   openssl req -x509 ... (the server's key, cert) gencerts.sh, "Server: a new"
 *   openssl req -newkey ... (Alice's, Bob's CSRs)  gencerts.sh, "Alice:", "Bob:"
 *   openssl x509 -req ... (signing the CSRs)       gencerts.sh, "Alice's CSR ...", "Bob's CSR ..."
 *   openssl pkcs12 -export ... (the .p12 files)    gencerts.sh, "... bundled as"
 *   const opts = { key, cert, ca }                 section 1, load_credentials
 *   requestCert: true, rejectUnauthorized: false   section 1, start_session
 *   app.get('/'), app.get('/authenticate')         section 2, route
 *   "because we advertise it using the list"       section 1, load_credentials
 *   ... seen by each visitor (GET /handshake)      section 6, record_handshake_message
 *   req.client.authorized                          section 3, check_client_certificate
 *   req.connection.getPeerCertificate()            section 3, read_names
 *   the three res.send(...) pages: 200, 403, 401   section 4, greeting
 *   https.createServer(opts, app).listen(9999)     section 13, open_listener, accept_loop
 *   curl --cert alice.p12 ... (and bob.p12)        README.md, "Two commands"; test.sh
 *   importing alice.p12 into a browser             README.md, "Try it in a browser"
 *
 * READING ORDER
 *   THE LESSON, to the next banner: the story of one connection in five
 *     steps (1. the handshake, 2. the request, 3. the certificate check,
 *     4. the answer, 5. the close), then a section for each step.
 *   BEYOND THE TUTORIAL (6 to 9): each handshake recorded (GET /handshake
 *     draws it: 15), the alert a failed handshake ends with, TLS policy, CRL.
 *   PART 2 (A to F): the article the tutorial promised: the server issues
 *     and revokes certificates (--enroll).
 *   THE MACHINERY (10 to 17): what express and Node did for the tutorial:
 *     deadlines, the log, HTTP, the accept loop, files, the drawing of GET
 *     /handshake, the command line, main.  10, 11, 13: why a slow or hostile
 *     client can't do harm.
 * LEFT OUT: keep-alive (one request per connection), HTTP/2, session
 * resumption (section 8 says why), OCSP (the CRL is section 9).
 */

#define _GNU_SOURCE     /* ppoll */

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/pkcs12.h>
#include <gnutls/x509.h>

#define DEFAULT_PORT 9999   /* the tutorial's listen(9999); other defaults: section 16 */
#define WHY_SIZE 256        /* an error message: what failed, and why */

/* ========================================================================== */
/*                        THE LESSON: the tutorial in C                       */
/* ========================================================================== */

/* What every connection shares, read-only.  The credentials are handed to
 * each connection apart: they are loaded anew when the CRL changes (section 9). */
struct options;
struct server {
    const struct options *opts;         /* what the command line said (section 16) */
    bool reject_unauthorized;           /* the tutorial's other choice (section 1) */
    gnutls_priority_t priorities;       /* the TLS policy (section 8) */
    int listen_fd, timeout_ms;
};

/* Everything we know about one connection; it ends as one log line. */
struct connection {
    int fd;
    gnutls_certificate_credentials_t creds;    /* opts, as loaded when it began */
    struct shared_creds *newer_creds;   /* newer ones, for the check (section 13) */
    struct timespec deadline;   /* the whole exchange must end by then */
    unsigned long bytes_in;     /* how much the client sent us */
    char peer[INET6_ADDRSTRLEN];
    const char *tls_version;    /* "TLS1.3", once the handshake is done */
    char request_line[160];     /* as sent, cut to fit, escaped (section 12) */
    int status;                 /* HTTP status sent, 0 if none */
    char note[640];             /* who the client is, or what went wrong */
    struct handshake_record *record;    /* its messages, for GET /handshake (section 6) */
};

/* The answer to send: an HTML page, or a file to download. */
struct answer {
    int status;
    char *page;
    size_t page_len;            /* 0: strlen(page) */
    const char *content_type;   /* NULL: text/html */
    char disposition[128];      /* Content-Disposition, if any */
    const char *allow, *vary;   /* the Allow header of a 405; Vary */
    bool head_only;
};

/* The steps, in the sections below (1 and 5) and in the HTTP machinery (12): */
static int start_session(const struct server *srv, struct connection *conn,
                         gnutls_session_t *out);                            /* section 1 */
static int handshake(gnutls_session_t s, struct connection *conn);          /* section 1 */
static int answer_request(gnutls_session_t s, const struct server *srv, struct connection *conn,
                          struct answer *ans);        /* section 12: reads, calls route() */
static int send_response(gnutls_session_t s, struct connection *conn,
                         const struct answer *ans);                         /* section 12 */
static void close_connection(gnutls_session_t s, struct connection *conn);  /* section 5 */
static void free_answer(struct answer *ans);                                /* section 12 */
/* ... and from the sections beyond the lesson: */
static void set_deadline(struct connection *conn, int timeout_ms);          /* section 10 */
static void tls_failure(gnutls_session_t s, struct connection *conn, const char *what,
                        const char *why, int err);                          /* section 7 */
static void release_newer_creds(struct connection *conn);                   /* section 13 */
static void free_record(struct connection *conn);                           /* section 6 */

/* ======================= The story of one connection ====================== */
/* Every connection the accept loop (section 13: listen(9999)) admits runs
 * this, start to end, in a worker thread.  Step N is told in section N.  A
 * failure ends this connection only, in the log, and the next visitor is
 * served. */
static void serve_connection(const struct server *srv, gnutls_certificate_credentials_t creds,
                             int fd, const char *peer)
{
    struct connection conn = {.fd = fd, .creds = creds};
    struct answer ans = {0};
    gnutls_session_t s = NULL;

    snprintf(conn.peer, sizeof conn.peer, "%s", peer);
    set_deadline(&conn, srv->timeout_ms);   /* for the whole visit (section 10) */

    /* 1. The handshake: our key and certificate (opts), and a request for
     *    the client's certificate (requestCert).  Section 1. */
    if (start_session(srv, &conn, &s) < 0 || handshake(s, &conn) < 0)
        goto close;

    /* 2. The request: read (section 12), then routed (app.get).  Section 2.
     * 3. The certificate check, for /authenticate: the route checks the
     *    client's certificate (req.client.authorized).  Section 3.
     * 4. The answer: the route picks the page (res.send), sent here.  Section 4. */
    if (answer_request(s, srv, &conn, &ans) < 0)
        goto close;
    int ret = send_response(s, &conn, &ans);
    if (ret < 0)
        tls_failure(s, &conn, "sending the answer failed", gnutls_strerror(ret), ret);

close:
    /* 5. The close: tell the client the answer is complete, let it read
     *    it, and write the log line.  Section 5. */
    close_connection(s, &conn);
    free_answer(&ans);
    if (s)
        gnutls_deinit(s);
    release_newer_creds(&conn);     /* section 13 */
    free_record(&conn);             /* section 6 */
}

/* ======================= 1. The handshake ================================= */

static int check_readable(const char *path, const char *what, char *why);  /* section 14 */

/* Tutorial: const opts = { key: ..., cert: ..., ca: [ server_cert.pem ] }.
 * We show localhost_*.pem when gencerts.sh made them (README, "Try it in a
 * browser", says why), else server_*.pem; the ca is server_cert.pem.  Loaded
 * at start-up, and again when crl.pem changes (section 9 adds the CRL). */
static int load_credentials(gnutls_certificate_credentials_t *out, const char *key_file,
                            const char *cert_file, const char *ca_file, char *why)
{
    gnutls_certificate_credentials_t creds;

    /* GnuTLS's "Error while reading file" does not say which one; we do. */
    if (check_readable(key_file, "server key", why) < 0 ||
        check_readable(cert_file, "server certificate", why) < 0 ||
        check_readable(ca_file, "CA certificate", why) < 0)
        return -1;
    int ret = gnutls_certificate_allocate_credentials(&creds);
    if (ret < 0) {
        snprintf(why, WHY_SIZE, "credentials: %s", gnutls_strerror(ret));
        return -1;
    }
    /* key + cert: what the server shows every client. GnuTLS also checks here
     * that the key belongs to the certificate. */
    ret = gnutls_certificate_set_x509_key_file(creds, cert_file, key_file, GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        snprintf(why, WHY_SIZE, "cannot use %.100s with %.100s: %s",
                 cert_file, key_file, gnutls_strerror(ret));
        goto fail;
    }
    /* ca: the issuers we admit; GnuTLS names them in its certificate request
     * (the tutorial's "list").  It returns how many it read; none is an error. */
    ret = gnutls_certificate_set_x509_trust_file(creds, ca_file, GNUTLS_X509_FMT_PEM);
    if (ret <= 0) {
        snprintf(why, WHY_SIZE, "no CA certificate in %.150s: %s", ca_file,
                 ret < 0 ? gnutls_strerror(ret) : "the file holds no PEM certificate");
        goto fail;
    }
    *out = creds;
    return 0;
fail:
    gnutls_certificate_free_credentials(creds);
    return -1;
}

/*
 * requestCert: true, rejectUnauthorized: false.
 *
 * GNUTLS_CERT_REQUEST asks for a certificate and lets the handshake finish
 * without one, or with one we don't trust, so that section 3 can look at it
 * and answer 401 or 403 with a page.
 *
 * The tutorial's other choice, rejectUnauthorized: true, is two things in
 * GnuTLS (./server --reject-unauthorized shows it):
 *   GNUTLS_CERT_REQUIRE         a handshake without a certificate fails;
 *   gnutls_session_set_verify_cert2
 *                               a certificate that does not verify fails it
 *                               too.  REQUIRE alone does not check trust:
 *                               Bob's self-signed certificate would pass.
 * Either failure ends the handshake with a TLS alert (section 7), before
 * any page can be sent: the browser shows its own error, the "cryptic HTTPS
 * error message from the browser (ERR_BAD_SSL_CLIENT_AUTH_CERT to be
 * precise)" the tutorial avoids.
 *
 * Either way, the request carries the names of our trusted CAs, and a
 * browser offers only certificates from them: the tutorial's "only Alice's
 * certificate is in the list".  GET /handshake shows the list we sent.
 */
static void use_deadline_transport(gnutls_session_t s, struct connection *conn,
                                   int timeout_ms);                         /* section 10 */
static void note(struct connection *conn, const char *format, ...)          /* section 11 */
    __attribute__((format(printf, 2, 3)));
static void record_handshake(gnutls_session_t s, struct connection *conn);  /* section 6 */

/* What a client's certificate must be made for (section 3 says why). */
static gnutls_typed_vdata_st tls_client_purpose = {
    .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT};

static int start_session(const struct server *srv, struct connection *conn,
                         gnutls_session_t *out)
{
    gnutls_session_t s;
    int ret = gnutls_init(&s, GNUTLS_SERVER);
    if (ret < 0)
        goto fail;
    ret = gnutls_priority_set(s, srv->priorities);
    if (ret < 0)
        goto fail_session;
    ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, conn->creds);
    if (ret < 0)
        goto fail_session;

    if (!srv->reject_unauthorized) {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
    } else {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert2(s, &tls_client_purpose, 1, 0);
    }
    use_deadline_transport(s, conn, srv->timeout_ms);   /* section 10 */
    record_handshake(s, conn);      /* for GET /handshake: section 6 */
    *out = s;
    return 0;

fail_session:
    gnutls_deinit(s);
fail:
    note(conn, "session setup: %s", gnutls_strerror(ret));
    return -1;
}

static const char *cut_short(void);  /* stopping, or gave way to a newcomer (section 13) */

/* The TLS handshake: the client's certificate, if any, arrives here. */
static int handshake(gnutls_session_t s, struct connection *conn)
{
    int ret;
    do {
        ret = gnutls_handshake(s);
    } while (ret < 0 && !gnutls_error_is_fatal(ret) && !cut_short());
    if (ret == GNUTLS_E_PREMATURE_TERMINATION && !cut_short()) {
        /* Not a failure ("non-properly terminated"): browsers open spare
         * connections, and close unused ones before or after a ClientHello. */
        note(conn, conn->bytes_in == 0 ? "closed before a handshake began"
                                       : "the client left during the handshake");
        return -1;
    }
    if (ret < 0) {
        tls_failure(s, conn, "handshake failed", gnutls_strerror(ret), ret);
        return -1;
    }
    conn->tls_version = gnutls_protocol_get_name(gnutls_protocol_get_version(s));
    return 0;
}

/* ======================= 2. The request =================================== */
/* Tutorial: app.get('/', ...) and app.get('/authenticate', ...).  Section 12
 * reads the request by hand, as Node's http module did, and calls route(). */

struct request;
static bool path_is(const struct request *req, const char *path);           /* section 12 */
static bool method_is(const struct request *req, const char *method);       /* section 12 */
static char *authenticate_page(gnutls_session_t s, struct connection *conn,
                               int *status);                                /* section 4 */
static void error_page(struct answer *ans, int status);                     /* section 12 */
static bool part2_route(gnutls_session_t s, const struct server *srv, struct connection *conn,
                        const struct request *req, struct answer *ans);     /* section F */
static void handshake_page(gnutls_session_t s, struct connection *conn,
                           const struct request *req, struct answer *ans);  /* section 15 */
static char *with_handshake_link(char *page);                               /* section 15 */

static void route(gnutls_session_t s, const struct server *srv, struct connection *conn,
                  const struct request *req, struct answer *ans)
{
    bool get = method_is(req, "GET") || method_is(req, "HEAD");

    if (part2_route(s, srv, conn, req, ans))
        return;                     /* part 2's pages, under --enroll: section F */
    if (get && path_is(req, "/")) {
        ans->status = 200;          /* the landing page: unprotected, for everyone */
        ans->page = strdup("<a href=\"authenticate\">Log in using client certificate</a>\n"
                           "<p><a href=\"handshake\">See the handshake</a></p>");   /* section 15 */
    } else if (get && path_is(req, "/authenticate")) {
        ans->page = authenticate_page(s, conn, &ans->status);   /* sections 3 and 4 */
    } else if (get && path_is(req, "/handshake")) {
        handshake_page(s, conn, req, ans);  /* this connection's handshake: section 15 */
    } else if (path_is(req, "/") || path_is(req, "/authenticate") || path_is(req, "/handshake")) {
        ans->allow = "GET, HEAD";
        error_page(ans, 405);
    } else {
        error_page(ans, 404);
    }
}

/* ======================= 3. The certificate check ========================= */
/*
 * Tutorial: req.client.authorized, and req.connection.getPeerCertificate().
 * The handshake has finished (GNUTLS_CERT_REQUEST) whether the client sent a
 * certificate we trust, one we don't, or none; now we look at which.
 */

/* What the tutorial reads from req.client and getPeerCertificate(). */
struct identity {
    bool presented;             /* a certificate came: the tutorial's cert.subject */
    bool authorized;            /* req.client.authorized: it verified against our CA */
    char *subject_cn;           /* cert.subject.CN: "Alice"; the whole DN if there is no CN */
    char *issuer_cn;            /* cert.issuer.CN: "localhost" */
    char *subject_dn;           /* "CN=Alice", for the log */
    char *page_reason;          /* why not authorized, in a reader's words: the 403 page */
    char *log_reason;           /* the same in GnuTLS's words: the log */
};

static char *copy_datum(gnutls_datum_t *d);                                 /* section 14 */
static void unescape_dn_value(char *s);                                     /* section 14 */
enum dn_of { SUBJECT, ISSUER };

/* cert.subject.CN or cert.issuer.CN, whatever its length: ask for the size
 * first, then read it.  With no CN, the whole distinguished name stands in,
 * so the page still says who it was. */
static char *read_common_name(gnutls_x509_crt_t crt, enum dn_of which)
{
    const char *cn_oid = GNUTLS_OID_X520_COMMON_NAME;
    size_t size = 0;
    int ret = which == SUBJECT ? gnutls_x509_crt_get_dn_by_oid(crt, cn_oid, 0, 0, NULL, &size)
                               : gnutls_x509_crt_get_issuer_dn_by_oid(crt, cn_oid, 0, 0, NULL, &size);
    if (ret == GNUTLS_E_SHORT_MEMORY_BUFFER) {
        char *cn = malloc(size);
        if (cn == NULL)
            return NULL;
        ret = which == SUBJECT ? gnutls_x509_crt_get_dn_by_oid(crt, cn_oid, 0, 0, cn, &size)
                               : gnutls_x509_crt_get_issuer_dn_by_oid(crt, cn_oid, 0, 0, cn, &size);
        if (ret == 0) {
            unescape_dn_value(cn);      /* GnuTLS gives "Doe\, John" (RFC 4514) */
            return cn;
        }
        free(cn);
        return NULL;
    }
    gnutls_datum_t dn = {NULL, 0};
    if (ret == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE &&
        (which == SUBJECT ? gnutls_x509_crt_get_dn3(crt, &dn, 0)
                          : gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0)) == 0)
        return copy_datum(&dn);
    return NULL;
}

/* getPeerCertificate(): the names from the client's own certificate, the
 * first one it sent. */
static int read_names(gnutls_session_t s, struct identity *id)
{
    unsigned int count = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &count);
    gnutls_x509_crt_t crt;
    gnutls_datum_t dn = {NULL, 0};
    int ret;

    if (certs == NULL || count == 0)
        return GNUTLS_E_NO_CERTIFICATE_FOUND;
    ret = gnutls_x509_crt_init(&crt);
    if (ret < 0)
        return ret;
    ret = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
    if (ret == 0) {
        id->subject_cn = read_common_name(crt, SUBJECT);
        id->issuer_cn = read_common_name(crt, ISSUER);
        ret = gnutls_x509_crt_get_dn3(crt, &dn, 0);
        if (ret == 0)
            id->subject_dn = copy_datum(&dn);
        if (!id->subject_cn || !id->issuer_cn || !id->subject_dn)
            ret = ret < 0 ? ret : GNUTLS_E_MEMORY_ERROR;
    }
    gnutls_x509_crt_deinit(crt);
    return ret;
}

static int use_current_credentials(gnutls_session_t s, struct connection *conn); /* section 13 */
static void explain_refusal(int ret, unsigned int status, struct identity *id); /* section 7 */

/* req.client.authorized.  Decide on the verification status, never on the
 * return value alone: a certificate from an unknown issuer verifies
 * "successfully" (0) with a status that says it is not trusted.  status
 * starts as INVALID so that any path we did not foresee refuses.  The
 * purpose check (TLS WWW client) refuses a certificate our CA made for
 * servers only; one without any extended key usage may serve any purpose. */
static void check_client_certificate(gnutls_session_t s, struct connection *conn,
                                     struct identity *id)
{
    unsigned int status = GNUTLS_CERT_INVALID, count = 0;

    memset(id, 0, sizeof *id);
    if (gnutls_certificate_get_peers(s, &count) == NULL || count == 0)
        return;                                 /* no certificate at all */
    int ret = use_current_credentials(s, conn); /* the CRL in force now: section 13 */
    if (ret == 0)
        ret = gnutls_certificate_verify_peers(s, &tls_client_purpose, 1, &status);
    id->presented = true;
    id->authorized = ret == 0 && status == 0;   /* req.client.authorized */
    if (!id->authorized)
        explain_refusal(ret, status, id);       /* for the 403 page and the log */

    ret = read_names(s, id);
    if (ret < 0 && id->authorized) {
        /* trusted, yet unreadable: refuse rather than greet "(null)" */
        id->authorized = false;
        free(id->log_reason);
        id->log_reason = strdup(gnutls_strerror(ret));
        id->page_reason = strdup("its names could not be read");
    }
}

/* ======================= 4. The answer ==================================== */
/* Tutorial: res.send(...), the three answers of app.get('/authenticate').
 * send_response (section 12) sends the page with its HTTP headers. */

static char *html_escape(const char *s);                                    /* section 14 */
static char *format_text(const char *fmt, ...)                              /* section 14 */
    __attribute__((format(printf, 1, 2)));

/* The page for what section 3 found, and its status (the tutorial's text
 * shows only ".send(" for the last two, and names the 401 in its words). */
static char *greeting(const struct identity *id, int *status)
{
    char *page = NULL, *who = NULL, *issuer = NULL;

    if (id->presented) {
        /* whoever makes a certificate chooses its names: escape them for
         * HTML, or a CN of "<script>..." runs in the browser */
        who = html_escape(id->subject_cn ? id->subject_cn : "stranger");
        issuer = html_escape(id->issuer_cn ? id->issuer_cn : "an unknown issuer");
        if (who == NULL || issuer == NULL)
            goto out;
    }
    if (id->authorized) {                   /* if (req.client.authorized) */
        *status = 200;
        page = format_text("Hello %s, your certificate was issued by %s!", who, issuer);
    } else if (id->presented) {             /* else if (cert.subject) */
        *status = 403;
        /* the tutorial's sentence, then why */
        page = format_text("Sorry %s, certificates from %s are not welcome here.\n"
                           "<p>Refused because %s.</p>",
                           who, issuer, id->page_reason ? id->page_reason : "it is not trusted");
    } else {
        *status = 401;
        page = strdup("Sorry, but you need to provide a client certificate to continue.");
    }
out:
    free(who);
    free(issuer);
    return page;    /* NULL: out of memory, and answer_request sends a 500 */
}

static void note_visitor(struct connection *conn, const struct identity *id); /* section 11 */
static void free_identity(struct identity *id);                             /* section 14 */

/* GET /authenticate: the check, its log note (section 11), the page. */
static char *authenticate_page(gnutls_session_t s, struct connection *conn, int *status)
{
    struct identity id;
    check_client_certificate(s, conn, &id);
    note_visitor(conn, &id);
    char *page = greeting(&id, status);
    free_identity(&id);
    return with_handshake_link(page);   /* "How did the server know?": section 15 */
}

/* ======================= 5. The close ===================================== */

static void linger_close(struct connection *conn);                          /* section 10 */
static void log_connection(const struct connection *conn);                  /* section 11 */

/* After an answer, close_notify tells the client it is complete; SHUT_WR
 * does not wait for the client's own, since we close anyway.  Then the
 * connection's one line in the log, whatever became of it (section 11). */
static void close_connection(gnutls_session_t s, struct connection *conn)
{
    if (conn->status != 0) {
        int ret = gnutls_bye(s, GNUTLS_SHUT_WR);
        if (ret < 0)
            note(conn, "close_notify: %s", gnutls_strerror(ret));
    }
    linger_close(conn);     /* let the client read our answer or alert first */
    if (conn->status == 0 && cut_short())
        note(conn, "dropped: %s", cut_short());
    log_connection(conn);
}

/* ========================================================================== */
/*      BEYOND THE TUTORIAL: what part 1 does that the tutorial does not      */
/* ========================================================================== */

/* What ./server was told: the files behind opts, and the rest (section 16
 * fills them in). */
struct options {
    int port;                    /* 0 = any free port (the tests use it) */
    int timeout_s;
    char key_file[PATH_MAX];     /* localhost_key.pem, or the tutorial's server_key.pem */
    char cert_file[PATH_MAX];    /* localhost_cert.pem, or the tutorial's server_cert.pem */
    char ca_file[PATH_MAX];      /* the CAs whose clients we admit: server_cert.pem */
    char crl_file[PATH_MAX];     /* certificates those CAs revoked */
    bool crl_required;           /* --crl given: the file must be there */
    bool reject_unauthorized;    /* the tutorial's other choice (section 1) */
    int max_clients;             /* connections in flight at most (section 13) */
    int max_per_address;         /* of those, from one address */
    /* Part 2: the server issues and revokes certificates */
    char certs_dir[PATH_MAX];    /* where invites/, accounts/ and issued/ are kept */
    char issuer_cert_file[PATH_MAX];    /* the CA that signs: server_cert.pem */
    char issuer_key_file[PATH_MAX];     /* and its key: server_key.pem */
    bool enroll;                 /* --enroll: the part-2 pages */
    const char *invite_name;     /* --invite NAME */
    int invite_hours;            /* --invite-hours */
    const char *revoke_serial;   /* --revoke SERIAL */
    bool renew_crl;              /* --renew-crl */
};

/* ======================= 6. See the handshake: the record ================= */
/*
 * The tutorial's subject happens inside the handshake, where nobody sees
 * it: "the browser already knows that only certs issued by us will be
 * accepted (because we advertise it using the list)".  GET /handshake shows
 * a visitor the handshake of the very connection that asks: each message,
 * who sent it, and what it carried (section 15 draws it).
 *
 * GnuTLS calls a hook for every handshake message, sent or received, in the
 * order they cross the wire; tests/wire.sh checks that order against
 * tshark.  We keep the messages' types, and two whole messages: the
 * client's ClientHello (the versions it offers) and our CertificateRequest
 * (the list).  The record lives and dies with its connection; nothing is
 * shared between connections.
 */
#define MAX_RECORDED 24         /* 12 at most here (TLS 1.3 with a HelloRetryRequest),
                                   and any KeyUpdate the client sends after */
#define MAX_KEPT 16384          /* a longer message is not kept, and the page says so */

struct handshake_record {
    struct {
        gnutls_handshake_description_t type;
        bool from_client;
    } messages[MAX_RECORDED];
    int count, missed;          /* missed: more messages than fit */
    gnutls_datum_t client_hello, certificate_request;   /* their bodies */
};

/* Keep a copy of a message's body; a second one (after a HelloRetryRequest)
 * replaces the first. */
static void keep_message(gnutls_datum_t *kept, const gnutls_datum_t *msg)
{
    free(kept->data);
    kept->data = NULL;
    kept->size = 0;
    if (msg->size == 0 || msg->size > MAX_KEPT || (kept->data = malloc(msg->size)) == NULL)
        return;                 /* section 15 says it was not kept */
    memcpy(kept->data, msg->data, msg->size);
    kept->size = msg->size;
}

/* The hook: GnuTLS calls it before and after each message, with the
 * session's pointer set to our connection.  A message we receive is taken
 * before GnuTLS handles it (GNUTLS_HOOK_PRE): a ClientHello answered by a
 * HelloRetryRequest gets no call after.  One we send is taken after it is
 * made (GNUTLS_HOOK_POST), when its bytes exist. */
static int record_handshake_message(gnutls_session_t s, unsigned int type, unsigned int when,
                                    unsigned int incoming, const gnutls_datum_t *msg)
{
    struct connection *conn = gnutls_session_get_ptr(s);
    struct handshake_record *r = conn->record;
    if (when != (incoming ? GNUTLS_HOOK_PRE : GNUTLS_HOOK_POST))
        return 0;
    if (r == NULL || type == GNUTLS_HANDSHAKE_CHANGE_CIPHER_SPEC)
        return 0;               /* ChangeCipherSpec is no handshake message */
    if (r->count == MAX_RECORDED) {
        r->missed++;
        return 0;
    }
    r->messages[r->count].type = type;
    r->messages[r->count++].from_client = incoming;
    if (type == GNUTLS_HANDSHAKE_CLIENT_HELLO)
        keep_message(&r->client_hello, msg);
    else if (type == GNUTLS_HANDSHAKE_CERTIFICATE_REQUEST)
        keep_message(&r->certificate_request, msg);
    return 0;                   /* 0: the handshake goes on */
}

/* Section 1 calls this for every session: from here on, GnuTLS tells us each
 * message.  Without memory for the record, the handshake goes on unrecorded. */
static void record_handshake(gnutls_session_t s, struct connection *conn)
{
    conn->record = calloc(1, sizeof *conn->record);
    gnutls_session_set_ptr(s, conn);
    gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_ANY, GNUTLS_HOOK_BOTH,
                                       record_handshake_message);
}

static void free_record(struct connection *conn)
{
    if (conn->record) {
        free(conn->record->client_hello.data);
        free(conn->record->certificate_request.data);
        free(conn->record);
        conn->record = NULL;
    }
}

/* ======================= 7. Saying why: alerts, and the 403's reason ====== */
/*
 * An alert is how TLS says "no".  When a handshake fails (a version we don't
 * speak, no cipher suite in common, a message that does not parse, a
 * signature that does not verify), the side that found the problem SHOULD
 * send a fatal alert saying which (RFC 8446 6.2; RFC 5246 7.2.2).
 * GnuTLS leaves that to the application: without this, the client sees
 * only a closed connection ("unexpected eof") and cannot tell why.
 * gnutls_alert_send_appropriate picks the alert GnuTLS maps the error to.
 * We send none when there is nobody left to tell: the client closed, reset
 * or sent its own alert, the deadline has passed, the server is stopping,
 * or the connection gave way to a newcomer (section 13).
 */

/* "protocol_version": the alert's name as the RFCs write it. */
static void alert_name(gnutls_alert_description_t alert, char *out, size_t size)
{
    const char *name = gnutls_alert_get_strname(alert);
    size_t i = 0;
    if (name == NULL)
        name = "unknown";
    if (strncmp(name, "GNUTLS_A_", 9) == 0)
        name += 9;
    for (; name[i] && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[i] = '\0';
}

/* Errors after which an alert would reach nobody: the client closed or
 * reset the connection, or stopped reading; the deadline has passed; the
 * server is stopping. */
static bool nobody_to_tell(int err)
{
    return err == GNUTLS_E_PREMATURE_TERMINATION || err == GNUTLS_E_PULL_ERROR ||
           err == GNUTLS_E_PUSH_ERROR || err == GNUTLS_E_TIMEDOUT ||
           err == GNUTLS_E_INTERRUPTED || cut_short();
}

/* The TLS layer failed with err: tell the client with an alert when it can
 * still hear one, and note "WHAT: WHY (sent alert NAME)" for the log. */
static void tls_failure(gnutls_session_t s, struct connection *conn, const char *what,
                        const char *why, int err)
{
    char name[40];
    if (cut_short())
        return;     /* we cut it short ourselves: the log says "dropped" */
    if (err == GNUTLS_E_FATAL_ALERT_RECEIVED || err == GNUTLS_E_WARNING_ALERT_RECEIVED) {
        alert_name(gnutls_alert_get(s), name, sizeof name);
        note(conn, "%s: %s (the client sent alert %s)", what, why, name);
        return;
    }
    if (nobody_to_tell(err)) {
        note(conn, "%s: %s", what, why);
        return;
    }
    int ret;
    if (err == GNUTLS_E_NO_CERTIFICATE_FOUND) {
        /* --reject-unauthorized, TLS 1.2, no certificate: RFC 5246 7.4.6
         * names handshake_failure; GnuTLS's table says decode_error */
        alert_name(GNUTLS_A_HANDSHAKE_FAILURE, name, sizeof name);
        ret = gnutls_alert_send(s, GNUTLS_AL_FATAL, GNUTLS_A_HANDSHAKE_FAILURE);
    } else {
        alert_name(gnutls_error_to_alert(err, NULL), name, sizeof name);
        ret = gnutls_alert_send_appropriate(s, err);
    }
    if (ret < 0)
        note(conn, "%s: %s (alert %s not sent: %s)", what, why, name, gnutls_strerror(ret));
    else
        note(conn, "%s: %s (sent alert %s)", what, why, name);
}

/* Why a certificate was refused, in a reader's words (the 403 page says it).
 * GnuTLS's own sentence goes to the log beside it. */
static char *refusal_words(unsigned int status)
{
    static const struct {
        unsigned int bit;
        const char *words;
    } reasons[] = {
        {GNUTLS_CERT_REVOKED, "it was revoked by its issuer"},
        {GNUTLS_CERT_EXPIRED, "it has expired"},
        {GNUTLS_CERT_NOT_ACTIVATED, "it is not valid yet"},
        {GNUTLS_CERT_PURPOSE_MISMATCH, "it was not made for TLS clients (wrong purpose)"},
        {GNUTLS_CERT_SIGNER_NOT_FOUND, "its issuer is not a CA we trust (unknown issuer)"},
        {GNUTLS_CERT_SIGNER_NOT_CA, "its issuer is not a CA"},
        {GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE, "its issuer may not have signed it (its key or "
                                                 "its constraints forbid it)"},
        {GNUTLS_CERT_SIGNATURE_FAILURE, "its signature does not verify"},
        {GNUTLS_CERT_INSECURE_ALGORITHM, "it is signed with an insecure algorithm"},
    };
    char text[400] = "";
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (status & reasons[i].bit)
            snprintf(text + strlen(text), sizeof text - strlen(text), "%s%s",
                     text[0] ? "; " : "", reasons[i].words);
    return strdup(text[0] ? text : "it is not trusted");
}

/* Section 3's refusal, explained: ret and status are what verifying it gave. */
static void explain_refusal(int ret, unsigned int status, struct identity *id)
{
    gnutls_datum_t text = {NULL, 0};

    id->page_reason = ret < 0 ? strdup("it could not be verified") : refusal_words(status);
    if (ret < 0)
        id->log_reason = strdup(gnutls_strerror(ret));
    else if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0)
        id->log_reason = copy_datum(&text);
    for (size_t n = id->log_reason ? strlen(id->log_reason) : 0;
         n > 0 && id->log_reason[n - 1] == ' '; n--)
        id->log_reason[n - 1] = '\0';      /* GnuTLS ends its sentences with a space */
}

/* ======================= 8. The TLS policy ================================ */
/*
 * TLS policy, beyond the tutorial:
 * - TLS 1.2 and 1.3 only: 1.0 and 1.1 are deprecated (RFC 8996), and GnuTLS
 *   3.7's "NORMAL" still offers them.
 * - No session resumption.  A resumed session carries the identity proved
 *   in an earlier handshake, without fresh proof that the client still holds
 *   the key, and it skips today's date and revocation checks.  GnuTLS only
 *   resumes when asked to, so we simply never ask: no session tickets
 *   (gnutls_session_ticket_enable_server) and no session cache (gnutls_db_*).
 * - In TLS 1.2, only forward-secret key exchange (ECDHE) and ciphers that
 *   encrypt and authenticate in one step (AEAD: AES-GCM, ChaCha20-Poly1305,
 *   and AES-CCM with an ECDSA key): part 2 sends private keys and
 *   passphrases over these connections.  "NORMAL" also offers -RSA, RSA key
 *   exchange (not RSA certificates: whoever later gets the server's key
 *   decrypts every session recorded before), -DHE-RSA (forward secret, but
 *   slow, and every client make test-clients tries speaks ECDHE), and CBC (MAC-then-encrypt:
 *   the padding oracles of Lucky13), whose suites are the only ones with a
 *   SHA-1 MAC (-SHA1).  TLS 1.3's suites are all AEAD, with an ephemeral
 *   key exchange: left as NORMAL has them.
 * - No renegotiation: a TLS 1.2 client that asks for a new handshake ends
 *   its connection (see read_request_head); we never call gnutls_handshake
 *   twice.
 */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:" \
                       "-RSA:-DHE-RSA:-AES-256-CBC:-AES-128-CBC:-SHA1"

/* The TLS policy above, compiled once. */
static int load_priorities(struct server *srv)
{
    int ret = gnutls_priority_init(&srv->priorities, TLS_PRIORITIES, NULL);
    if (ret < 0) {
        fprintf(stderr, "server: priorities \"%s\": %s\n", TLS_PRIORITIES, gnutls_strerror(ret));
        return -1;
    }
    return 0;
}

/* ======================= 9. Revocation: the CRL =========================== */
/*
 * A CA takes back certificates by listing them in a CRL; without it, a
 * revoked certificate would still be admitted.  gencerts.sh makes our CA's
 * first crl.pem; part 2 (section C) and ./server --revoke sign new ones.
 * When crl.pem changes, the accept loop, or a worker about to check a
 * certificate, loads the credentials anew with it (section 13), and that
 * check, and every one after, uses the new list.
 */

static int read_whole_file(const char *path, gnutls_datum_t *out, struct stat *st);

/* The CRLs of text (read from file) into creds.  VERIFY_CRLS makes GnuTLS
 * check, as it loads each, that one of our CAs signed it, so a stray file is
 * an error now, not a silent no-op later. */
static int use_crls(gnutls_certificate_credentials_t creds, gnutls_datum_t *text,
                    const char *file, char *why)
{
    gnutls_certificate_set_flags(creds, GNUTLS_CERTIFICATE_VERIFY_CRLS);
    int ret = gnutls_certificate_set_x509_crl_mem(creds, text, GNUTLS_X509_FMT_PEM);
    if (ret <= 0) {
        snprintf(why, WHY_SIZE, "no usable CRL in %.150s: %s", file,
                 ret < 0 ? gnutls_strerror(ret) : "the file holds no PEM CRL");
        return -1;
    }
    return 0;
}

/* opts, and the CRL when there is one, or when one is required: crl_required
 * once a CRL has been in force, so that a lost crl.pem never switches
 * revocation off.  Returns 1 with a CRL (its text into *crl_text, for
 * section 13's checks; free it), 0 without one, or -1 with why[] naming the
 * file. */
static int load_credentials_and_crl(gnutls_certificate_credentials_t *out,
                                    const struct options *o, bool crl_required,
                                    gnutls_datum_t *crl_text, char *why)
{
    gnutls_certificate_credentials_t creds;
    if (load_credentials(&creds, o->key_file, o->cert_file, o->ca_file, why) < 0)
        return -1;
    if (!crl_required && access(o->crl_file, F_OK) != 0) {
        *out = creds;
        return 0;
    }
    /* read once, here: what GnuTLS checks with is then the very text
     * section 13 checks against the lists in force, and a FIFO put in
     * crl.pem's place can't hang us (read_whole_file, section 14) */
    struct stat st;
    if (read_whole_file(o->crl_file, crl_text, &st) < 0) {
        snprintf(why, WHY_SIZE, "cannot read the certificate revocation list %.150s: %s",
                 o->crl_file, errno == EINVAL ? "not a file" : strerror(errno));
        goto fail;
    }
    if (use_crls(creds, crl_text, o->crl_file, why) < 0) {
        free(crl_text->data);
        crl_text->data = NULL;
        goto fail;
    }
    *out = creds;
    return 1;
fail:
    gnutls_certificate_free_credentials(creds);
    return -1;
}

/* ========================================================================== */
/*      PART 2: the article the tutorial promised.  The server issues,        */
/*      and takes back, client certificates itself (./server --enroll).       */
/* ========================================================================== */
/*
 * The tutorial ends: "we don't want to generate keys for our users via the
 * command line and have them installing them into their browsers manually.
 * In the next article, we'll see how we can generate new client
 * certificates dynamically and install them seamlessly to the users'
 * browser."  That article was never published.  This is it:
 *
 *   A. issuing        a new key pair and a certificate, signed by our CA
 *   B. the bundle     both in one PKCS#12 file, like part 1's alice.p12
 *   C. revocation     our CA's CRL, signed anew; the server takes it up
 *   D. accounts       whose certificate it is: the server's record, not a name
 *   E. invitations    ./server --invite Carol prints a link that works once
 *   F. the pages      /enroll, /certificates, /revoke, /add-device
 *
 * FIRST READING of part 2, in this order: A, B and C, the GnuTLS calls that
 * do what openssl did in part 1 (gencerts.sh); D's opening comment, this
 * part's lesson (a certificate belongs to an account, never to a name); E's
 * opening comment (the invitation that opens an account); F's table of
 * routes.  Each section uses only what the ones before it define, so D's
 * accounts come before E's invitations, which name them.  Part-1 readers can
 * skip to THE MACHINERY.
 *
 * "Seamlessly" can't mean what it meant in 2017: browsers have removed the
 * <keygen> element the author's draft used, and no page may install a
 * certificate by itself.  The visitor downloads a .p12 and imports it, as
 * part 1 taught.  Two costs come with it, and docs/part2.md ("The risks") says
 * what production does instead: the CA's key is now online, in a server
 * that faces the network, and the server sees each user's private key.
 */

/* What part 2 uses from the machinery: */
static void log_escape(char *out, size_t cap, const char *text, size_t len);
static void log_say(const char *format, ...) __attribute__((format(printf, 1, 2)));
static size_t utf8_length(const unsigned char *s, size_t n);
static bool deceptive(const unsigned char *s, size_t len);
static unsigned code_point(const unsigned char *s, size_t len);
static int join_path(char *out, const char *dir, const char *name);
static int hex_value(unsigned char c);
static int form_field(const char *body, size_t len, const char *name, char *out, size_t cap);
static long ms_left(const struct connection *conn);
static int make_folder(const char *path, char *why);
static int write_file(const char *path, const void *data, size_t len, mode_t mode, char *why);
static int read_small_file(const char *path, char *buf, size_t cap);
static int take_lock(int fd, const struct connection *conn);
static int read_whole_file(const char *path, gnutls_datum_t *out, struct stat *st);
static bool same_file_state(const struct stat *a, const struct stat *b);
struct crl_mark {               /* a CRL's issuer, number and entries (section 13) */
    unsigned char issuer[32];
    unsigned char number[32];   /* big-endian, no leading zeros; none: 0 */
    size_t number_len;
    char name[80];              /* the issuer's name, for messages */
    unsigned char (*serials)[33];   /* its entries, sorted: a length, then the bytes */
    size_t serial_count;
};
static int mark_of(gnutls_x509_crl_t crl, struct crl_mark *mark, bool with_entries);
static bool older(const struct crl_mark *a, const struct crl_mark *b);
static bool recorded_mark(const char *crl_file, struct crl_mark *mark);
static int record_crl(const char *crl_file, const gnutls_datum_t *pem, char *why);
static void free_marks(struct crl_mark *marks, int n);
static bool goes_back(const char *file, const struct crl_mark *kept, const struct crl_mark *marks,
                      int n, char *why);
static bool behind_the_crl_in_force(gnutls_x509_crl_t crl, const char *file, char *why);
struct text {                   /* a page built piece by piece (section 14) */
    char *s;
    size_t len, cap;
    bool failed;
};
static void text_add(struct text *t, const char *format, ...) __attribute__((format(printf, 2, 3)));
static char *text_take(struct text *t);

#define CODE_BYTES 16           /* 128 bits per invitation code */
#define ACCOUNT_BYTES 8         /* 64 random bits name an account */
#define MAX_NAME 64             /* bytes of an invited name (RFC 5280: a CN has at most 64 characters) */
#define MAX_SERIAL 21           /* bytes of a serial: 20 of number (RFC 5280 4.1.2.2), and a 00 */
#define CERT_DAYS 365           /* as gencerts.sh signs Alice */
#define CRL_DAYS 365            /* nextUpdate, as gencerts.sh's default_crl_days */
#define MAX_CRLS 16             /* CRLs in crl.pem: one per trusted CA, at most */

#define MAX_REQUEST_HEAD  8192      /* request line + headers, in bytes */
#define MAX_REQUEST_BODY  4096      /* part 2's forms: a code, a passphrase, a box */

/* What the HTTP machinery (section 12) found in the request. */
struct request {
    const char *method;
    size_t method_len;
    const char *path;           /* the target without its ?query */
    size_t path_len;
    const char *query;          /* after the '?', or NULL */
    size_t query_len;
    const char *problem;        /* why the head is malformed, for the log */
    /* Part 2 reads request bodies and asks where a form came from: */
    long content_length;        /* -1: no Content-Length */
    bool transfer_encoding;     /* a Transfer-Encoding header (chunked) came */
    const char *host, *origin, *fetch_site;     /* header values, or NULL */
    bool wants_html;            /* Accept names text/html: a browser (GET /handshake) */
    size_t host_len, origin_len, fetch_site_len;
    const char *body;           /* a POST's body, once read (section 12) */
    size_t body_len;
};

/* ======================= A. Issuing a certificate ========================= */
/*
 * What part 1 did with openssl req and openssl x509 -req -CA (gencerts.sh),
 * with GnuTLS's calls: load the CA, make a key pair, make the certificate,
 * have the CA sign it.  The key is ECDSA P-256: made in milliseconds,
 * where an RSA-4096 key like part 1's took 0.5 s to 2 s here (certtool
 * --generate-privkey --bits 4096), and every browser takes it.
 */

/* The CA that signs: the tutorial's server_cert.pem and server_key.pem,
 * the pair that signed Alice in part 1.  Loaded once and shared by the
 * worker threads: "in versions of GnuTLS later than 3.5.11" a
 * gnutls_privkey_t is "protected using locks", so many threads may sign
 * with one (gnutls_privkey_init(3)), and the certificate is only read. */
struct issuer {
    gnutls_x509_crt_t crt;
    gnutls_privkey_t key;
};
static const struct issuer *enrolled_ca;   /* under --enroll (main sets it); else NULL */

static void free_issuer(struct issuer *ca)
{
    if (ca->crt)
        gnutls_x509_crt_deinit(ca->crt);
    if (ca->key)
        gnutls_privkey_deinit(ca->key);
    ca->crt = NULL;
    ca->key = NULL;
}

/* Say which step failed and why, into why[WHY_SIZE]; returns -1. */
static int failed(char *why, const char *step, int ret)
{
    snprintf(why, WHY_SIZE, "%.150s: %s", step, gnutls_strerror(ret));
    return -1;
}

static int load_issuer(const struct options *o, struct issuer *ca)
{
    gnutls_datum_t pem = {NULL, 0};
    gnutls_pubkey_t pub = NULL;
    unsigned char id1[64], id2[64];
    size_t n1 = sizeof id1, n2 = sizeof id2;
    char why[WHY_SIZE];
    int ret;

    memset(ca, 0, sizeof *ca);
    if (check_readable(o->issuer_cert_file, "CA certificate", why) < 0 ||
        check_readable(o->issuer_key_file, "CA key", why) < 0)
        goto fail;
    if ((ret = gnutls_x509_crt_init(&ca->crt)) < 0 ||
        (ret = gnutls_load_file(o->issuer_cert_file, &pem)) < 0 ||
        (ret = gnutls_x509_crt_import(ca->crt, &pem, GNUTLS_X509_FMT_PEM)) < 0) {
        failed(why, o->issuer_cert_file, ret);
        goto fail;
    }
    gnutls_free(pem.data);
    pem.data = NULL;
    if ((ret = gnutls_privkey_init(&ca->key)) < 0 ||
        (ret = gnutls_load_file(o->issuer_key_file, &pem)) < 0 ||
        (ret = gnutls_privkey_import_x509_raw(ca->key, &pem, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        failed(why, o->issuer_key_file, ret);
        goto fail;
    }
    /* A key that is not the certificate's would sign certificates nobody
     * can verify: compare the two public keys' IDs now. */
    if ((ret = gnutls_pubkey_init(&pub)) < 0 ||
        (ret = gnutls_pubkey_import_privkey(pub, ca->key, 0, 0)) < 0 ||
        (ret = gnutls_pubkey_get_key_id(pub, 0, id1, &n1)) < 0 ||
        (ret = gnutls_x509_crt_get_key_id(ca->crt, 0, id2, &n2)) < 0) {
        failed(why, o->issuer_key_file, ret);
        goto fail;
    }
    if (n1 != n2 || memcmp(id1, id2, n1) != 0) {
        snprintf(why, sizeof why, "%.100s is not the key of %.100s", o->issuer_key_file,
                 o->issuer_cert_file);
        goto fail;
    }
    gnutls_pubkey_deinit(pub);
    gnutls_free(pem.data);
    return 0;
fail:
    fprintf(stderr, "server: the CA that signs: %s\n", why);
    if (pub)
        gnutls_pubkey_deinit(pub);
    gnutls_free(pem.data);
    free_issuer(ca);
    return -1;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02X", in[i]);
    out[2 * n] = '\0';
}

static int issue_certificate(const struct issuer *ca, const char *name,
                             gnutls_x509_privkey_t *key_out, gnutls_x509_crt_t *crt_out,
                             char *why)
{
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    unsigned char serial[16], id[64];
    size_t id_size;
    time_t now = time(NULL);
    int ret;

    /* openssl req -newkey ec: the key pair, made here, in memory */
    if ((ret = gnutls_x509_privkey_init(&key)) < 0 ||
        (ret = gnutls_x509_privkey_generate2(key, GNUTLS_PK_ECDSA,
                   GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0, NULL, 0)) < 0)
        goto fail_key;
    if ((ret = gnutls_x509_crt_init(&crt)) < 0)
        goto fail_crt;
    /* A random serial (RFC 5280 4.1.2.2: positive, at most 20 bytes): no
     * counter to keep, and nobody can predict the next one.  The top bits
     * 01 keep it positive and 16 bytes long. */
    if ((ret = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial)) < 0)
        goto fail_crt;
    serial[0] = (unsigned char)((serial[0] & 0x3f) | 0x40);
    /* -subj "/CN=Carol", valid for a year from now, with the key above */
    if ((ret = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
        (ret = gnutls_x509_crt_set_serial(crt, serial, sizeof serial)) < 0 ||
        (ret = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, name,
                                             (unsigned)strlen(name))) < 0 ||
        (ret = gnutls_x509_crt_set_activation_time(crt, now)) < 0 ||
        (ret = gnutls_x509_crt_set_expiration_time(crt, now + CERT_DAYS * 86400L)) < 0 ||
        (ret = gnutls_x509_crt_set_key(crt, key)) < 0)
        goto fail_crt;
    /* What a client certificate says of itself (RFC 5280 4.2.1): not a CA;
     * its key signs (the handshake's CertificateVerify); made for TLS
     * clients, which is what section 3's purpose check asks of it. */
    if ((ret = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
        (ret = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
        (ret = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0)) < 0)
        goto fail_crt;
    /* The key identifiers (RFC 5280 4.2.1.1 and 4.2.1.2) link it to its own
     * key and to the key of the CA that signed it. */
    id_size = sizeof id;
    if ((ret = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, id, &id_size)) < 0 ||
        (ret = gnutls_x509_crt_set_subject_key_id(crt, id, id_size)) < 0)
        goto fail_crt;
    id_size = sizeof id;
    if ((ret = gnutls_x509_crt_get_subject_key_id(ca->crt, id, &id_size, NULL)) < 0 ||
        (ret = gnutls_x509_crt_set_authority_key_id(crt, id, id_size)) < 0)
        goto fail_crt;
    /* -CA server_cert.pem -CAkey server_key.pem: the CA signs; this also
     * copies the CA's name into the certificate as its issuer. */
    if ((ret = gnutls_x509_crt_privkey_sign(crt, ca->crt, ca->key, GNUTLS_DIG_SHA256, 0)) < 0)
        goto fail_crt;
    *key_out = key;
    *crt_out = crt;
    return 0;
fail_key:
    failed(why, "making the key pair", ret);
    goto out;
fail_crt:
    failed(why, "making the certificate", ret);
out:
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (key)
        gnutls_x509_privkey_deinit(key);
    return -1;
}

/* ======================= B. The bundle: PKCS#12 =========================== */
/*
 * Part 1's openssl pkcs12 -export, with GnuTLS: a PKCS#12 file holds "bags";
 * one holds the certificate, one the key, both encrypted under the
 * passphrase, and a MAC over the lot proves the passphrase on import.  The
 * two bags share a key ID, which is how an importer pairs them.
 *
 * Modern: PBES2 with AES-256 and an HMAC-SHA256 MAC, as OpenSSL 3 writes.
 * Legacy: PKCS#12's own 3DES for both bags and an HMAC-SHA1 MAC, which
 * older macOS and Windows keychains read (gencerts.sh -l asks openssl for
 * its -legacy for the same reason).  Either way, three keys are derived
 * with GnuTLS's default 600,000 iterations each: the two bags' and the MAC's
 * (PBKDF2 for PBES2, PKCS#12's own KDF for 3DES and for the MAC; openssl
 * pkcs12 -info shows them).  That is most of what a bundle costs.
 * An empty passphrase is allowed, as in the tutorial: the bags are still
 * encrypted, under the empty string, and openssl, curl and NSS (Firefox,
 * and Chromium on Linux) open them so (the tests do).
 */
static int make_pkcs12(gnutls_x509_privkey_t key, gnutls_x509_crt_t crt, const char *name,
                       const char *passphrase, bool legacy, gnutls_datum_t *out, char *why)
{
    unsigned cipher = legacy ? GNUTLS_PKCS_PKCS12_3DES : GNUTLS_PKCS_PBES2_AES_256;
    gnutls_pkcs12_bag_t crt_bag = NULL, key_bag = NULL;
    gnutls_pkcs12_t p12 = NULL;
    gnutls_datum_t key_der = {NULL, 0};
    unsigned char id[64];
    size_t id_size = sizeof id;
    gnutls_datum_t key_id = {id, 0};
    int ret, i;

    if ((ret = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, id, &id_size)) < 0)
        goto fail;
    key_id.size = (unsigned)id_size;
    /* the certificate's bag */
    if ((ret = gnutls_pkcs12_bag_init(&crt_bag)) < 0 ||
        (ret = i = gnutls_pkcs12_bag_set_crt(crt_bag, crt)) < 0 ||
        (ret = gnutls_pkcs12_bag_set_key_id(crt_bag, i, &key_id)) < 0 ||
        (ret = gnutls_pkcs12_bag_set_friendly_name(crt_bag, i, name)) < 0 ||
        (ret = gnutls_pkcs12_bag_encrypt(crt_bag, passphrase, cipher)) < 0)
        goto fail;
    /* the key's bag: the key encrypted as PKCS#8 first */
    if ((ret = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_DER, passphrase, cipher,
                                                 &key_der)) < 0 ||
        (ret = gnutls_pkcs12_bag_init(&key_bag)) < 0 ||
        (ret = i = gnutls_pkcs12_bag_set_data(key_bag, GNUTLS_BAG_PKCS8_ENCRYPTED_KEY,
                                              &key_der)) < 0 ||
        (ret = gnutls_pkcs12_bag_set_key_id(key_bag, i, &key_id)) < 0 ||
        (ret = gnutls_pkcs12_bag_set_friendly_name(key_bag, i, name)) < 0)
        goto fail;
    /* both bags, the MAC, and the file's bytes */
    if ((ret = gnutls_pkcs12_init(&p12)) < 0 ||
        (ret = gnutls_pkcs12_set_bag(p12, crt_bag)) < 0 ||
        (ret = gnutls_pkcs12_set_bag(p12, key_bag)) < 0 ||
        (ret = gnutls_pkcs12_generate_mac2(p12, legacy ? GNUTLS_MAC_SHA1 : GNUTLS_MAC_SHA256,
                                           passphrase)) < 0 ||
        (ret = gnutls_pkcs12_export2(p12, GNUTLS_X509_FMT_DER, out)) < 0)
        goto fail;
    ret = 0;
fail:
    if (ret < 0)
        failed(why, "making the PKCS#12 bundle", ret);
    if (key_der.data) {
        gnutls_memset(key_der.data, 0, key_der.size);
        gnutls_free(key_der.data);
    }
    if (crt_bag)
        gnutls_pkcs12_bag_deinit(crt_bag);
    if (key_bag)
        gnutls_pkcs12_bag_deinit(key_bag);
    if (p12)
        gnutls_pkcs12_deinit(p12);
    return ret < 0 ? -1 : 0;
}


/* ======================= C. Revocation: our CA's CRL, signed anew ========= */
/*
 * Part 1's openssl ca -revoke and -gencrl, with GnuTLS.  crl.pem is the
 * record of every revocation, so it is changed, never started afresh: our
 * CA's CRL in it is read, the serial is added to it (the entries already
 * there stay as they are, openssl's reason codes too), and the CA signs it
 * again with the next CRL number and nextUpdate a year ahead.  CRLs of
 * other CAs in the same file are kept as they are.  The new file is written
 * aside and renamed over the old (section 14), so a reader sees the old
 * list or the new one, never half of one; the running server takes it up
 * at its next certificate check (section 13).
 *
 * Failing closed: a crl.pem that is missing or unreadable, or that holds
 * no CRL of our CA (or two), is not replaced by a new list, which would
 * forget every revocation before it: the revocation is refused, and the
 * message says why.  Nor does it go back: a crl.pem that is older than,
 * lacks, or drops an entry of the CRL in force or the last one signed here
 * (crl.pem.lock keeps a copy) is neither signed anew nor loaded (the
 * marks, section 13).  An entry already listed is not added twice, and
 * the file is then left alone.
 *
 * Freshness: GnuTLS refuses a CRL whose nextUpdate has passed, and so does
 * this server at start.  ./server --renew-crl signs the same list again,
 * for a cron job.
 *
 * One writer at a time: two revocations at once (two threads, or a thread
 * and ./server --revoke) would each read the old list, and the second
 * rename would lose the first one's entry.  flock() on crl.pem's folder
 * serializes them; it works between threads too, since each opens the
 * folder anew.  The lock is held only to check that crl.pem is what was
 * read and to rename the new one in (sign_crl_once); a page waits for it
 * a second at most, and never past its connection's deadline.
 */

/*
 * Serials.  A serial is a DER INTEGER, so it is positive only with a 00
 * byte in front when its first byte is 0x80 or more: openssl prints the
 * INTEGER 00 80 as "80", and the bytes 80 alone read as -128.  GnuTLS
 * hands serials over as the INTEGER's bytes, 00 included; we write them as
 * openssl prints them, without it.  From bytes with or without leading
 * zeros: the INTEGER's bytes into der (*len of them), the hex into hex.
 * in_der: the bytes are an INTEGER's, where a first byte of 0x80 or more
 * means a negative number.  False for a negative serial, or one of more
 * than 20 bytes: RFC 5280 allows neither, and neither is one of ours.
 */
static bool canonical_serial(const unsigned char *in, size_t n, bool in_der,
                             unsigned char der[MAX_SERIAL], size_t *len,
                             char hex[2 * MAX_SERIAL + 1])
{
    if (n == 0 || (in_der && (in[0] & 0x80)))
        return false;
    while (n > 1 && in[0] == 0)
        in++, n--;
    if (n > MAX_SERIAL - 1)
        return false;
    to_hex(in, n, hex);
    size_t sign = in[0] & 0x80 ? 1 : 0;
    der[0] = 0;
    memcpy(der + sign, in, n);
    *len = n + sign;
    return true;
}

/* A serial as people write it ("4A0F...", "80", "0080"): 1 to 40 hex
 * digits.  Returns false if it is not one. */
static bool parse_serial(const char *text, unsigned char der[MAX_SERIAL], size_t *len,
                         char hex[2 * MAX_SERIAL + 1])
{
    unsigned char bytes[20];
    size_t n = strlen(text), odd = n % 2;
    if (n == 0 || n > 40 || strspn(text, "0123456789abcdefABCDEF") != n)
        return false;
    for (size_t i = 0; i < (n + odd) / 2; i++) {
        int hi = i == 0 && odd ? 0 : hex_value((unsigned char)text[2 * i - odd]);
        int lo = hex_value((unsigned char)text[2 * i + 1 - odd]);
        bytes[i] = (unsigned char)(hi * 16 + lo);
    }
    return canonical_serial(bytes, (n + odd) / 2, false, der, len, hex);
}

/* The serial of a certificate, as above.  0, or a GnuTLS error. */
static int certificate_serial(gnutls_x509_crt_t crt, unsigned char der[MAX_SERIAL], size_t *len,
                              char hex[2 * MAX_SERIAL + 1])
{
    unsigned char raw[64];
    size_t n = sizeof raw;
    int ret = gnutls_x509_crt_get_serial(crt, raw, &n);
    if (ret == 0 && !canonical_serial(raw, n, true, der, len, hex))
        ret = GNUTLS_E_ASN1_DER_ERROR;
    return ret;
}

/* Whether crl lists serial (the INTEGER's bytes). */
static bool crl_lists(gnutls_x509_crl_t crl, const unsigned char *serial, size_t len)
{
    gnutls_x509_crl_iter_t iter = NULL;
    unsigned char raw[64], der[MAX_SERIAL];
    size_t n = sizeof raw, der_len;
    char hex[2 * MAX_SERIAL + 1];
    time_t when;
    bool found = false;
    while (!found && gnutls_x509_crl_iter_crt_serial(crl, &iter, raw, &n, &when) == 0) {
        found = canonical_serial(raw, n, true, der, &der_len, hex) && der_len == len &&
                memcmp(der, serial, len) == 0;
        n = sizeof raw;
    }
    gnutls_x509_crl_iter_deinit(iter);
    return found;
}

/* The next CRL number: the old one plus one (RFC 5280 5.2.3: at most 20
 * bytes; one without a number gets 1).  False if the old one is longer. */
static bool next_crl_number(gnutls_x509_crl_t old, unsigned char *num, size_t *len)
{
    size_t n = *len;
    int ret = gnutls_x509_crl_get_number(old, num, &n, NULL);
    if (ret == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE || (ret == 0 && n == 0)) {
        num[0] = 1;
        *len = 1;
        return true;
    }
    if (ret < 0 || n > 20)
        return false;
    size_t i = n;
    while (i > 0 && ++num[i - 1] == 0)     /* big-endian + 1 */
        i--;
    if (i == 0 || (num[0] & 0x80)) {       /* it carried out, or turned negative */
        memmove(num + 1, num, n);
        num[0] = i == 0 ? 1 : 0;
        n++;
    }
    *len = n;
    return true;
}

/* Whether crl is our CA's: signed by it.  Past its nextUpdate it is still
 * ours: renewing it is the remedy, so "superseded" (and the INVALID that
 * comes with it) is no reason to refuse. */
static bool signed_by(gnutls_x509_crl_t crl, const struct issuer *ca)
{
    const unsigned int stale = GNUTLS_CERT_INVALID | GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED;
    unsigned int status = GNUTLS_CERT_INVALID;
    return gnutls_x509_crl_verify(crl, &ca->crt, 1, 0, &status) == 0 &&
           (status == 0 || status == stale);
}

/* crl.pem, split into our CA's CRL (*ours) and the text of the others
 * before and after it.  0, or -1 with why. */
static int read_crl_file(const struct options *o, const struct issuer *ca, gnutls_x509_crl_t *ours,
                         struct text *before, struct text *after, struct stat *st, char *why)
{
    static const char begin[] = "-----BEGIN X509 CRL-----", end[] = "-----END X509 CRL-----";
    gnutls_datum_t file = {NULL, 0};
    int ret;
    if (read_whole_file(o->crl_file, &file, st) < 0) {
        snprintf(why, WHY_SIZE, "cannot read %.150s: %s", o->crl_file, strerror(errno));
        return -1;
    }
    const char *p = (const char *)file.data, *stop = p + file.size, *b;
    *ours = NULL;
    while ((b = memmem(p, (size_t)(stop - p), begin, sizeof begin - 1)) != NULL) {
        const char *e = memmem(b, (size_t)(stop - b), end, sizeof end - 1);
        if (e == NULL) {
            snprintf(why, WHY_SIZE, "%.150s: a CRL is cut short", o->crl_file);
            goto fail;
        }
        for (e += sizeof end - 1; e < stop && (*e == '\r' || *e == '\n'); e++)
            ;
        gnutls_datum_t block = {(unsigned char *)b, (unsigned)(e - b)};
        gnutls_x509_crl_t crl;
        if ((ret = gnutls_x509_crl_init(&crl)) < 0) {
            failed(why, o->crl_file, ret);
            goto fail;
        }
        if ((ret = gnutls_x509_crl_import(crl, &block, GNUTLS_X509_FMT_PEM)) < 0) {
            gnutls_x509_crl_deinit(crl);
            failed(why, o->crl_file, ret);
            goto fail;
        }
        if (signed_by(crl, ca) && *ours == NULL) {
            *ours = crl;
        } else if (signed_by(crl, ca)) {
            gnutls_x509_crl_deinit(crl);
            snprintf(why, WHY_SIZE, "%.150s holds two CRLs of our CA", o->crl_file);
            goto fail;
        } else {                            /* another CA's: kept as it is */
            gnutls_x509_crl_deinit(crl);
            text_add(*ours ? after : before, "%.*s", (int)(e - b), b);
        }
        p = e;
    }
    free(file.data);
    if (*ours == NULL) {
        snprintf(why, WHY_SIZE, "%.100s holds no CRL signed by %.100s", o->crl_file,
                 o->issuer_cert_file);
        return -1;
    }
    return 0;
fail:
    free(file.data);
    if (*ours)
        gnutls_x509_crl_deinit(*ours);
    *ours = NULL;
    return -1;
}

/* One try at update_crl: everything is read and signed without the lock;
 * the lock is taken only to see that crl.pem is still what was read, and
 * to put the new one in its place, so it is never held for longer than a
 * rename takes.  Returns as update_crl does, or -2: crl.pem changed
 * meanwhile, try again. */
static int sign_crl_once(const struct options *o, const struct issuer *ca,
                         const unsigned char *serial, size_t serial_len,
                         const struct connection *conn, int lock, char *why)
{
    gnutls_x509_crl_t crl = NULL;
    gnutls_datum_t pem = {NULL, 0};
    struct text before = {0}, after = {0}, all = {0};
    struct stat read_as, now_as;
    struct crl_mark was = {0}, last = {0};
    unsigned char num[32], id[64];
    size_t num_len = sizeof num, id_size = sizeof id;
    time_t now = time(NULL);
    int ret, result = -1;
    bool locked = false;

    if (read_crl_file(o, ca, &crl, &before, &after, &read_as, why) < 0)
        goto out;
    if (serial && crl_lists(crl, serial, serial_len)) {
        result = 0;
        goto out;
    }
    if ((ret = mark_of(crl, &was, true)) < 0) {
        failed(why, o->crl_file, ret);
        goto out;
    }
    if (conn && behind_the_crl_in_force(crl, o->crl_file, why))
        goto out;
    /* -revoke and -gencrl: the entry, the dates, the number, the signature */
    if (!next_crl_number(crl, num, &num_len)) {
        snprintf(why, WHY_SIZE, "%.150s: its CRL number is over 20 bytes (RFC 5280 5.2.3)",
                 o->crl_file);
        goto out;
    }
    if ((serial && (ret = gnutls_x509_crl_set_crt_serial(crl, serial, serial_len, now)) < 0) ||
        (ret = gnutls_x509_crl_set_version(crl, 2)) < 0 ||
        (ret = gnutls_x509_crl_set_this_update(crl, now)) < 0 ||
        (ret = gnutls_x509_crl_set_next_update(crl, now + CRL_DAYS * 86400L)) < 0 ||
        (ret = gnutls_x509_crl_set_number(crl, num, num_len)) < 0 ||
        (ret = gnutls_x509_crt_get_subject_key_id(ca->crt, id, &id_size, NULL)) < 0 ||
        (ret = gnutls_x509_crl_set_authority_key_id(crl, id, id_size)) < 0 ||
        (ret = gnutls_x509_crl_privkey_sign(crl, ca->crt, ca->key, GNUTLS_DIG_SHA256, 0)) < 0 ||
        (ret = gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_PEM, &pem)) < 0) {
        failed(why, "signing the CRL", ret);
        goto out;
    }
    text_add(&all, "%s%.*s%s", before.s ? before.s : "", (int)pem.size, (char *)pem.data,
             after.s ? after.s : "");
    if (all.failed || before.failed || after.failed) {
        snprintf(why, WHY_SIZE, "%s", strerror(ENOMEM));
        goto out;
    }
    if (take_lock(lock, conn) < 0) {
        snprintf(why, WHY_SIZE, "cannot lock the folder of %.150s: %s", o->crl_file,
                 strerror(errno));
        goto out;
    }
    locked = true;
    if (stat(o->crl_file, &now_as) < 0 || !same_file_state(&now_as, &read_as)) {
        result = -2;
        goto out;
    }
    if (recorded_mark(o->crl_file, &last) &&
        memcmp(last.issuer, was.issuer, sizeof was.issuer) == 0 &&
        goes_back(o->crl_file, &last, &was, 1, why))
        goto out;
    if (conn && ms_left(conn) <= 0) {
        snprintf(why, WHY_SIZE, "the connection's deadline passed; %.150s is unchanged",
                 o->crl_file);
        goto out;
    }
    if (write_file(o->crl_file, all.s, all.len, 0644, why) < 0)
        goto out;
    char no_copy[WHY_SIZE];
    if (record_crl(o->crl_file, &pem, no_copy) < 0) {
        if (conn)
            log_say("%s is signed anew, but its copy is not kept: %s; until it is, an "
                    "older crl.pem put back would undo this revocation", o->crl_file, no_copy);
        else
            fprintf(stderr, "server: %s is signed anew, but its copy is not kept: %s; until it "
                            "is, an older crl.pem put back would undo this revocation\n",
                    o->crl_file, no_copy);
    }
    result = serial ? 1 : 0;
out:
    free_marks(&was, 1);
    free_marks(&last, 1);
    if (locked)
        flock(lock, LOCK_UN);
    gnutls_free(pem.data);
    free(text_take(&before));
    free(text_take(&after));
    free(text_take(&all));
    if (crl)
        gnutls_x509_crl_deinit(crl);
    return result;
}

/* Add serial (the INTEGER's bytes) to our CA's CRL in crl.pem, or with
 * serial NULL sign it again as it is.  conn: the connection whose deadline
 * bounds the wait for the lock, or NULL on the command line.  Returns 1 if
 * it was added, 0 if it was listed already (nothing written) or the list
 * was renewed, -1 with why. */
static int update_crl(const struct options *o, const struct issuer *ca,
                      const unsigned char *serial, size_t serial_len,
                      const struct connection *conn, char *why)
{
    /* The lock is crl.pem's folder, which nobody deletes while it is in use
     * (a lock file can be deleted, and one made anew would let a second
     * writer hold "the" lock at the same time). */
    char folder[PATH_MAX];
    const char *slash = strrchr(o->crl_file, '/');
    snprintf(folder, sizeof folder, "%.*s", slash ? (int)(slash + 1 - o->crl_file) : 1,
             slash ? o->crl_file : ".");
    int lock = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC), result = -2;
    if (lock < 0) {
        snprintf(why, WHY_SIZE, "cannot open the folder of %.150s: %s", o->crl_file,
                 strerror(errno));
        return -1;
    }
    /* a page tries until its deadline, the command line 100 times */
    for (int tries = 0; result == -2 && (conn ? ms_left(conn) > 0 : tries < 100); tries++)
        result = sign_crl_once(o, ca, serial, serial_len, conn, lock, why);
    close(lock);
    if (result == -2) {
        snprintf(why, WHY_SIZE, "%.150s kept changing while the new list was made",
                 o->crl_file);
        result = -1;
    }
    return result;
}

/* ======================= D. Accounts: whose certificate is it? ============ */
/*
 * A name is a claim; a certificate is a fact.  A CN says "Carol" because
 * whoever made the certificate typed it: part 1's Alice was made by hand,
 * two people may both be invited as "Carol", and another CA we trust may
 * sign a "Carol" of its own.  So no name decides anything here.  Each
 * invitation from the command line opens an account; each certificate
 * issued through it is recorded under that account; and a visitor's
 * account is found from the certificate they proved they hold: signed by
 * our CA, and, looked up by its serial, the very certificate we recorded,
 * byte for byte.  Real systems map a certificate to a user the same way:
 * by issuer and serial, or by its key.  Windows (KB5014754, 2022) calls
 * those mappings strong, and a mapping by subject name weak.
 *
 * On disk, under the certificate folder (folders 0700; certificates and
 * crl.pem 0644, since they are public; every other file 0600, and the
 * folders 0700 too, since together they say who holds which certificate):
 *   accounts/ID/name          the name the invitation gave: "Carol"
 *   accounts/ID/SERIAL.pem    each certificate issued to the account
 *   issued/SERIAL             the index: the ID of the account SERIAL is in
 * Finding a visitor's account reads three small files, however many
 * accounts there are.
 */

struct account {
    char id[2 * ACCOUNT_BYTES + 1];     /* 16 hex digits */
    char name[MAX_NAME + 1];
};

/* A name becomes a certificate's CN and a page's heading: printable UTF-8,
 * 1 to 64 bytes, no space at either end, and nothing that hides or
 * rearranges what is shown (section 11's deceptive(): controls, direction
 * marks, and invisible characters such as U+200B and U+FEFF, with which
 * "\uFEFFAlice" would read as "Alice"), and no space of any kind at either
 * end ("Alice\u00A0" is not "Alice").  A name may still look like another
 * (a Cyrillic A, U+0410; a combining mark): it is a claim, and it decides
 * nothing here (section D).  Returns NULL or what is wrong. */
static bool is_space(unsigned cp)
{
    return cp == ' ' || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

static const char *bad_name(const char *name)
{
    size_t len = strlen(name);
    unsigned first = 0, last = 0;
    if (len == 0 || len > MAX_NAME)
        return "a name has 1 to 64 bytes";
    for (size_t i = 0; i < len;) {
        const unsigned char *s = (const unsigned char *)name + i;
        size_t n = s[0] < 0x80 ? 1 : utf8_length(s, len - i);
        if (n == 0)
            return "a name is UTF-8 text";
        if ((n == 1 && (s[0] < 0x20 || s[0] == 0x7f)) || deceptive(s, n))
            return "a name holds no control, direction or invisible characters";
        last = code_point(s, n);
        first = i == 0 ? last : first;
        i += n;
    }
    if (is_space(first) || is_space(last))
        return "a name does not begin or end with a space";
    return NULL;
}

static bool valid_account_id(const char *id)
{
    return strlen(id) == 2 * ACCOUNT_BYTES && strspn(id, "0123456789ABCDEF") == 2 * ACCOUNT_BYTES;
}

/* DIR/accounts/ID/FILE (FILE may be NULL): 0, or -1 if too long. */
static int account_path(char *out, const struct options *o, const char *id, const char *file)
{
    int n = snprintf(out, PATH_MAX, "%s/accounts/%s%s%s", o->certs_dir, id, file ? "/" : "",
                     file ? file : "");
    return n < 0 || n >= PATH_MAX ? -1 : 0;
}

/* The account ID, as its files say; false if they don't say it properly. */
static bool read_account(const struct options *o, const char *id, struct account *acct)
{
    char path[PATH_MAX], text[MAX_NAME + 2];
    memset(acct, 0, sizeof *acct);
    if (!valid_account_id(id) || account_path(path, o, id, "name") < 0 ||
        read_small_file(path, text, sizeof text) < 0)
        return false;
    size_t len = strlen(text);
    if (len < 2 || text[len - 1] != '\n')
        return false;
    text[len - 1] = '\0';
    if (bad_name(text) != NULL)
        return false;
    memcpy(acct->id, id, sizeof acct->id);
    memcpy(acct->name, text, len);
    return true;
}

/* A new account for name: a random ID, its folder, its name.  0, or -1
 * with why. */
static int new_account(const struct options *o, const char *name, struct account *acct,
                       char *why)
{
    char path[PATH_MAX], text[MAX_NAME + 2];
    unsigned char raw[ACCOUNT_BYTES];
    int made = 0;

    memset(acct, 0, sizeof *acct);
    if (join_path(path, o->certs_dir, "accounts") < 0 || make_folder(path, why) < 0)
        return -1;
    /* GNUTLS_RND_NONCE: an ID must be unique and unguessable, not secret
     * (the code that opens an account is the secret: GNUTLS_RND_KEY) */
    for (int tries = 0; made == 0 && tries < 4; tries++) {    /* 64 bits: a clash is rare */
        int ret = gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof raw);
        if (ret < 0)
            return failed(why, "a new account", ret);
        to_hex(raw, sizeof raw, acct->id);
        if (account_path(path, o, acct->id, NULL) < 0 || (made = make_folder(path, why)) < 0)
            return -1;
    }
    snprintf(acct->name, sizeof acct->name, "%s", name);
    snprintf(text, sizeof text, "%s\n", name);
    char dir[PATH_MAX];
    if (made == 0 || account_path(dir, o, acct->id, NULL) < 0 ||
        account_path(path, o, acct->id, "name") < 0) {
        snprintf(why, WHY_SIZE, "no new account ID");
        return -1;
    }
    if (write_file(path, text, strlen(text), 0600, why) < 0) {
        rmdir(dir);                 /* no account without a name */
        return -1;
    }
    return 0;
}

/* How many accounts are named name.  It reads them all: for --invite,
 * never for a page. */
static int accounts_named(const struct options *o, const char *name)
{
    char dir[PATH_MAX];
    struct account acct;
    int count = 0;
    DIR *d = join_path(dir, o->certs_dir, "accounts") == 0 ? opendir(dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        count += read_account(o, e->d_name, &acct) && strcmp(acct.name, name) == 0;
    if (d)
        closedir(d);
    return count;
}

/* The account issued/SERIAL names, into id; false if none. */
static bool indexed_account(const struct options *o, const char *serial_hex,
                            char id[2 * ACCOUNT_BYTES + 1])
{
    char path[PATH_MAX], text[2 * ACCOUNT_BYTES + 2], dir[PATH_MAX];
    if (join_path(dir, o->certs_dir, "issued") < 0 || join_path(path, dir, serial_hex) < 0 ||
        read_small_file(path, text, sizeof text) < 0 || strlen(text) != 2 * ACCOUNT_BYTES + 1 ||
        text[2 * ACCOUNT_BYTES] != '\n')
        return false;
    text[2 * ACCOUNT_BYTES] = '\0';
    memcpy(id, text, 2 * ACCOUNT_BYTES + 1);
    return valid_account_id(id);
}

static gnutls_x509_crt_t read_certificate(const char *file)
{
    gnutls_datum_t pem = {NULL, 0};
    gnutls_x509_crt_t crt = NULL;
    if (gnutls_load_file(file, &pem) < 0 || gnutls_x509_crt_init(&crt) < 0 ||
        gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM) < 0) {
        if (crt)
            gnutls_x509_crt_deinit(crt);
        crt = NULL;
    }
    gnutls_free(pem.data);
    return crt;
}

/* The certificate the account recorded as serial_hex, if our CA signed it
 * and it has that serial; NULL if not.  Dates are not checked: an expired
 * certificate is still the account's. */
static gnutls_x509_crt_t recorded_certificate(const struct server *srv, const struct account *acct,
                                              const char *serial_hex)
{
    char path[PATH_MAX], file[2 * MAX_SERIAL + 8], hex[2 * MAX_SERIAL + 1];
    unsigned char der[MAX_SERIAL];
    size_t len;
    unsigned int status = GNUTLS_CERT_INVALID;
    snprintf(file, sizeof file, "%s.pem", serial_hex);
    gnutls_x509_crt_t crt = account_path(path, srv->opts, acct->id, file) == 0
                                ? read_certificate(path) : NULL;
    if (crt && (certificate_serial(crt, der, &len, hex) < 0 || strcmp(hex, serial_hex) != 0 ||
                gnutls_x509_crt_verify(crt, &enrolled_ca->crt, 1,
                                       GNUTLS_VERIFY_DISABLE_TIME_CHECKS, &status) < 0 ||
                status != 0)) {
        gnutls_x509_crt_deinit(crt);
        crt = NULL;
    }
    return crt;
}

/* Record crt as one of acct's: accounts/ID/SERIAL.pem first, then the
 * index issued/SERIAL, so that the index never names a certificate that
 * is not there.  0, or -1 with why (and nothing left behind). */
static int record_certificate(const struct options *o, const struct account *acct,
                              gnutls_x509_crt_t crt, const char *serial_hex, char *why)
{
    char file[2 * MAX_SERIAL + 8], cert_path[PATH_MAX], dir[PATH_MAX], index[PATH_MAX];
    char id_line[2 * ACCOUNT_BYTES + 2];
    gnutls_datum_t pem = {NULL, 0};
    int ret = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem);
    if (ret < 0)
        return failed(why, "exporting the certificate", ret);
    snprintf(file, sizeof file, "%s.pem", serial_hex);
    snprintf(id_line, sizeof id_line, "%s\n", acct->id);
    ret = -1;
    if (account_path(cert_path, o, acct->id, file) < 0 ||
        join_path(dir, o->certs_dir, "issued") < 0 || join_path(index, dir, serial_hex) < 0)
        snprintf(why, WHY_SIZE, "a path is too long");
    else if (write_file(cert_path, pem.data, pem.size, 0644, why) == 0) {
        if (make_folder(dir, why) >= 0 &&
            write_file(index, id_line, strlen(id_line), 0600, why) == 0)
            ret = 0;
        else
            unlink(cert_path);
    }
    gnutls_free(pem.data);
    return ret;
}

/* The lesson of part 2: the account a certificate belongs to.  der is the
 * certificate the visitor proved they hold (the handshake's
 * CertificateVerify).  It is an account's if our CA signed it (section 3
 * checked it against every CA of --ca; accounts are ours alone), and the
 * account that issued/SERIAL names recorded this very certificate, byte
 * for byte: the serial is only where to look, since anyone who has our
 * CA's key (gencerts.sh, openssl ca) can sign another certificate with the
 * same serial.  Fills serial_hex in any case, for the log.  Returns
 * whether it found one. */
static bool account_of_certificate(const struct server *srv, const gnutls_datum_t *der,
                                   struct account *acct, char serial_hex[2 * MAX_SERIAL + 1])
{
    gnutls_x509_crt_t crt = NULL, recorded = NULL;
    unsigned char serial[MAX_SERIAL];
    size_t len;
    unsigned int status = GNUTLS_CERT_INVALID;
    char id[2 * ACCOUNT_BYTES + 1];
    bool found = false;

    serial_hex[0] = '\0';
    memset(acct, 0, sizeof *acct);
    if (gnutls_x509_crt_init(&crt) < 0)
        return false;
    if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0 &&
        certificate_serial(crt, serial, &len, serial_hex) == 0 &&
        gnutls_x509_crt_verify(crt, &enrolled_ca->crt, 1, 0, &status) == 0 && status == 0 &&
        indexed_account(srv->opts, serial_hex, id) && read_account(srv->opts, id, acct) &&
        (recorded = recorded_certificate(srv, acct, serial_hex)) != NULL)
        found = gnutls_x509_crt_equals2(recorded, der) != 0;
    if (recorded)
        gnutls_x509_crt_deinit(recorded);
    gnutls_x509_crt_deinit(crt);
    if (!found)
        memset(acct, 0, sizeof *acct);
    return found;
}

/* One certificate of an account, for the list. */
struct listed {
    char serial[2 * MAX_SERIAL + 1];
    time_t issued;
    const char *state;          /* "valid", "revoked", "expired", "not valid" */
};

static int by_date(const void *a, const void *b)
{
    const struct listed *x = a, *y = b;
    return (x->issued > y->issued) - (x->issued < y->issued);
}

/* What the server would make of crt now: the check of section 3, against
 * the same trusted CAs and the CRL in force (creds). */
static const char *state_of(gnutls_x509_crt_t crt, gnutls_certificate_credentials_t creds)
{
    gnutls_x509_trust_list_t trusted = NULL;
    unsigned int status = GNUTLS_CERT_INVALID;
    gnutls_certificate_get_trust_list(creds, &trusted);
    if (trusted == NULL ||
        gnutls_x509_trust_list_verify_crt(trusted, &crt, 1, 0, &status, NULL) < 0)
        return "not valid";
    return status == 0                          ? "valid"
         : status & GNUTLS_CERT_REVOKED         ? "revoked"
         : status & GNUTLS_CERT_EXPIRED         ? "expired"
                                                : "not valid";
}

/* The account's certificates, oldest first, into *out (free it); their
 * number, or -1 when out of memory.  Reads the account's folder only. */
static long list_account(const struct server *srv, const struct account *acct,
                         gnutls_certificate_credentials_t creds, struct listed **out)
{
    char dir[PATH_MAX];
    size_t count = 0, cap = 0;
    struct listed *list = NULL;
    DIR *d = account_path(dir, srv->opts, acct->id, NULL) == 0 ? opendir(dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        char serial_hex[2 * MAX_SERIAL + 1];
        if (len < 5 || len > 2 * MAX_SERIAL + 4 || strcmp(e->d_name + len - 4, ".pem") != 0)
            continue;
        snprintf(serial_hex, sizeof serial_hex, "%.*s", (int)(len - 4), e->d_name);
        gnutls_x509_crt_t crt = recorded_certificate(srv, acct, serial_hex);
        if (crt == NULL)
            continue;
        if (count == cap) {
            struct listed *more = reallocarray(list, cap ? 2 * cap : 8, sizeof *list);
            if (more == NULL) {
                gnutls_x509_crt_deinit(crt);
                free(list);
                closedir(d);
                return -1;
            }
            list = more;
            cap = cap ? 2 * cap : 8;
        }
        struct listed *it = &list[count++];
        snprintf(it->serial, sizeof it->serial, "%s", serial_hex);
        it->issued = gnutls_x509_crt_get_activation_time(crt);
        it->state = state_of(crt, creds);
        gnutls_x509_crt_deinit(crt);
    }
    if (d)
        closedir(d);
    if (count > 1)
        qsort(list, count, sizeof *list, by_date);
    *out = list;
    return (long)count;
}

/* ======================= E. Invitations =================================== */
/*
 * The author's draft printed its download link on the console (saying "We
 * sent an email"); we print an invitation link, and the operator passes it
 * on.  The link's code is the only thing that lets a stranger (with no
 * certificate yet) get one, so:
 *   - 128 random bits from GnuTLS's key-grade generator (GNUTLS_RND_KEY);
 *   - on disk only its SHA-256, as the file's name (invites/HASH): a copy
 *     of the folder does not hold a usable code.  The server finds the
 *     file by that name; how long that takes tells a guesser only about
 *     the hash of their own guess, which they know already;
 *   - used up by renaming HASH to HASH.used, which only one of two
 *     simultaneous enrollments can do;
 *   - it names the account, and so the person: the name in the certificate
 *     comes from the account, never from the form.
 * ./server --invite NAME opens a new account each time.  A second device
 * joins an account from its /certificates page (section F), with an
 * invitation to the same account.
 */

enum invitation_state { INVITE_UNKNOWN, INVITE_OPEN, INVITE_USED, INVITE_EXPIRED, INVITE_VOID };

struct invitation {
    enum invitation_state state;
    struct account account;
    char by[2 * MAX_SERIAL + 1];    /* the device that asked for it (/add-device), or "" */
    time_t expires;
    char file[PATH_MAX];
};

static int code_hash(const char *code, char hex[65])
{
    unsigned char digest[32];
    int ret = gnutls_hash_fast(GNUTLS_DIG_SHA256, code, strlen(code), digest);
    if (ret == 0)
        to_hex(digest, sizeof digest, hex);
    return ret;
}

/* A new code, and its hash (the invitation's file name).  0, or -1 with why. */
static int new_code(char code[2 * CODE_BYTES + 1], char hash[65], char *why)
{
    unsigned char raw[CODE_BYTES];
    int ret = gnutls_rnd(GNUTLS_RND_KEY, raw, sizeof raw);
    if (ret == 0) {
        to_hex(raw, sizeof raw, code);
        ret = code_hash(code, hash);
    }
    return ret < 0 ? failed(why, "a new code", ret) : 0;
}

/* The invitation whose code hashes to hash: to acct, good for hours, asked
 * for by the device with serial by ("" from the command line).  0, or -1
 * with why. */
static int write_invitation(const struct options *o, const struct account *acct, int hours,
                            const char *by, const char *hash, char *why)
{
    char dir[PATH_MAX], file[PATH_MAX], text[128];
    if (join_path(dir, o->certs_dir, "invites") < 0 || join_path(file, dir, hash) < 0) {
        snprintf(why, WHY_SIZE, "a path is too long");
        return -1;
    }
    snprintf(text, sizeof text, "%lld %s %s\n", (long long)(time(NULL) + (time_t)hours * 3600),
             acct->id, by);
    return make_folder(dir, why) < 0 ? -1 : write_file(file, text, strlen(text), 0600, why);
}

/* ./server --invite NAME: a new account, and the link that gets its first
 * certificate.  Returns the exit status. */
static int invite(const struct options *o)
{
    char code[2 * CODE_BYTES + 1], hash[65], why[WHY_SIZE];
    struct account acct;
    const char *problem = bad_name(o->invite_name);
    if (problem) {
        fprintf(stderr, "server: --invite: %s\n", problem);
        return 2;
    }
    int same = accounts_named(o, o->invite_name);
    if (new_account(o, o->invite_name, &acct, why) < 0 || new_code(code, hash, why) < 0 ||
        write_invitation(o, &acct, o->invite_hours, "", hash, why) < 0) {
        fprintf(stderr, "server: --invite: %s\n", why);
        return 1;
    }
    printf("https://localhost:%d/enroll?code=%s\n", o->port, code);
    fprintf(stderr, "server: invited \"%s\" to a new account, %s, for %d hours; the link works "
                    "once, with ./server --enroll\n", acct.name, acct.id, o->invite_hours);
    if (same > 0)
        fprintf(stderr, "server: %d other account%s named \"%s\" already; this is a new one. A "
                        "second device joins its account from that account's /certificates page\n",
                same, same > 1 ? "s are" : " is", acct.name);
    return 0;
}

/* ./server --revoke SERIAL, or --renew-crl: the operator's way.  Returns
 * the exit status. */
static int revoke_from_command_line(const struct options *o)
{
    struct issuer ca;
    unsigned char der[MAX_SERIAL];
    size_t len = 0;
    char hex[2 * MAX_SERIAL + 1], why[WHY_SIZE];
    bool renew = o->revoke_serial == NULL;

    if (!renew && !parse_serial(o->revoke_serial, der, &len, hex)) {
        fprintf(stderr, "server: --revoke wants a serial of 1 to 40 hex digits, as "
                        "openssl x509 -noout -serial prints it, not '%s'\n", o->revoke_serial);
        return 2;
    }
    if (load_issuer(o, &ca) < 0)
        return 1;
    int ret = update_crl(o, &ca, renew ? NULL : der, len, NULL, why);
    free_issuer(&ca);
    if (ret < 0) {
        fprintf(stderr, "server: %s; nothing was %s\n", why, renew ? "signed" : "revoked");
        return 1;
    }
    if (renew)
        fprintf(stderr, "server: %s signed again, valid for %d days\n", o->crl_file, CRL_DAYS);
    else if (ret == 0)
        fprintf(stderr, "server: %s was revoked already; %s is unchanged\n", hex, o->crl_file);
    else
        fprintf(stderr, "server: %s is now revoked in %s; a running server refuses it from its "
                        "next certificate check\n", hex, o->crl_file);
    char id[2 * ACCOUNT_BYTES + 1];
    struct account acct;
    if (!renew && indexed_account(o, hex, id) && read_account(o, id, &acct))
        fprintf(stderr, "server: %s was issued to account %s, \"%s\"\n", hex, acct.id, acct.name);
    else if (!renew)
        fprintf(stderr, "server: %s is no certificate of part 2's accounts\n", hex);
    return 0;
}

/* Find the invitation a code opens, and in what state it is. */
static void find_invitation(const struct options *o, const char *code, struct invitation *inv)
{
    char dir[PATH_MAX], hash[65], text[128], used[PATH_MAX + 8], id[2 * ACCOUNT_BYTES + 1];
    bool is_used = false;
    long long expires;

    memset(inv, 0, sizeof *inv);
    if (strlen(code) != 2 * CODE_BYTES || code_hash(code, hash) < 0 ||
        join_path(dir, o->certs_dir, "invites") < 0 || join_path(inv->file, dir, hash) < 0)
        return;
    snprintf(used, sizeof used, "%s.used", inv->file);
    if (read_small_file(inv->file, text, sizeof text) < 0) {
        if (read_small_file(used, text, sizeof text) < 0)
            return;
        is_used = true;
    }
    int fields = sscanf(text, "%lld %16s %42[0-9A-F]", &expires, id, inv->by);
    if (fields >= 2 && read_account(o, id, &inv->account)) {
        inv->expires = (time_t)expires;
        inv->state = is_used ? INVITE_USED : time(NULL) >= inv->expires ? INVITE_EXPIRED
                                                                          : INVITE_OPEN;
    }
}

/* Use the invitation up.  rename() is atomic: of two enrollments racing
 * with one code, one renames the file and the other finds it gone
 * (ENOENT).  Returns 0 or an errno. */
static int claim_invitation(const struct invitation *inv)
{
    char used[PATH_MAX + 8];
    snprintf(used, sizeof used, "%s.used", inv->file);
    return rename(inv->file, used) == 0 ? 0 : errno;
}

/* Give it back, when no certificate came of it; false if it stays used. */
static bool unclaim_invitation(const struct invitation *inv)
{
    char used[PATH_MAX + 8];
    snprintf(used, sizeof used, "%s.used", inv->file);
    return rename(used, inv->file) == 0;
}

/* ======================= F. The pages ===================================== */
/*
 * GET /enroll?code=...   the form: the invited name, a passphrase, legacy
 * POST /enroll           A and B, then the .p12 as a download; E's code used up
 * GET /certificates      the certificates of the visitor's account (D)
 * POST /revoke           C, for one of them
 * POST /add-device       E: a one-time link that adds a device to the account
 *
 * CSRF: a browser sends the client certificate with every request to this
 * server, even one that another site's page starts (a hidden form that
 * posts to /revoke), just as it sends cookies.  So every POST must show it
 * came from one of our own pages: its Origin names this server (the Host
 * it asked for), or, from a browser that sends no Origin, Sec-Fetch-Site
 * says same-origin.  Anything else gets 403 before its body is read.
 */
static bool from_our_page(const struct request *req)
{
    if (req->origin)
        return req->host && req->origin_len == 8 + req->host_len &&
               strncasecmp(req->origin, "https://", 8) == 0 &&
               strncasecmp(req->origin + 8, req->host, req->host_len) == 0;
    return req->fetch_site && req->fetch_site_len == 11 &&
           memcmp(req->fetch_site, "same-origin", 11) == 0;
}

/* Which routes take a POST: part 2's, and only under --enroll. */
static bool takes_post(const struct request *req)
{
    return enrolled_ca &&
           (path_is(req, "/enroll") || path_is(req, "/revoke") || path_is(req, "/add-device"));
}

/* The answer: html with status, or a 500 when there is no html (out of
 * memory); answer_request writes the 500's page. */
static void page(struct answer *ans, int status, char *html)
{
    ans->status = html ? status : 500;
    ans->page = html;
}

static const char *invitation_problem(enum invitation_state state, int *status)
{
    *status = state == INVITE_UNKNOWN ? 404 : 410;
    return state == INVITE_USED    ? "This invitation has been used already. Each link works once: "
                                     "ask whoever invited you for a new one."
         : state == INVITE_EXPIRED ? "This invitation has expired. Ask whoever invited you for a new one."
         : state == INVITE_VOID    ? "This link was made by a device whose certificate has since been "
                                     "revoked, or has expired: it no longer works."
                                   : "This is not a valid invitation code. Check the link, or ask "
                                     "whoever invited you for a new one.";
}

/* The file name a browser saves the bundle as: the name, reduced to
 * letters, digits, '-' and '_' (a name may hold '/', '"' or "..");
 * "certificate" if nothing is left. */
static void bundle_file_name(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    for (; *name && o + 5 < cap; name++)
        if (isalnum((unsigned char)*name) || *name == '-' || *name == '_')
            out[o++] = (char)tolower((unsigned char)*name);
    snprintf(out + o, cap - o, "%s.p12", o ? "" : "certificate");
}

/* Whether the device that asked for a link is still one of the account's
 * good devices: a link a stolen laptop asked for dies when the laptop's
 * certificate is revoked. */
static bool asker_still_good(gnutls_session_t s, const struct server *srv,
                             struct connection *conn, const struct invitation *inv)
{
    gnutls_x509_crt_t crt = recorded_certificate(srv, &inv->account, inv->by);
    bool good = crt && use_current_credentials(s, conn) == 0 &&
                strcmp(state_of(crt, conn->creds), "valid") == 0;
    if (crt)
        gnutls_x509_crt_deinit(crt);
    return good;
}

/* Find the invitation a code opens.  If it is not open, the answer says
 * why (404, 410) and the log too; returns whether it is open. */
static bool open_invitation(gnutls_session_t s, const struct server *srv, struct connection *conn,
                            const char *code, struct invitation *inv, struct answer *ans)
{
    static const char *const said[] = {
        [INVITE_UNKNOWN] = "no such invitation",
        [INVITE_USED] = "the invitation was used already",
        [INVITE_EXPIRED] = "the invitation has expired",
        [INVITE_VOID] = "the device that asked for the link is revoked or expired",
    };
    int status;
    find_invitation(srv->opts, code, inv);
    if (inv->state == INVITE_OPEN && inv->by[0] && !asker_still_good(s, srv, conn, inv))
        inv->state = INVITE_VOID;
    if (inv->state == INVITE_OPEN)
        return true;
    note(conn, "enroll: %s", said[inv->state]);
    const char *problem = invitation_problem(inv->state, &status);
    page(ans, status, strdup(problem));
    return false;
}

/* GET /enroll?code=CODE: whom the invitation names, and the form. */
static void enroll_form(gnutls_session_t s, const struct server *srv, struct connection *conn,
                        const struct request *req, struct answer *ans)
{
    char code[2 * CODE_BYTES + 8] = "";
    struct invitation inv;

    if (req->query == NULL || form_field(req->query, req->query_len, "code", code, sizeof code) != 1)
        code[0] = '\0';
    if (!open_invitation(s, srv, conn, code, &inv, ans))
        return;
    char *name = html_escape(inv.account.name);
    char log_name[4 * MAX_NAME + 8], file_name[MAX_NAME + 8];
    bundle_file_name(inv.account.name, file_name, sizeof file_name);
    log_escape(log_name, sizeof log_name, inv.account.name, strlen(inv.account.name));
    note(conn, "enroll form for account %s \"%s\"", inv.account.id, log_name);
    page(ans, 200, name == NULL ? NULL : format_text(
        "<h1>Welcome, %s</h1>\n"
        "<form method=\"post\" action=\"/enroll\">\n"
        "<input type=\"hidden\" name=\"code\" value=\"%s\">\n"
        "<p><label>A passphrase for the file (it may be empty, as in the tutorial): "
        "<input type=\"password\" name=\"passphrase\" autocomplete=\"new-password\"></label></p>\n"
        "<p><label><input type=\"checkbox\" name=\"legacy\" value=\"1\"> For older macOS or "
        "Windows: the older encryption their keychains can read (3DES)</label></p>\n"
        "<p><button type=\"submit\">Make my certificate</button></p>\n"
        "</form>\n"
        "<p>The server makes a key pair and a certificate for %s, valid for a year, and sends "
        "both as %s. The server sees the private key while it makes the file; it does not "
        "keep it.</p>\n"
        "<p>Then import the file. Firefox: Settings, Privacy &amp; Security, Certificates, View "
        "Certificates, Your Certificates, Import. Chrome and Chromium: Settings, Privacy and "
        "security, Security, Manage certificates, Import. Then visit "
        "<a href=\"/authenticate\">/authenticate</a>.</p>",
        name, code, name, file_name));
    free(name);
}

/* POST /enroll: code, passphrase, legacy.  The answer is the bundle itself. */
static void enroll_bundle(gnutls_session_t s, const struct server *srv, struct connection *conn,
                          const struct request *req, struct answer *ans)
{
    char code[2 * CODE_BYTES + 8], passphrase[256], legacy[8], why[WHY_SIZE] = "";
    char serial_hex[2 * MAX_SERIAL + 1], log_name[4 * MAX_NAME + 8], file_name[MAX_NAME + 8];
    unsigned char serial[MAX_SERIAL];
    size_t serial_len;
    struct invitation inv;
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t p12 = {NULL, 0};
    int status;

    int has_code = form_field(req->body, req->body_len, "code", code, sizeof code);
    int has_pass = form_field(req->body, req->body_len, "passphrase", passphrase, sizeof passphrase);
    int has_legacy = form_field(req->body, req->body_len, "legacy", legacy, sizeof legacy);
    if (has_code < 0 || has_pass < 0 || has_legacy < 0 || has_code == 0 ||
        (has_legacy == 1 && strcmp(legacy, "1") != 0)) {    /* the box's value="1" */
        note(conn, "enroll: a malformed form");
        page(ans, 400, strdup("400 Bad Request: the form is malformed or has no code."));
        return;
    }
    if (has_pass == 0)
        passphrase[0] = '\0';
    if (!open_invitation(s, srv, conn, code, &inv, ans))
        goto out;
    const struct account *acct = &inv.account;
    log_escape(log_name, sizeof log_name, acct->name, strlen(acct->name));
    /* Use the code up first: of two requests racing with one code, only one
     * goes on to make a key (a bundle costs 1.8 million iterations, section B).
     * If no certificate comes of it, the invitation is given back. */
    int err = claim_invitation(&inv);
    if (err == ENOENT) {
        note(conn, "enroll account %s \"%s\": the invitation was used by another request",
             acct->id, log_name);
        page(ans, 410, strdup(invitation_problem(INVITE_USED, &status)));
        goto out;
    } else if (err != 0) {
        note(conn, "enroll account %s \"%s\": cannot use the invitation: %s", acct->id, log_name,
             strerror(err));
        page(ans, 503, strdup("503 Service Unavailable: the server cannot write its files just "
                              "now. Your invitation is still good: try again later."));
        goto out;
    }
    if (issue_certificate(enrolled_ca, acct->name, &key, &crt, why) < 0 ||
        make_pkcs12(key, crt, acct->name, passphrase, has_legacy == 1, &p12, why) < 0)
        goto fail;
    if (certificate_serial(crt, serial, &serial_len, serial_hex) < 0) {
        snprintf(why, sizeof why, "reading the serial back");
        goto fail;
    }
    if (record_certificate(srv->opts, acct, crt, serial_hex, why) < 0)
        goto fail;
    note(conn, "enrolled account %s \"%s\", serial %s%s", acct->id, log_name, serial_hex,
         has_legacy == 1 ? " (legacy bundle)" : "");
    bundle_file_name(acct->name, file_name, sizeof file_name);
    ans->status = 200;
    ans->page = malloc(p12.size);
    if (ans->page == NULL) {
        ans->status = 500;
        goto out;
    }
    memcpy(ans->page, p12.data, p12.size);
    ans->page_len = p12.size;
    ans->content_type = "application/x-pkcs12";
    snprintf(ans->disposition, sizeof ans->disposition, "attachment; filename=\"%s\"", file_name);
    goto out;
fail:
    if (unclaim_invitation(&inv)) {
        note(conn, "enroll account %s \"%s\" failed: %s", acct->id, log_name, why);
        page(ans, 500, strdup("500 Internal Server Error: the certificate could not be made. "
                              "Your invitation is still good: try again later."));
    } else {
        note(conn, "enroll account %s \"%s\" failed: %s; the invitation stays used: %s",
             acct->id, log_name, why, strerror(errno));
        page(ans, 500, strdup("500 Internal Server Error: the certificate could not be made, "
                              "and the invitation is used up: ask for a new one."));
    }
out:
    gnutls_memset(passphrase, 0, sizeof passphrase);
    if (p12.data) {
        gnutls_memset(p12.data, 0, p12.size);   /* it holds the key, if under no passphrase */
        gnutls_free(p12.data);
    }
    if (key)
        gnutls_x509_privkey_deinit(key);
    if (crt)
        gnutls_x509_crt_deinit(crt);
}

/* Who is asking, for the pages below: an admitted visitor (section 3's
 * check, against the CRL in force now) whose certificate is an account's.
 * Otherwise false, after the page that says why: the 401 or 403 that
 * /authenticate would give, or a 403 for a certificate that is trusted
 * but belongs to no account (part 1's Alice: gencerts.sh made her). */
static bool account_holder(gnutls_session_t s, const struct server *srv, struct connection *conn,
                           struct account *acct, char serial_hex[2 * MAX_SERIAL + 1],
                           struct answer *ans)
{
    struct identity id;
    int status;
    unsigned int count = 0;
    check_client_certificate(s, conn, &id);
    note_visitor(conn, &id);
    if (!id.authorized) {
        char *html = greeting(&id, &status);
        page(ans, status, html);
        free_identity(&id);
        return false;
    }
    free_identity(&id);
    const gnutls_datum_t *peer = gnutls_certificate_get_peers(s, &count);
    if (count > 0 && account_of_certificate(srv, &peer[0], acct, serial_hex)) {
        note(conn, "account %s, serial %s", acct->id, serial_hex);
        return true;
    }
    note(conn, "serial %s belongs to no account", serial_hex[0] ? serial_hex : "?");
    page(ans, 403, format_text(
        "<h1>No account</h1>\n"
        "<p>Your certificate is trusted here, but this server did not issue it through an "
        "invitation, so it belongs to no account: there is nothing to list or revoke. The "
        "name in a certificate is not enough, since anyone who makes a certificate chooses "
        "it. (Part 1's certificates are made by gencerts.sh; the operator revokes them with "
        "./server --revoke %s.)</p>", serial_hex[0] ? serial_hex : "SERIAL"));
    return false;
}

/* The list's page, for the fuzzer too: acct's certificates, own marks the
 * visitor's own.  NULL when out of memory. */
static char *certificates_html(const struct account *acct, const struct listed *list,
                               size_t count, const char *own)
{
    struct text t = {0};
    char date[32], *name = html_escape(acct->name);
    if (name == NULL)
        return NULL;
    text_add(&t, "<h1>The certificates of %s</h1>\n"
                 "<p>Account %s. A revoked certificate is refused from its next "
                 "connection on.</p>\n"
                 "<table>\n<tr><th>Serial</th><th>Issued</th><th>State</th><th></th></tr>\n",
             name, acct->id);
    for (size_t i = 0; i < count; i++) {
        struct tm tm;
        strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime_r(&list[i].issued, &tm));
        text_add(&t, "<tr><td>%s</td><td>%s</td><td>%s%s</td><td>", list[i].serial, date,
                 list[i].state, strcmp(list[i].serial, own) == 0 ? " (this device)" : "");
        if (strcmp(list[i].state, "revoked") != 0)
            text_add(&t, "<form method=\"post\" action=\"/revoke\">"
                         "<input type=\"hidden\" name=\"serial\" value=\"%s\">"
                         "<button type=\"submit\">Revoke</button></form>", list[i].serial);
        text_add(&t, "</td></tr>\n");
    }
    text_add(&t, "</table>\n"
                 "<form method=\"post\" action=\"/add-device\"><p>Another device of yours? "
                 "<button type=\"submit\">Get a link for it</button> (it works once)</p></form>");
    free(name);
    return text_take(&t);
}

/* GET /certificates: the lost laptop's remedy, from the other device. */
static void certificates_page(gnutls_session_t s, const struct server *srv,
                              struct connection *conn, struct answer *ans)
{
    struct account acct;
    struct listed *list = NULL;
    char own[2 * MAX_SERIAL + 1];
    if (!account_holder(s, srv, conn, &acct, own, ans))
        return;
    long count = list_account(srv, &acct, conn->creds, &list);
    note(conn, "its certificates listed");
    page(ans, 200, count < 0 ? NULL : certificates_html(&acct, list, (size_t)count, own));
    free(list);
}

/* POST /revoke: serial.  Only a certificate of the visitor's own account. */
static void revoke_certificate(gnutls_session_t s, const struct server *srv,
                               struct connection *conn, const struct request *req,
                               struct answer *ans)
{
    struct account acct;
    char own[2 * MAX_SERIAL + 1], text[64], hex[2 * MAX_SERIAL + 1], why[WHY_SIZE];
    char id[2 * ACCOUNT_BYTES + 1];
    unsigned char serial[MAX_SERIAL];
    size_t len;

    if (!account_holder(s, srv, conn, &acct, own, ans))
        return;
    if (form_field(req->body, req->body_len, "serial", text, sizeof text) != 1 ||
        !parse_serial(text, serial, &len, hex)) {
        note(conn, "revoke: no serial in the form");
        page(ans, 400, strdup("400 Bad Request: the form has no serial number."));
        return;
    }
    gnutls_x509_crt_t recorded = NULL;
    if (!indexed_account(srv->opts, hex, id) || strcmp(id, acct.id) != 0 ||
        (recorded = recorded_certificate(srv, &acct, hex)) == NULL) {
        note(conn, "revoke %s: not one of the account's certificates", hex);
        page(ans, 403, strdup("403 Forbidden: you may revoke only your own account's "
                              "certificates."));
        return;
    }
    gnutls_x509_crt_deinit(recorded);
    int ret = update_crl(srv->opts, enrolled_ca, serial, len, conn, why);
    if (ret < 0) {
        note(conn, "revoke %s failed: %s", hex, why);
        page(ans, 503, strdup("503 Service Unavailable: nothing was revoked, because the "
                              "revocation list can't be written just now. The server's log "
                              "says why; try again later."));
        return;
    }
    note(conn, ret ? "revoked %s" : "revoke %s: revoked already", hex);
    page(ans, 200, format_text("Certificate %s %s. From its next connection on, this server "
                               "refuses it.\n<p><a href=\"/certificates\">Your certificates</a>"
                               "</p>", hex, ret ? "is revoked" : "was revoked already"));
}

/* Each device holds at most one open link: accounts/ID/link-SERIAL names
 * the hash of the last one it asked for, and a new one withdraws it, under
 * a lock on that file, so that requests at once from one device can't each
 * keep one.  The new hash is recorded before the invitation is written:
 * should the disk be full, no link is left that nothing names.  0, or -1
 * with why. */
static int new_device_link(const struct server *srv, struct connection *conn,
                           const struct account *acct, const char *own,
                           char code[2 * CODE_BYTES + 1], char *why)
{
    char file[2 * MAX_SERIAL + 8], path[PATH_MAX], hash[65], old[65], dir[PATH_MAX];
    char old_path[PATH_MAX];
    snprintf(file, sizeof file, "link-%s", own);
    if (account_path(path, srv->opts, acct->id, file) < 0 ||
        join_path(dir, srv->opts->certs_dir, "invites") < 0) {
        snprintf(why, WHY_SIZE, "a path is too long");
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0 || take_lock(fd, conn) < 0) {
        snprintf(why, WHY_SIZE, "%.150s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    ssize_t n = pread(fd, old, 64, 0);
    old[n == 64 ? 64 : 0] = '\0';
    if (n == 64 && strspn(old, "0123456789ABCDEF") == 64 && join_path(old_path, dir, old) == 0)
        unlink(old_path);           /* gone already if it was used (HASH.used) */
    int ret = new_code(code, hash, why);
    if (ret == 0 && (ftruncate(fd, 0) < 0 || pwrite(fd, hash, 64, 0) != 64 || fsync(fd) < 0)) {
        snprintf(why, WHY_SIZE, "cannot write %.150s: %s", path, strerror(errno));
        ret = -1;
    }
    if (ret == 0)
        ret = write_invitation(srv->opts, acct, srv->opts->invite_hours, own, hash, why);
    close(fd);                      /* and with it the lock */
    return ret;
}

/* POST /add-device: an invitation to the visitor's own account, for their
 * other device.  It is shown once, on this page. */
static void add_device(gnutls_session_t s, const struct server *srv, struct connection *conn,
                       const struct request *req, struct answer *ans)
{
    struct account acct;
    char own[2 * MAX_SERIAL + 1], code[2 * CODE_BYTES + 1], why[WHY_SIZE];
    if (!account_holder(s, srv, conn, &acct, own, ans))
        return;
    if (new_device_link(srv, conn, &acct, own, code, why) < 0) {
        note(conn, "a device invitation failed: %s", why);
        page(ans, 503, strdup("503 Service Unavailable: the server cannot write its files just "
                              "now; try again later."));
        return;
    }
    note(conn, "a device invitation written");
    /* the link as the visitor reached us: Host is a checked host[:port] */
    char *host = req->host ? format_text("https://%.*s", (int)req->host_len, req->host)
                           : strdup("");
    char *shown = host ? html_escape(host) : NULL, *name = html_escape(acct.name);
    page(ans, 200, shown && name ? format_text(
        "<h1>A link for your other device</h1>\n"
        "<p>Open this link on the other device within %d hours. It works once, and adds a "
        "certificate to the account of %s:</p>\n"
        "<p><a href=\"/enroll?code=%s\">%s/enroll?code=%s</a></p>\n"
        "<p>Whoever has the link can get a certificate for this account: keep it to yourself."
        "</p>", srv->opts->invite_hours, name, code, shown, code) : NULL);
    gnutls_memset(code, 0, sizeof code);
    free(host);
    free(shown);
    free(name);
}

/* Part 2's routes, under --enroll: the lesson's route() (section 2) asks here
 * first.  Returns false for a path that is not part 2's. */
static bool part2_route(gnutls_session_t s, const struct server *srv, struct connection *conn,
                        const struct request *req, struct answer *ans)
{
    bool get = method_is(req, "GET") || method_is(req, "HEAD"), post = method_is(req, "POST");

    if (enrolled_ca == NULL)
        return false;
    if (get && path_is(req, "/")) {
        ans->status = 200;      /* part 1's landing page, and a way to one's certificates */
        ans->page = strdup("<a href=\"authenticate\">Log in using client certificate</a>"
                           "\n<p><a href=\"certificates\">Your certificates</a></p>");
    } else if (get && path_is(req, "/enroll")) {
        enroll_form(s, srv, conn, req, ans);
    } else if (post && path_is(req, "/enroll")) {
        enroll_bundle(s, srv, conn, req, ans);
    } else if (get && path_is(req, "/certificates")) {
        certificates_page(s, srv, conn, ans);
    } else if (post && path_is(req, "/revoke")) {
        revoke_certificate(s, srv, conn, req, ans);
    } else if (post && path_is(req, "/add-device")) {
        add_device(s, srv, conn, req, ans);
    } else if (path_is(req, "/enroll") || path_is(req, "/certificates") || takes_post(req)) {
        ans->allow = path_is(req, "/enroll")         ? "GET, HEAD, POST"
                   : path_is(req, "/certificates")   ? "GET, HEAD"
                                                     : "POST";
        error_page(ans, 405);
    } else {
        return false;
    }
    return true;
}


/* ========================================================================== */
/*       THE MACHINERY: what a real server needs that the tutorial's          */
/*       express and Node did for it.  Skip it on a first reading.            */
/* ========================================================================== */
/*
 * Except for listen(9999): section 13's first comment, then open_listener
 * and accept_loop.  The rest, in the order a connection meets it: its
 * deadline (10), its log line (11), its request (12), its thread (13), the
 * files part 2 writes (14), the drawing of GET /handshake (15), the
 * command line (16), main (17).
 */

/* ======================= 10. Deadlines: the transport ===================== */
/*
 * GnuTLS's own timeouts restart whenever a byte arrives, so a client that
 * dribbles one byte a second could hold a connection's thread (section 13)
 * for minutes.  These functions move the bytes for GnuTLS and never wait past
 * the connection's deadline, whether reading or writing.
 */

static void set_deadline(struct connection *conn, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, &conn->deadline);
    conn->deadline.tv_sec += timeout_ms / 1000;
}

static long ms_left(const struct connection *conn)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (conn->deadline.tv_sec - now.tv_sec) * 1000L +
           (conn->deadline.tv_nsec - now.tv_nsec) / 1000000L;
}

/* Marks that make_room (section 13) goes by; no-ops outside a worker. */
static void mark_waiting(bool waiting);
static void mark_replied(void);
static void mark_finishing(void);

/* Wait until the socket is ready for `events` or the deadline (or `limit_ms`)
 * passes: 1 = ready, 0 = time is up, -1 with errno EINTR = the server cuts
 * the connection short (it is stopping, or gives the slot to a newcomer),
 * -1 with another errno = poll failed.  (Both also shut the socket down,
 * section 13, so a wait in progress ends at once.)  While it waits, the
 * connection is one a newcomer may take the place of. */
static int wait_ready(struct connection *conn, short events, long limit_ms)
{
    for (;;) {
        long left = ms_left(conn);
        if (cut_short()) {
            errno = EINTR;
            return -1;
        }
        if (left <= 0)
            return 0;
        if (limit_ms >= 0 && limit_ms < left)
            left = limit_ms;
        struct pollfd p = {.fd = conn->fd, .events = events};
        mark_waiting(true);
        int n = poll(&p, 1, (int)left);
        mark_waiting(false);
        if (n >= 0)
            return n > 0 ? 1 : 0;
        if (errno != EINTR)
            return -1;
    }
}

static int transport_wait(gnutls_transport_ptr_t ptr, unsigned int ms)
{
    long limit = ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (long)ms;
    return wait_ready(ptr, POLLIN, limit);
}

static ssize_t transport_pull(gnutls_transport_ptr_t ptr, void *buf, size_t size)
{
    struct connection *conn = ptr;
    ssize_t n = recv(conn->fd, buf, size, 0);
    if (n > 0)
        conn->bytes_in += (unsigned long)n;
    return n;
}

/* GnuTLS hands over its records a few at a time (a TLS 1.3 flight in two
 * calls: ServerHello and ChangeCipherSpec, then the five encrypted
 * messages): one sendmsg() per call, where a send() per record would cost a
 * system call and a packet each.
 * We try at once and wait only when the client's window is full: a client
 * that stops reading holds us until the deadline, no longer.
 * MSG_NOSIGNAL: a client that resets the connection makes sendmsg() fail
 * with EPIPE instead of raising SIGPIPE, which would kill the whole server
 * (main also ignores SIGPIPE, for the log's sake, section 11; the flag
 * keeps this function safe without that). */
static ssize_t transport_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
    struct connection *conn = ptr;
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    for (;;) {
        ssize_t n = sendmsg(conn->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            mark_replied();
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return n;
        int ready = wait_ready(conn, POLLOUT, -1);
        if (ready == 0)
            errno = ETIMEDOUT;
        if (ready <= 0)     /* EINTR (stopping) lets GnuTLS's caller decide */
            return -1;
    }
}

/* Our transport functions keep one deadline for the whole connection.
 * GnuTLS calls the wait function only when a timeout is set, so we set both
 * to the same limit. */
static void use_deadline_transport(gnutls_session_t s, struct connection *conn, int timeout_ms)
{
    gnutls_transport_set_ptr(s, conn);
    gnutls_transport_set_pull_function(s, transport_pull);
    gnutls_transport_set_vec_push_function(s, transport_push);
    gnutls_transport_set_pull_timeout_function(s, transport_wait);
    gnutls_handshake_set_timeout(s, (unsigned)timeout_ms);
    gnutls_record_set_timeout(s, (unsigned)timeout_ms);
}

/* Lingering close (RFC 9112 9.6).  If a client sent more than we read (a
 * request head over the limit, a body, a second request), closing at once
 * makes the kernel answer those unread bytes with a reset, and a reset can
 * destroy our answer before the client has read it.  So: say we are done
 * writing, then read and drop whatever still comes, until the client closes
 * or stays silent for a second (never past the deadline, not at all when
 * stopping or giving way to a newcomer). */
static void linger_close(struct connection *conn)
{
    char sink[4096];
    mark_finishing();               /* a newcomer may take its slot now (section 13) */
    shutdown(conn->fd, SHUT_WR);
    while (!cut_short() && wait_ready(conn, POLLIN, 1000) == 1 &&
           recv(conn->fd, sink, sizeof sink, 0) > 0)
        continue;
}

/* ======================= 11. The log: one line per connection ============= */
/*
 * The log is this server's record of who got in, so nothing a client sends
 * may change its shape.  A certificate's CN is whatever its maker typed:
 * "Nobody\n9.9.9.9 ... 200 admitted" would otherwise write a second line
 * that reads like Alice getting in.  Every piece of text that a client or a
 * certificate chose goes through log_escape on its way into the log, so
 * that one connection is always exactly one line.
 */

/* Bytes of a well-formed UTF-8 character at s (at most n), or 0 if the
 * bytes there are not one (overlong, a surrogate, past U+10FFFF, cut). */
static size_t utf8_length(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (len == 0 || s[0] > 0xf4 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    unsigned cp = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++)
        cp = cp << 6 | (s[i] & 0x3f);
    static const unsigned smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < smallest[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Characters that are valid UTF-8 yet hide, rearrange or break what a
 * terminal or a log viewer shows: C1 controls; line and paragraph
 * separators; the bidirectional controls that make text read backwards
 * ("Trojan Source"); and the characters Unicode says to draw as nothing
 * (Default_Ignorable_Code_Point: U+00AD, U+200B, U+FEFF, U+3164 and the
 * rest), with which "\uFEFFAlice" shows as "Alice".  s holds one whole
 * UTF-8 character of len bytes. */
static unsigned code_point(const unsigned char *s, size_t len)
{
    unsigned cp = len < 2 ? s[0] : s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++)
        cp = cp << 6 | (s[i] & 0x3f);
    return cp;
}

static bool deceptive(const unsigned char *s, size_t len)
{
    static const struct {
        unsigned first, last;
    } hidden[] = {
        /* C1; Default_Ignorable_Code_Point; the other format characters
         * (Cf: U+0600-0605, U+06DD, U+FFF9-FFFB...); the blank U+2800 */
        {0x80, 0x9f},       {0xad, 0xad},       {0x34f, 0x34f},     {0x600, 0x605},
        {0x61c, 0x61c},     {0x6dd, 0x6dd},     {0x70f, 0x70f},     {0x890, 0x891},
        {0x8e2, 0x8e2},     {0x115f, 0x1160},   {0x17b4, 0x17b5},   {0x180b, 0x180f},
        {0x200b, 0x200f},   {0x2028, 0x202e},   {0x2060, 0x206f},   {0x2800, 0x2800},
        {0x3164, 0x3164},   {0xfe00, 0xfe0f},   {0xfeff, 0xfeff},   {0xffa0, 0xffa0},
        {0xfff0, 0xfffb},   {0x110bd, 0x110bd}, {0x110cd, 0x110cd}, {0x13430, 0x1343f},
        {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a}, {0xe0000, 0xe0fff},
    };
    if (len < 2)
        return false;
    unsigned cp = code_point(s, len);
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++)
        if (cp >= hidden[i].first && cp <= hidden[i].last)
            return true;
    return false;
}

/* Copy client-chosen text into out (cap bytes, NUL-terminated) so that it
 * shows as itself and nothing more: control bytes, the log's quote, the
 * backslash and anything that is not plain UTF-8 come out as \xNN, \" and
 * \\.  Readable names stay readable ("Zoë").  Text that does not fit is cut
 * between two characters and ends with "...". */
static void log_escape(char *out, size_t cap, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char piece[20];
        size_t n = 1, plen;
        if (s[i] == '"' || s[i] == '\\') {
            piece[0] = '\\', piece[1] = (char)s[i], plen = 2;
        } else if (s[i] >= 0x20 && s[i] < 0x7f) {
            piece[0] = (char)s[i], plen = 1;
        } else if ((n = utf8_length(s + i, len - i)) > 0 && !deceptive(s + i, n)) {
            memcpy(piece, s + i, n), plen = n;
        } else {
            n = n > 0 ? n : 1;                      /* each byte of it as \xNN */
            plen = 0;
            for (size_t k = 0; k < n; k++)
                plen += (size_t)snprintf(piece + plen, sizeof piece - plen, "\\x%02x", s[i + k]);
        }
        if (o + plen + 4 > cap) {                   /* room for "..." and the NUL */
            if (o + 3 < cap)
                memcpy(out + o, "...", 3), o += 3;
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        i += n;
    }
    if (cap > 0)
        out[o < cap ? o : cap - 1] = '\0';
}

/* Add to what the log line says about this connection ("; " between notes).
 * The format is ours; client-chosen text must reach it through log_escape. */
static void note(struct connection *conn, const char *format, ...)
{
    size_t used = strlen(conn->note);
    if (used > 0 && used + 2 < sizeof conn->note)
        used += (size_t)snprintf(conn->note + used, sizeof conn->note - used, "; ");
    va_list ap;
    va_start(ap, format);
    vsnprintf(conn->note + used, sizeof conn->note - used, format, ap);
    va_end(ap);
}

/* The connection's log line: address, TLS version, request line, status,
 * and the notes.  Returns its length, newline included. */
static size_t format_log_line(const struct connection *conn, char *line, size_t cap)
{
    char status[8] = "-";
    if (conn->status)
        snprintf(status, sizeof status, "%d", conn->status);
    int n = snprintf(line, cap, "%s %s \"%s\" %s%s%s", conn->peer,
                     conn->tls_version ? conn->tls_version : "-", conn->request_line,
                     status, conn->note[0] ? " " : "", conn->note);
    size_t len = n < 0 ? 0 : (size_t)n < cap - 1 ? (size_t)n : cap - 2;
    line[len++] = '\n';
    line[len] = '\0';
    return len;
}

/*
 * The server outlives its log.  A reader that goes away (`./server 2>&1 |
 * head`, once head is done) makes a write fail: SIGPIPE is ignored (main),
 * so it fails with EPIPE instead of killing the server.  A reader that
 * stops reading without going away (`| less` left on its first screen, a
 * frozen terminal) fills the pipe, and a write() then waits, for ever; so
 * may one to a file system that hangs (NFS, FUSE).  So no worker writes to
 * the log: each hands its line to one log thread, through a queue of
 * LOG_QUEUE lines, and only that thread waits on write().  A line the
 * queue has no room for, or that the log refuses or takes only part of (a
 * full disk), is dropped and counted, and the count is written first when
 * the log takes lines again; after a line cut short, the next starts on a
 * line of its own.  Each kind of trouble is said once: on standard output
 * if that is another file than the log and can take it now, else to syslog.
 * Before the thread starts (start-up, --invite, --revoke), lines are
 * written directly.
 */
#define LOG_QUEUE 256

static struct {
    pthread_mutex_t lock;
    pthread_cond_t more;            /* a line came, or closing */
    char lines[LOG_QUEUE][1024];
    size_t len[LOG_QUEUE];
    int first, count;
    unsigned long dropped;          /* lines the queue had no room for */
    bool started, closing;
    pthread_t thread;
} logq = {.lock = PTHREAD_MUTEX_INITIALIZER, .more = PTHREAD_COND_INITIALIZER};

static void say_once(atomic_flag *said, const char *trouble)
{
    char text[200];
    struct stat out, err;
    if (atomic_flag_test_and_set(said))
        return;
    int n = snprintf(text, sizeof text, "server: the log (standard error) %s\n", trouble);
    bool same = fstat(STDOUT_FILENO, &out) == 0 && fstat(STDERR_FILENO, &err) == 0 &&
                out.st_dev == err.st_dev && out.st_ino == err.st_ino;
    struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
    if (same || poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT) ||
        write(STDOUT_FILENO, text, (size_t)n) < 0)
        syslog(LOG_WARNING, "%s", text);
}

/* write() as much as it takes, retried after a signal: bytes written, or -1 */
static ssize_t put(const char *bytes, size_t len)
{
    ssize_t n;
    while ((n = write(STDERR_FILENO, bytes, len)) < 0 && errno == EINTR)
        continue;
    return n;
}

/* The log thread: write each line whole, or count it as lost. */
static void *log_writer(void *arg)
{
    static atomic_flag said_gone = ATOMIC_FLAG_INIT;
    char line[1024], count[120];
    unsigned long lost = 0;
    bool torn = false;                      /* the log ends inside a line */
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&logq.lock);
        while (logq.count == 0 && !logq.closing)
            pthread_cond_wait(&logq.more, &logq.lock);
        if (logq.count == 0) {
            pthread_mutex_unlock(&logq.lock);
            return NULL;
        }
        size_t len = logq.len[logq.first];
        memcpy(line, logq.lines[logq.first], len);
        logq.first = (logq.first + 1) % LOG_QUEUE;
        logq.count--;
        lost += logq.dropped;
        logq.dropped = 0;
        pthread_mutex_unlock(&logq.lock);

        if (torn && put("\n", 1) == 1)
            torn = false;
        if (!torn && lost > 0) {
            int count_len = snprintf(count, sizeof count, "server: %lu log lines dropped or cut "
                                     "short: the log could not take them\n", lost);
            ssize_t n = put(count, (size_t)count_len);
            torn = n > 0 && n < count_len;
            if (n == count_len)
                lost = 0;
        }
        ssize_t n = -1;
        errno = ENOSPC;     /* the reason, if the log still ends inside a line */
        if (!torn)
            n = put(line, len);
        if (n != (ssize_t)len) {
            int err = n < 0 ? errno : ENOSPC;
            torn = torn || n > 0;
            lost++;
            snprintf(count, sizeof count, "cannot be written: %s; lines are dropped until it "
                                          "can, and counted", strerror(err));
            say_once(&said_gone, err == EPIPE ? "is gone: its reader closed it; serving on "
                                                "without it" : count);
        }
    }
}

/* Hand one line to the log thread (or write it, before there is one);
 * never wait for the log. */
static void log_write(const char *line, size_t len)
{
    static atomic_flag said_full = ATOMIC_FLAG_INIT;
    pthread_mutex_lock(&logq.lock);
    if (!logq.started) {
        pthread_mutex_unlock(&logq.lock);
        if (put(line, len) < 0) {
            /* nowhere left to say it */
        }
        return;
    }
    if (logq.count == LOG_QUEUE) {
        logq.dropped++;
        pthread_mutex_unlock(&logq.lock);
        say_once(&said_full, "is not taking lines: its reader is not reading; lines are "
                             "dropped until it does, and counted");
        return;
    }
    int last = (logq.first + logq.count) % LOG_QUEUE;
    len = len < sizeof logq.lines[0] ? len : sizeof logq.lines[0];
    memcpy(logq.lines[last], line, len);
    logq.len[last] = len;
    logq.count++;
    pthread_cond_signal(&logq.more);
    pthread_mutex_unlock(&logq.lock);
}

static int log_start(void)
{
    int ret = pthread_create(&logq.thread, NULL, log_writer, NULL);
    if (ret != 0) {
        fprintf(stderr, "server: no thread for the log: %s\n", strerror(ret));
        return -1;
    }
    pthread_mutex_lock(&logq.lock);
    logq.started = true;
    pthread_mutex_unlock(&logq.lock);
    return 0;
}

/* At the stop: the log thread writes what is queued and ends; if the log
 * holds it (a reader that stopped), we go after a second without it. */
static void log_stop(void)
{
    struct timespec limit;
    pthread_mutex_lock(&logq.lock);
    bool started = logq.started;
    logq.closing = true;
    pthread_cond_signal(&logq.more);
    pthread_mutex_unlock(&logq.lock);
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 1;
    if (started && pthread_timedjoin_np(logq.thread, NULL, &limit) != 0)
        pthread_detach(logq.thread);
}

/* A line of the server's own ("server: ...") while it serves. */
static void log_say(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void log_say(const char *format, ...)
{
    char line[512] = "server: ";
    va_list ap;
    va_start(ap, format);
    vsnprintf(line + 8, sizeof line - 9, format, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len++] = '\n';
    log_write(line, len);
}

/* One write() per line (the log thread's), so that lines never mix,
 * whoever else writes. */
static void log_connection(const struct connection *conn)
{
    char line[1024];
    size_t len = format_log_line(conn, line, sizeof line);
    log_write(line, len);
}

/* What the log says of the visitor.  The DN is the certificate maker's
 * text, and GnuTLS's sentence quotes from the certificate too: both go
 * through log_escape (above). */
static void note_visitor(struct connection *conn, const struct identity *id)
{
    char dn[256], reason[256];
    const char *raw_dn = id->subject_dn ? id->subject_dn : "?";
    const char *raw_reason = id->log_reason ? id->log_reason : "?";

    log_escape(dn, sizeof dn, raw_dn, strlen(raw_dn));
    log_escape(reason, sizeof reason, raw_reason, strlen(raw_reason));
    if (id->authorized)
        note(conn, "admitted \"%s\"", dn);
    else if (id->presented)
        note(conn, "refused \"%s\": %s (%s)", dn,
             id->page_reason ? id->page_reason : "?", reason);
    else
        note(conn, "no client certificate");
}

/* ======================= 12. HTTP: the request, by hand =================== */
/*
 * A minimal HTTP/1.1 server side (RFC 9112): read the request head (request
 * line and header fields, up to an empty line), check its form, find method
 * and path.  Every answer closes the connection.  The only request bodies
 * read are part 2's forms (read_body, below).
 */

static long form_decode(const char *in, size_t n, char *out, size_t cap);

/* RFC 9112 2.2: a server SHOULD ignore at least one empty line before the
 * request line; we ignore any number (they still count against the 8 KiB
 * limit).  Returns how many bytes of whole empty lines buf starts with. */
static size_t skip_empty_lines(const char *buf, size_t len)
{
    size_t i = 0;
    for (;;) {
        if (i < len && buf[i] == '\n')
            i += 1;
        else if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
            i += 2;
        else
            return i;
    }
}

/* Where the head ends: just past the empty line, or 0 if not there yet.
 * RFC 9112 lets a server accept a bare LF as a line end; we do. */
static size_t find_head_end(const char *buf, size_t len)
{
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i - 1] == '\n')
            return i + 1;
        if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')
            return i + 1;
    }
    return 0;
}

/* The request line as the log shows it (log_escape keeps it on its line).
 * An invitation code in it (part 2's /enroll?code=...) is a secret until
 * used, and a log is read by more people than the operator.  So wherever a
 * field KEY=VALUE begins (after a '?', '&' or ';'), if KEY decodes to "code"
 * in any case or spelling ("%63ode"), or does not decode at all, VALUE is
 * written as "...". */
static void remember_request_line(struct connection *conn, const char *buf, size_t len)
{
    char line[sizeof conn->request_line], key[64];
    size_t n = 0, o = 0;
    while (n < len && buf[n] != '\r' && buf[n] != '\n')
        n++;
    for (size_t i = 0; i < n && o < sizeof line;) {
        size_t eq = i, end = i;
        if (i > 0 && (buf[i - 1] == '?' || buf[i - 1] == '&' || buf[i - 1] == ';')) {
            while (end < n && buf[end] != '&' && buf[end] != ';' && buf[end] != ' ')
                end++;
            while (eq < end && buf[eq] != '=')
                eq++;
        }
        if (eq < end && (form_decode(buf + i, eq - i, key, sizeof key) < 0 ||
                         strcasecmp(key, "code") == 0)) {
            int w = snprintf(line + o, sizeof line - o, "%.*s=...", (int)(eq - i), buf + i);
            o = w < 0 ? o : o + (size_t)w < sizeof line ? o + (size_t)w : sizeof line - 1;
            i = end;
        } else {
            line[o++] = buf[i++];
        }
    }
    log_escape(conn->request_line, sizeof conn->request_line, line,
               o < sizeof line ? o : sizeof line - 1);
}

/* Read until the head is complete; *head is where it starts in buf, past
 * any empty lines, and *used how much of buf was read (a body may have
 * begun).  Returns 0 when it is complete, 414 or 431 when it outgrows the
 * buffer (the status to answer), -1 when the client is gone. */
static int read_request_head(gnutls_session_t s, struct connection *conn, char *buf,
                             size_t cap, const char **head, size_t *head_len, size_t *used_out)
{
    size_t used = 0, skip = 0;
    int result = 0;
    for (;;) {
        skip = skip_empty_lines(buf, used);
        if ((*head_len = find_head_end(buf + skip, used - skip)) > 0)
            break;
        if (used == cap) {  /* RFC 9112: 414 if the request line alone is too long */
            result = memchr(buf + skip, '\n', used - skip) ? 431 : 414;
            note(conn, "request %s over %zu bytes", result == 414 ? "line" : "head", cap);
            break;
        }
        ssize_t n = gnutls_record_recv(s, buf + used, cap - used);
        if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && !cut_short())
            continue;
        if (n == 0 && !cut_short())
            note(conn, "no request: the client closed the connection");
        else if (n < 0)
            tls_failure(s, conn, "no request",
                        n == GNUTLS_E_REHANDSHAKE ? "the client asked to renegotiate; refused"
                                                  : gnutls_strerror((int)n), (int)n);
        if (n <= 0) {
            result = -1;
            break;
        }
        used += (size_t)n;
    }
    *head = buf + skip;
    *used_out = used;
    remember_request_line(conn, buf + skip, used - skip);
    return result;
}

/*
 * Part 2's forms are the first request bodies this server reads.  Only with
 * a Content-Length (411 without one, so no chunked bodies), at most
 * MAX_REQUEST_BODY (413 over it), and under the connection's one deadline
 * like everything else: a client that dribbles its body is cut off there.
 * `early` is what came with the head.  Returns 0, an HTTP status, or -1
 * when the client is gone.
 */
static int read_body(gnutls_session_t s, struct connection *conn, struct request *req,
                     const char *early, size_t early_len, char *body, size_t cap)
{
    if (req->transfer_encoding) {
        note(conn, "a body with Transfer-Encoding; only Content-Length is accepted");
        return 411;
    }
    if (req->content_length < 0) {
        note(conn, "a POST without Content-Length");
        return 411;
    }
    if ((size_t)req->content_length > cap) {
        note(conn, "a body of %ld bytes, over %zu", req->content_length, cap);
        return 413;
    }
    size_t want = (size_t)req->content_length;
    size_t have = early_len < want ? early_len : want;  /* pipelined bytes after it: ignored */
    memcpy(body, early, have);
    while (have < want) {
        ssize_t n = gnutls_record_recv(s, body + have, want - have);
        if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && !cut_short())
            continue;
        if (n == 0 && !cut_short())
            note(conn, "the client closed before its body was complete");
        else if (n < 0)
            tls_failure(s, conn, "reading the body", gnutls_strerror((int)n), (int)n);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    req->body = body;
    req->body_len = want;
    return 0;
}

static int hex_value(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decode one application/x-www-form-urlencoded name or value (WHATWG URL,
 * "application/x-www-form-urlencoded parsing"): '+' is a space, %XX a
 * byte.  Strict where browsers are lenient: a '%' without two hex digits,
 * a control byte (NUL among them), or more than cap - 1 bytes is an error
 * (-1).  Returns the decoded length; out (if not NULL) is NUL-terminated. */
static long form_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (n - i < 3)
                return -1;
            int hi = hex_value((unsigned char)in[i + 1]), lo = hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || (out && o + 1 >= cap))
            return -1;
        if (out)
            out[o] = (char)c;
        o++;
    }
    if (out)
        out[o] = '\0';
    return (long)o;
}

/* The value of field `name` in a form body, decoded into out.  Every pair
 * is decoded, so any malformed one makes the body malformed.  Returns 1
 * when found, 0 when absent, -1 when the body is malformed or names the
 * field twice. */
static int form_field(const char *body, size_t len, const char *name, char *out, size_t cap)
{
    char key[64];
    int found = 0;
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *key_end = eq ? eq : pair_end;
        const char *v = eq ? eq + 1 : pair_end;
        if (form_decode(p, (size_t)(key_end - p), key, sizeof key) < 0)
            return -1;
        if (strcmp(key, name) == 0) {
            if (found++ || form_decode(v, (size_t)(pair_end - v), out, cap) < 0)
                return -1;
        } else if (form_decode(v, (size_t)(pair_end - v), NULL, 0) < 0) {
            return -1;
        }
        p = amp ? amp + 1 : end;
    }
    return found;
}

/* RFC 9110 token characters: method and header names. */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool all_tchars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return n > 0;
}

/* A field value: visible characters, spaces, tabs and (obsolete) bytes >= 0x80. */
static bool valid_field_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 ? c != '\t' : c == 0x7f)
            return false;
    }
    return true;
}

/* The next line of the head, without its LF or CRLF; false at the end. */
static bool next_line(const char **p, const char *end, const char **line, size_t *len)
{
    if (*p >= end)
        return false;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (nl == NULL)
        return false;
    *line = *p;
    *len = (size_t)(nl - *p);
    if (*len > 0 && nl[-1] == '\r')
        (*len)--;
    *p = nl + 1;
    return true;
}

static int malformed(struct request *req, int status, const char *problem)
{
    req->problem = problem;
    return status;
}

/* Host's value and a URI's authority (RFC 9110 7.2, RFC 3986 3.2):
 * host [":" port], where host is a name (letters, digits, -._~, %XX and
 * !$&'()*+,;=), which covers IPv4 addresses, or an IPv6 address in
 * brackets.  May be empty (RFC 9110: Host is empty when the URI has no
 * authority).  IPvFuture literals are refused: none is defined. */
static bool valid_authority(const char *s, size_t n)
{
    size_t i = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        char text[INET6_ADDRSTRLEN];
        struct in6_addr addr;
        size_t len = close ? (size_t)(close - s - 1) : sizeof text;
        if (len >= sizeof text)
            return false;
        memcpy(text, s + 1, len);
        text[len] = '\0';
        if (inet_pton(AF_INET6, text, &addr) != 1)
            return false;
        i = len + 2;
    } else {
        for (; i < n && s[i] != ':'; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
                isxdigit((unsigned char)s[i + 2]))
                i += 2;
            else if (!isalnum(c) && (c == '\0' || !strchr("-._~!$&'()*+,;=", c)))
                return false;
        }
    }
    if (i < n && s[i++] != ':')
        return false;
    for (; i < n; i++)      /* the port: digits, possibly none */
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* The request target: origin-form "/path?query", or absolute-form
 * "https://host:port/path?query", which RFC 9112 3.2.2 says a server MUST
 * accept.  Sets req->path; returns 0 or 400. */
static int parse_target(const char *t, size_t n, struct request *req)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            return malformed(req, 400, "target holds a byte outside printable ASCII");
    if (n > 0 && t[0] != '/') {
        size_t scheme = n >= 7 && strncasecmp(t, "http://", 7) == 0 ? 7
                      : n >= 8 && strncasecmp(t, "https://", 8) == 0 ? 8 : 0;
        if (scheme == 0)
            return malformed(req, 400, "target is neither /path nor http(s)://host/path");
        size_t end = scheme;
        while (end < n && t[end] != '/' && t[end] != '?')
            end++;
        /* RFC 9110 4.2: an http(s) URI needs a host and has no user@ */
        if (end == scheme || !valid_authority(t + scheme, end - scheme))
            return malformed(req, 400, "bad host in an absolute target");
        /* We serve one site under any name, so the authority picks nothing;
         * where it and Host differ, it wins (RFC 9112 3.2.2), and Host is
         * not compared with it. */
        t += end;
        n -= end;
    }
    const char *query = memchr(t, '?', n);
    req->query = query ? query + 1 : NULL;
    req->query_len = query ? n - (size_t)(query + 1 - t) : 0;
    req->path_len = query ? (size_t)(query - t) : n;
    req->path = req->path_len > 0 ? t : "/";   /* "https://host" is "/" */
    req->path_len = req->path_len > 0 ? req->path_len : 1;
    return 0;
}

static bool header_is(const char *name, size_t len, const char *lower)
{
    return len == strlen(lower) && strncasecmp(name, lower, len) == 0;
}

/* Content-Length = 1*DIGIT (RFC 9110 8.6); -1 if not, or if absurdly long. */
static long parse_length(const char *v, size_t n)
{
    long len = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        len = len * 10 + (v[i] - '0');
    }
    return len;
}

/* Check the head's form and find method and path.  Returns 0, or the HTTP
 * status that explains what is wrong (400, 505). */
static int parse_request(const char *head, size_t len, struct request *req)
{
    const char *p = head, *end = head + len, *line;
    size_t n;

    memset(req, 0, sizeof *req);
    /* request-line = method SP request-target SP HTTP-version */
    if (!next_line(&p, end, &line, &n))
        return malformed(req, 400, "no request line");
    const char *sp1 = memchr(line, ' ', n);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - line)) : NULL;
    if (sp2 == NULL)
        return malformed(req, 400, "request line is not METHOD TARGET VERSION");
    req->method = line;
    req->method_len = (size_t)(sp1 - line);
    const char *target = sp1 + 1;
    size_t target_len = (size_t)(sp2 - target);
    const char *version = sp2 + 1;
    size_t version_len = n - (size_t)(version - line);

    if (!all_tchars(req->method, req->method_len))
        return malformed(req, 400, "bad method");
    if (version_len != 8 || memcmp(version, "HTTP/", 5) != 0 ||
        version[5] < '0' || version[5] > '9' || version[6] != '.' ||
        version[7] < '0' || version[7] > '9')
        return malformed(req, 400, "bad HTTP version");
    if (version[5] != '1')
        return malformed(req, 505, "only HTTP/1.x is spoken here");
    if (target_len == 0)
        return malformed(req, 400, "empty target");
    if (parse_target(target, target_len, req) != 0)
        return 400;

    /* field-line = field-name ":" OWS field-value OWS, up to an empty line */
    int hosts = 0, lengths = 0;
    req->content_length = -1;
    while (next_line(&p, end, &line, &n) && n > 0) {
        const char *colon = memchr(line, ':', n);
        if (colon == NULL || !all_tchars(line, (size_t)(colon - line)) ||
            !valid_field_value(colon + 1, n - (size_t)(colon + 1 - line)))
            return malformed(req, 400, "bad header line");  /* also obsolete line folding */
        size_t name_len = (size_t)(colon - line);
        const char *v = colon + 1, *v_end = line + n;
        while (v < v_end && (*v == ' ' || *v == '\t'))
            v++;
        while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
            v_end--;
        size_t v_len = (size_t)(v_end - v);
        if (header_is(line, name_len, "host")) {
            if (!valid_authority(v, v_len))
                return malformed(req, 400, "bad Host header");  /* RFC 9112 3.2 */
            req->host = v;
            req->host_len = v_len;
            hosts++;
        } else if (header_is(line, name_len, "content-length")) {
            /* RFC 9112 6.3: an invalid or repeated length is unrecoverable */
            if (lengths++ > 0 || (req->content_length = parse_length(v, v_len)) < 0)
                return malformed(req, 400, "bad or repeated Content-Length");
        } else if (header_is(line, name_len, "transfer-encoding")) {
            req->transfer_encoding = true;
        } else if (header_is(line, name_len, "origin")) {
            req->origin = v;
            req->origin_len = v_len;
        } else if (header_is(line, name_len, "sec-fetch-site")) {
            req->fetch_site = v;
            req->fetch_site_len = v_len;
        } else if (header_is(line, name_len, "accept")) {
            for (size_t i = 0; i + 9 <= v_len && !req->wants_html; i++)
                req->wants_html = strncasecmp(v + i, "text/html", 9) == 0;
        }
    }
    /* RFC 9112 3.2: HTTP/1.1 needs exactly one Host; HTTP/1.0 may omit it */
    if (hosts > 1)
        return malformed(req, 400, "more than one Host header");
    if (hosts == 0 && version[7] != '0')
        return malformed(req, 400, "HTTP/1.1 request without Host header");
    return 0;
}

static bool path_is(const struct request *req, const char *path)
{
    return req->path_len == strlen(path) && memcmp(req->path, path, req->path_len) == 0;
}

static bool method_is(const struct request *req, const char *method)
{
    return req->method_len == strlen(method) && memcmp(req->method, method, req->method_len) == 0;
}

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Internal Server Error";
    }
}

/* The page of an error status: "404 Not Found". */
static void error_page(struct answer *ans, int status)
{
    ans->status = status;
    ans->page = format_text("%d %s", status, status_text(status));
}

/* What Node's http module and express did for the tutorial: read the
 * request, check its form, and route it, or pick the error that says what
 * is wrong with it.  Returns -1
 * when there is no request to answer (the client left, or TLS failed). */
static int answer_request(gnutls_session_t s, const struct server *srv, struct connection *conn,
                          struct answer *ans)
{
    char buf[MAX_REQUEST_HEAD], body[MAX_REQUEST_BODY];
    const char *head;
    size_t head_len = 0, used = 0;
    struct request req;

    int ret = read_request_head(s, conn, buf, sizeof buf, &head, &head_len, &used);
    if (ret < 0)
        return -1;
    ans->status = ret > 0 ? ret : parse_request(head, head_len, &req);   /* 414, 431; 400, 505 */
    if (ans->status == 0 && method_is(&req, "POST") && takes_post(&req)) {
        /* Part 2's forms: where from (section F), then the body */
        if (!from_our_page(&req)) {
            note(conn, "a POST from another site's page (Origin, Sec-Fetch-Site)");
            ans->status = 403;
        } else {
            const char *early = head + head_len;
            ret = read_body(s, conn, &req, early, used - (size_t)(early - buf), body, sizeof body);
            if (ret < 0)
                return -1;
            ans->status = ret;                                          /* 411, 413 */
        }
        if (ans->status != 0) {
            ans->page = format_text("%d %s", ans->status, status_text(ans->status));
            goto out;
        }
    }
    if (ans->status == 0) {
        ans->head_only = method_is(&req, "HEAD");
        route(s, srv, conn, &req, ans);
    } else {
        if (ret == 0)
            note(conn, "%s", req.problem);
        ans->page = format_text("%d %s", ans->status, status_text(ans->status));
    }
out:
    if (ans->page == NULL) {
        ans->status = 500;
        note(conn, "out of memory");
        ans->page = format_text("500 %s", status_text(500));
    }
    return ans->page ? 0 : -1;
}

/* gnutls_record_send() may take a long message in several records. */
static int send_all(gnutls_session_t s, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = gnutls_record_send(s, data, len);
        if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && !cut_short())
            continue;   /* the transport's deadline bounds these retries */
        if (n < 0)
            return (int)n;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Status line, headers and body in one message, so that they leave in one
 * TLS record.  HEAD gets the same headers and no body. */
static int send_response(gnutls_session_t s, struct connection *conn, const struct answer *ans)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));

    /* An HTML page ends with a newline; the bundle is sent as it is. */
    bool html = ans->content_type == NULL;
    size_t body_len = html ? strlen(ans->page) + 1 : ans->page_len;
    char allow[64] = "", vary[64] = "", disposition[160] = "";
    if (ans->allow)
        snprintf(allow, sizeof allow, "Allow: %s\r\n", ans->allow);
    if (ans->vary)
        snprintf(vary, sizeof vary, "Vary: %s\r\n", ans->vary);
    if (ans->disposition[0])
        snprintf(disposition, sizeof disposition, "Content-Disposition: %s\r\n",
                 ans->disposition);
    /* Cache-Control: the page depends on the certificate, so no cache may
     * hand Alice's greeting to the next visitor (nor keep Carol's key).
     * No framing (X-Frame-Options for older browsers, CSP frame-ancestors
     * for the rest): the browser sends the certificate to a framed page too,
     * so a page of another site that framed /certificates could make the
     * visitor click our "Revoke" through its own bait (clickjacking).
     * The rest of the policy: our pages load nothing (no script, style,
     * image, font), and post forms only to us. */
    char *head = format_text("HTTP/1.1 %d %s\r\n"
                             "Date: %s\r\n"
                             "Content-Type: %s\r\n"
                             "Content-Length: %zu\r\n"
                             "Cache-Control: no-store\r\n"
                             "X-Frame-Options: DENY\r\n"
                             "X-Content-Type-Options: nosniff\r\n"
                             "Content-Security-Policy: default-src 'none'; "
                             "form-action 'self'; base-uri 'none'; frame-ancestors 'none'\r\n"
                             "%s%s%s"
                             "Connection: close\r\n"
                             "\r\n",
                             ans->status, status_text(ans->status), date,
                             html ? "text/html; charset=utf-8" : ans->content_type, body_len,
                             allow, vary, disposition);
    size_t head_len = head ? strlen(head) : 0;
    size_t len = head_len + (ans->head_only ? 0 : body_len);
    char *msg = head ? malloc(len) : NULL;
    if (msg == NULL) {
        free(head);
        return GNUTLS_E_MEMORY_ERROR;
    }
    memcpy(msg, head, head_len);
    if (!ans->head_only) {
        memcpy(msg + head_len, ans->page, body_len - (html ? 1 : 0));
        if (html)
            msg[len - 1] = '\n';
    }
    int ret = send_all(s, msg, len);
    gnutls_memset(msg, 0, len);     /* the bundle holds a private key */
    free(msg);
    free(head);
    if (ret == 0)
        conn->status = ans->status;
    return ret;
}

/* A download may hold a private key (part 2's bundle): wiped before it is freed. */
static void free_answer(struct answer *ans)
{
    if (ans->page && ans->page_len)
        gnutls_memset(ans->page, 0, ans->page_len);
    free(ans->page);
}

/* ======================= 13. The listener and the accept loop ============= */
/*
 * Tutorial: https.createServer(opts, app).listen(9999).  Like Node, we
 * listen on every address, IPv6 and IPv4 on one socket where the system has
 * IPv6.
 *
 * Many visitors at once.  Node serves them all on one event loop.  Here the
 * accept loop hands each connection to a worker thread and goes straight
 * back to accept(), so serve_connection stays one straight, blocking story
 * with its own deadline, and a visitor who connects and says nothing holds
 * one worker, not the server.  Threads, not processes: GnuTLS lets threads
 * share credentials and priorities read-only (its manual, "Thread
 * safety"), while each session stays in the thread that made it.
 * A worker is started the first time its slot is needed and then kept for
 * the next connection, not one thread per connection: GnuTLS 3.7 keeps a
 * random generator per thread that has used it and frees them only at
 * exit (about 0.2 KiB each, measured), so a new thread for every connection
 * would make the server grow without end.  At most --max-clients workers.
 *
 * What the threads share, and how:
 *   - srv (priorities, settings): read-only after start-up;
 *   - the credentials (clients.creds): swapped under clients.lock when
 *     crl.pem changes, each set counted by its users;
 *   - the slots below, one per worker: under clients.lock;
 *   - the log: a queue that one log thread empties (section 11);
 *   - stop_requested: an atomic flag.
 * Bounds, so that concurrency is not a new way to exhaust the machine:
 *   --max-clients (64): connections in flight.  At the cap, one that
 *     waits for its client gives way to a newcomer (make_room, below);
 *     when none is waiting, the newcomer waits for a slot, and clients
 *     after it in the kernel's backlog.
 *     64 is far more than 2 cores can handshake at once with the tutorial's
 *     RSA-4096 key (10.6-11.8 ms of server CPU each, make bench), and 64
 *     idle connections cost a few MB (docs/many-visitors.md).
 *   --max-per-address (8): a connection over it is closed at once, so that
 *     one visitor can't take every slot: with 100 idle sockets from one
 *     address, Alice from another still gets in.  An IPv6 /64 is one
 *     address here (network_of, below).
 * Signals: SIGINT and SIGTERM are blocked in every thread, and let through
 * only while the accept loop waits in ppoll(), so they are handled in this
 * one place, and one that comes between the loop's look at stop_requested
 * and its wait is not lost: it ends the wait at once.  SIGPIPE is ignored
 * (main, before the log's first line): a write to a closed pipe (the log's,
 * section 11) fails with EPIPE instead.
 */

static atomic_int stop_requested;   /* SIGINT or SIGTERM came */

/*
 * Revoking without a restart.  When crl.pem changes (an operator, or part 2,
 * revokes a certificate), the next connection must see it.  Adding a CRL to
 * credentials that other threads are verifying with is not safe in GnuTLS,
 * so a whole new set is loaded (section 9), by the accept loop or by a
 * worker about to check a certificate, and swapped in.  A running
 * connection checks its certificate against the newest set (section 3); a
 * set is freed when the last of its users is done.
 */
struct shared_creds {
    gnutls_certificate_credentials_t creds;
    int users;                      /* connections using it, +1 while it is current */
};

/* One worker thread and the connection it serves, if any. */
struct slot {
    bool started;                   /* its thread exists */
    bool busy;                      /* it has a connection: fd, peer, creds */
    pthread_t thread;
    pthread_cond_t work;            /* signalled when busy becomes true, or at a stop */
    int fd;
    char peer[INET6_ADDRSTRLEN];
    char network[INET6_ADDRSTRLEN + 4]; /* what --max-per-address counts: IPv6 by /64 */
    atomic_llong waiting_since;     /* its worker waits for the client since (ms), or 0 */
    atomic_bool replied;            /* we have sent it something: its ClientHello was whole */
    atomic_bool finishing;          /* answered or failed: only closing is left */
    atomic_bool give_way;           /* the connection must end: a newcomer needs the slot */
    const struct server *srv;
    struct shared_creds *creds;
};

/* The slot of the worker thread this runs in; NULL in the accept loop. */
static _Thread_local struct slot *this_slot;

/* Why the server ends this thread's connection before its time; NULL
 * while it doesn't. */
static const char *cut_short(void)
{
    if (stop_requested)
        return "the server is stopping";
    if (this_slot && atomic_load(&this_slot->give_way))
        return "every slot was taken, and this connection gave way to a newcomer "
               "(--max-clients)";
    return NULL;
}

static long long now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000LL + now.tv_nsec / 1000000;
}

static void mark_waiting(bool waiting)
{
    if (this_slot)
        atomic_store(&this_slot->waiting_since, waiting ? now_ms() : 0);
}

static void mark_replied(void)
{
    if (this_slot)
        atomic_store(&this_slot->replied, true);
}

static void mark_finishing(void)
{
    if (this_slot)
        atomic_store(&this_slot->finishing, true);
}

static struct {
    pthread_mutex_t lock;           /* guards every slot, and stopping */
    struct slot *slots;
    int count;
    bool stopping;
    int done_pipe[2];               /* a worker writes a byte here when it is free again */
    time_t refused_logged;          /* when the last refusal was logged */
    unsigned long refused_unlogged; /* refusals since, not logged */
    struct shared_creds *creds;     /* the set new connections get */
    const struct options *opts;     /* where crl.pem is */
    pthread_mutex_t reload_lock;    /* one reload at a time; guards the two below */
    struct stat crl_seen;           /* crl.pem as it was when last looked at */
    struct stat lock_seen;          /* and crl.pem.lock, the copy of the last CRL signed here */
    bool crl_in_force;              /* the current set has a CRL: one is required from now on */
    struct crl_mark marks[MAX_CRLS];    /* the CRLs in force: none may go back (below) */
    int mark_count;
    gnutls_datum_t crl_text;        /* the CRLs in force, as PEM */
} clients = {.lock = PTHREAD_MUTEX_INITIALIZER, .reload_lock = PTHREAD_MUTEX_INITIALIZER};

/*
 * Revocations never go back.  What a CRL is, for that rule: whose
 * (a SHA-256 of its issuer's name) and how new (its CRL number).  A CRL
 * never gives way to an older one of the same issuer, nor disappears:
 *   - crl.pem.lock keeps a copy of the last CRL signed here, so that a
 *     crl.pem behind it (a backup put back, openssl ca -gencrl) is not
 *     signed anew, and a server does not start with it;
 *   - a running server keeps the marks of the CRLs in force, with their
 *     entries, and loads no crl.pem that lacks one of them, holds an older
 *     one, or holds one that drops an entry in force (openssl ca -gencrl
 *     knows nothing of the revocations signed here, and numbers its next
 *     CRL as it likes); nor does it sign anew such a crl.pem.
 */
static int by_bytes(const void *a, const void *b)
{
    return memcmp(a, b, 33);
}

static int entries_of(gnutls_x509_crl_t crl, struct crl_mark *mark)
{
    gnutls_x509_crl_iter_t iter = NULL;
    unsigned char raw[64];
    size_t n = sizeof raw, cap = 0;
    time_t when;
    int ret;
    while ((ret = gnutls_x509_crl_iter_crt_serial(crl, &iter, raw, &n, &when)) == 0) {
        if (mark->serial_count == cap) {
            unsigned char(*more)[33] = reallocarray(mark->serials, cap ? 2 * cap : 64, 33);
            if (more == NULL) {
                ret = GNUTLS_E_MEMORY_ERROR;
                break;
            }
            mark->serials = more;
            cap = cap ? 2 * cap : 64;
        }
        unsigned char *key = mark->serials[mark->serial_count++];
        memset(key, 0, 33);
        key[0] = (unsigned char)n;
        memcpy(key + 1, raw, n < 32 ? n : 32);
        n = sizeof raw;
    }
    gnutls_x509_crl_iter_deinit(iter);
    if (ret != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
        return ret < 0 ? ret : GNUTLS_E_INTERNAL_ERROR;
    if (mark->serial_count > 1)
        qsort(mark->serials, mark->serial_count, 33, by_bytes);
    return 0;
}

static void free_marks(struct crl_mark *marks, int n)
{
    for (int i = 0; i < n; i++) {
        free(marks[i].serials);
        marks[i].serials = NULL;
        marks[i].serial_count = 0;
    }
}

static int mark_of(gnutls_x509_crl_t crl, struct crl_mark *mark, bool with_entries)
{
    gnutls_datum_t dn = {NULL, 0};
    size_t n = sizeof mark->number;
    memset(mark, 0, sizeof *mark);
    int ret = gnutls_x509_crl_get_raw_issuer_dn(crl, &dn);
    if (ret == 0)
        ret = gnutls_hash_fast(GNUTLS_DIG_SHA256, dn.data, dn.size, mark->issuer);
    gnutls_free(dn.data);
    dn.data = NULL;
    if (ret == 0 && gnutls_x509_crl_get_issuer_dn3(crl, &dn, 0) == 0)
        log_escape(mark->name, sizeof mark->name, (const char *)dn.data, dn.size);
    gnutls_free(dn.data);
    if (ret == 0 && gnutls_x509_crl_get_number(crl, mark->number, &n, NULL) == 0) {
        size_t skip = 0;
        while (skip < n && mark->number[skip] == 0)
            skip++;
        memmove(mark->number, mark->number + skip, n - skip);
        mark->number_len = n - skip;
    }
    if (ret == 0 && with_entries && (ret = entries_of(crl, mark)) < 0)
        free_marks(mark, 1);
    return ret;
}

/* Whether a is older than b (the same issuer assumed). */
static bool older(const struct crl_mark *a, const struct crl_mark *b)
{
    return a->number_len != b->number_len ? a->number_len < b->number_len
                                          : memcmp(a->number, b->number, a->number_len) < 0;
}

/* crl.pem.lock keeps a copy of the last CRL signed here: its mark, with
 * entries, into mark (free_marks it).  False if there is none. */
static bool recorded_mark(const char *crl_file, struct crl_mark *mark)
{
    char path[PATH_MAX + 8];
    gnutls_datum_t text = {NULL, 0};
    gnutls_x509_crl_t crl = NULL;
    struct stat st;
    bool found = false;
    snprintf(path, sizeof path, "%s.lock", crl_file);
    memset(mark, 0, sizeof *mark);
    if (read_whole_file(path, &text, &st) == 0 && text.size > 0 &&
        gnutls_x509_crl_init(&crl) == 0 &&
        gnutls_x509_crl_import(crl, &text, GNUTLS_X509_FMT_PEM) == 0)
        found = mark_of(crl, mark, true) == 0;
    if (crl)
        gnutls_x509_crl_deinit(crl);
    free(text.data);
    return found;
}

/* The copy of the CRL just signed, in crl.pem.lock.  The revocation is in
 * crl.pem already; without its copy, an old crl.pem put back would undo it
 * on a running server (reload_if_crl_changed): so a failure is said. */
static int record_crl(const char *crl_file, const gnutls_datum_t *pem, char *why)
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s.lock", crl_file);
    return write_file(path, pem->data, pem->size, 0600, why);
}

/* The marks of the CRLs in data, the text of file: how many, or -1 with why. */
static int marks_of(const char *file, const gnutls_datum_t *data, struct crl_mark marks[MAX_CRLS],
                    char *why)
{
    gnutls_x509_crl_t *list = NULL;
    unsigned int n = 0;
    int ret = gnutls_x509_crl_list_import2(&list, &n, data, GNUTLS_X509_FMT_PEM, 0);
    if (ret < 0)
        return failed(why, file, ret);
    unsigned int made = 0;
    for (unsigned int i = 0; i < n; i++) {
        if (ret == 0 && i < MAX_CRLS && (ret = mark_of(list[i], &marks[i], true)) == 0)
            made++;
        gnutls_x509_crl_deinit(list[i]);
    }
    gnutls_free(list);
    if (ret < 0 || n > MAX_CRLS) {
        free_marks(marks, (int)made);
        if (ret < 0)
            return failed(why, file, ret);
        snprintf(why, WHY_SIZE, "%.150s holds more than %d CRLs", file, MAX_CRLS);
        return -1;
    }
    return (int)n;
}

/* Whether a new CRL drops an entry of the one in force. */
static bool drops_an_entry(const struct crl_mark *kept, const struct crl_mark *new)
{
    for (size_t i = 0; i < kept->serial_count; i++)
        if (new->serial_count == 0 ||
            bsearch(kept->serials[i], new->serials, new->serial_count, 33, by_bytes) == NULL)
            return true;
    return false;
}

/* Whether the CRLs of a new crl.pem (marks, n) go back on one that must
 * stay (kept): it is missing, older, or drops one of its entries.  Says
 * which in why. */
static bool goes_back(const char *file, const struct crl_mark *kept, const struct crl_mark *marks,
                      int n, char *why)
{
    for (int i = 0; i < n; i++)
        if (memcmp(marks[i].issuer, kept->issuer, sizeof kept->issuer) == 0) {
            const char *how = older(&marks[i], kept)         ? "is older than"
                            : drops_an_entry(kept, &marks[i]) ? "drops an entry of"
                                                              : NULL;
            if (how == NULL)
                return false;
            snprintf(why, WHY_SIZE, "%.100s goes back: its CRL of \"%.60s\" %s one in force or "
                                    "signed here; put the newest back", file,
                     kept->name[0] ? kept->name : "?", how);
            return true;
        }
    snprintf(why, WHY_SIZE, "%.100s goes back: it holds no CRL of \"%.60s\", which was in "
                            "force or signed here; put the newest back", file,
             kept->name[0] ? kept->name : "?");
    return true;
}

/* The CRLs of crl.pem, checked against those in force and the one signed
 * here last; into marks.  Their count, or -1 with why. */
static int check_marks(const struct options *o, const gnutls_datum_t *text,
                       struct crl_mark marks[MAX_CRLS], char *why)
{
    struct crl_mark last;
    int n = marks_of(o->crl_file, text, marks, why);
    if (n < 0)
        return -1;
    bool back = false;
    for (int i = 0; !back && i < clients.mark_count; i++)
        back = goes_back(o->crl_file, &clients.marks[i], marks, n, why);
    if (!back && recorded_mark(o->crl_file, &last)) {
        back = goes_back(o->crl_file, &last, marks, n, why);
        free_marks(&last, 1);
    }
    if (back) {
        free_marks(marks, n);
        return -1;
    }
    return n;
}

/* For a revocation from the web (section C): whether our CRL, as read from
 * crl.pem, goes back on the one in force.  Signing it anew would make the
 * loss permanent. */
static bool behind_the_crl_in_force(gnutls_x509_crl_t crl, const char *file, char *why)
{
    struct crl_mark mark;
    if (mark_of(crl, &mark, true) < 0) {
        snprintf(why, WHY_SIZE, "%.150s: its CRL can't be read", file);
        return true;
    }
    bool back = false;
    pthread_mutex_lock(&clients.reload_lock);
    for (int i = 0; !back && i < clients.mark_count; i++)
        if (memcmp(clients.marks[i].issuer, mark.issuer, sizeof mark.issuer) == 0)
            back = goes_back(file, &clients.marks[i], &mark, 1, why);
    pthread_mutex_unlock(&clients.reload_lock);
    free_marks(&mark, 1);
    return back;
}

/* Let go of a set of credentials; the last user frees it.  Under the lock. */
static void release_creds(struct shared_creds *sc)
{
    if (--sc->users == 0) {
        gnutls_certificate_free_credentials(sc->creds);
        free(sc);
    }
}

/* The first set, at start-up; 0 or -1 after a message. */
static int load_first_creds(const struct options *o)
{
    char why[WHY_SIZE];
    struct crl_mark marks[MAX_CRLS];
    int count = 0;
    struct shared_creds *sc = calloc(1, sizeof *sc);
    gnutls_datum_t text = {NULL, 0};
    int with_crl = sc ? load_credentials_and_crl(&sc->creds, o, o->crl_required, &text, why) : -1;
    if (with_crl == 1 && (count = check_marks(o, &text, marks, why)) < 0) {
        gnutls_certificate_free_credentials(sc->creds);
        with_crl = -1;
    }
    if (with_crl < 0) {
        free(text.data);
        fprintf(stderr, "server: %s\n", sc ? why : strerror(ENOMEM));
        if (access(o->key_file, F_OK) < 0)
            fprintf(stderr, "server: run ./gencerts.sh (or make) to create the tutorial's files\n");
        if (o->crl_required && access(o->crl_file, F_OK) < 0)
            fprintf(stderr, "server: %s is required: it holds every revocation "
                            "(docs/part2.md, \"what to keep\"); restore it from a backup\n",
                    o->crl_file);
        free(sc);
        return -1;
    }
    fprintf(stderr, "server: presenting %s\n", o->cert_file);
    if (with_crl)
        fprintf(stderr, "server: revoked certificates are listed in %s\n", o->crl_file);
    else
        fprintf(stderr, "server: no %s: revocation is not checked\n", o->crl_file);
    sc->users = 1;
    clients.creds = sc;
    clients.opts = o;
    clients.crl_in_force = with_crl;
    memcpy(clients.marks, marks, sizeof marks[0] * (size_t)count);
    clients.mark_count = count;
    clients.crl_text = text;
    if (stat(o->crl_file, &clients.crl_seen) < 0)
        memset(&clients.crl_seen, 0, sizeof clients.crl_seen);
    char lock_path[PATH_MAX + 8];
    snprintf(lock_path, sizeof lock_path, "%s.lock", o->crl_file);
    if (stat(lock_path, &clients.lock_seen) < 0)
        memset(&clients.lock_seen, 0, sizeof clients.lock_seen);
    return 0;
}

/* The same file, as it was: its inode, size, and times.  The change time
 * too: an old crl.pem put back by a rename (a hard-linked backup, or cp -p
 * onto a reused inode) can have its old inode, size and mtime, but a rename
 * or a new link sets its ctime. */
static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * crl.pem was refused (gone, broken, or behind), yet the CRL signed here
 * last, whose copy crl.pem.lock keeps, may be newer than the one of our CA
 * in force: ./server --revoke, or a revocation from the web, signed it after
 * the set in force was loaded, and an old crl.pem was put back before we
 * looked.  Keeping the set in force would lose its revocations.  So it goes
 * in force, with the other CAs' CRLs in force.  Returns 1 (sc, marks,
 * *count and *text filled in), 0 if it is not newer, or -1 with why.
 */
static int load_recorded_crl(const struct options *o, struct shared_creds *sc,
                             struct crl_mark marks[MAX_CRLS], int *count, gnutls_datum_t *text,
                             char *why)
{
    char path[PATH_MAX + 8];
    struct crl_mark last;
    bool newer = true, drops = false;
    if (!recorded_mark(o->crl_file, &last))
        return 0;
    for (int i = 0; i < clients.mark_count; i++)
        if (memcmp(clients.marks[i].issuer, last.issuer, sizeof last.issuer) == 0) {
            newer = older(&clients.marks[i], &last);
            drops = newer && drops_an_entry(&clients.marks[i], &last);
        }
    if (drops) {        /* an old copy put back: it would un-revoke */
        free_marks(&last, 1);
        snprintf(why, WHY_SIZE, "%.150s.lock drops an entry of the CRL in force: not used",
                 o->crl_file);
        return -1;
    }
    /* the CRLs in force of other issuers, then its PEM, last (an outside
     * test under LeakSanitizer saw GnuTLS 3.7.9 leak the CRLs that came
     * after one it refused) */
    struct text all = {NULL, 0, 0, false};
    gnutls_datum_t copy = {NULL, 0};
    gnutls_x509_crl_t *list = NULL;
    unsigned int n = 0;
    struct stat st;
    snprintf(path, sizeof path, "%s.lock", o->crl_file);
    if (newer && read_whole_file(path, &copy, &st) == 0) {
        if (clients.crl_text.data &&
            gnutls_x509_crl_list_import2(&list, &n, &clients.crl_text, GNUTLS_X509_FMT_PEM, 0) < 0)
            all.failed = true;
        for (unsigned int i = 0; i < n; i++) {
            struct crl_mark mark;
            gnutls_datum_t pem = {NULL, 0};
            if (mark_of(list[i], &mark, false) < 0 ||
                (memcmp(mark.issuer, last.issuer, sizeof last.issuer) != 0 &&
                 gnutls_x509_crl_export2(list[i], GNUTLS_X509_FMT_PEM, &pem) < 0))
                all.failed = true;
            else if (pem.data)
                text_add(&all, "%.*s", (int)pem.size, (const char *)pem.data);
            free_marks(&mark, 1);
            gnutls_free(pem.data);
            gnutls_x509_crl_deinit(list[i]);
        }
        gnutls_free(list);
        text_add(&all, "%.*s", (int)copy.size, (const char *)copy.data);
    }
    free(copy.data);
    free_marks(&last, 1);
    if (!newer)
        return 0;
    char *pem = text_take(&all);
    if (pem == NULL) {
        snprintf(why, WHY_SIZE, "%.150s: the CRL signed here last could not be read", path);
        return -1;
    }
    *text = (gnutls_datum_t){(unsigned char *)pem, (unsigned int)strlen(pem)};
    if (load_credentials(&sc->creds, o->key_file, o->cert_file, o->ca_file, why) < 0)
        goto fail;
    if (use_crls(sc->creds, text, path, why) < 0 || (*count = marks_of(path, text, marks, why)) < 0) {
        gnutls_certificate_free_credentials(sc->creds);
        goto fail;
    }
    return 1;
fail:
    free(pem);
    *text = (gnutls_datum_t){NULL, 0};
    return -1;
}

/* If crl.pem is not as it was when we last looked, load a new set and make
 * it current.  Failing closed: once a CRL has been in force, a crl.pem that
 * is missing, unreadable, signed by no CA of ours (or half written), or
 * behind a CRL in force changes nothing: the set loaded before stays, with
 * its CRL; unless the CRL signed here last is newer than it
 * (load_recorded_crl): then that one goes in force.  Each state of the file
 * is tried once and logged once, not at every connection.  The accept loop
 * calls this before each connection, and a worker before its certificate
 * check (use_current_credentials); reload_lock makes them take turns. */
static void reload_if_crl_changed(void)
{
    const struct options *o = clients.opts;
    struct stat now;
    char why[WHY_SIZE], also[WHY_SIZE];

    char lock_path[PATH_MAX + 8];
    struct stat lock_now;
    snprintf(lock_path, sizeof lock_path, "%s.lock", o->crl_file);
    pthread_mutex_lock(&clients.reload_lock);
    if (stat(o->crl_file, &now) < 0)
        memset(&now, 0, sizeof now);
    if (stat(lock_path, &lock_now) < 0)
        memset(&lock_now, 0, sizeof lock_now);
    /* the copy too: it is written just after crl.pem, and an old crl.pem
     * put back in between must still give way to it */
    if (!same_file_state(&now, &clients.crl_seen) ||
        !same_file_state(&lock_now, &clients.lock_seen)) {
        clients.crl_seen = now;
        clients.lock_seen = lock_now;
        struct crl_mark marks[MAX_CRLS];
        int count = 0;
        struct shared_creds *sc = calloc(1, sizeof *sc);
        gnutls_datum_t text = {NULL, 0};
        int with_crl = sc ? load_credentials_and_crl(&sc->creds, o, clients.crl_in_force, &text, why)
                          : -1;
        if (with_crl == 1 && (count = check_marks(o, &text, marks, why)) < 0) {
            gnutls_certificate_free_credentials(sc->creds);
            with_crl = -1;
        }
        int recorded = 0;
        if (with_crl < 0 && sc) {
            free(text.data);
            text.data = NULL;
            recorded = load_recorded_crl(o, sc, marks, &count, &text, also);
        }
        if (recorded == 1) {
            with_crl = 1;
            log_say("%s changed, but %s; the CRL signed here last (%s.lock) is newer than the "
                    "one in force, and takes its place: put the newest crl.pem back",
                    o->crl_file, why, o->crl_file);
        } else if (with_crl < 0) {
            if (recorded < 0)
                log_say("%s", also);
            log_say("%s changed, but %s: the credentials loaded before stay in force",
                    o->crl_file, sc ? why : strerror(ENOMEM));
            free(text.data);
            free(sc);
        } else {
            log_say("%s changed: loading the credentials anew", o->crl_file);
        }
        if (with_crl >= 0) {
            clients.crl_in_force = with_crl;
            free_marks(clients.marks, clients.mark_count);
            memcpy(clients.marks, marks, sizeof marks[0] * (size_t)count);
            clients.mark_count = count;
            free(clients.crl_text.data);
            clients.crl_text = text;
            sc->users = 1;
            pthread_mutex_lock(&clients.lock);
            release_creds(clients.creds);
            clients.creds = sc;
            pthread_mutex_unlock(&clients.lock);
        }
    }
    pthread_mutex_unlock(&clients.reload_lock);
}

/* Section 3 calls this before it checks a certificate.  A connection got
 * the credentials in force when it was accepted; a client may open it, wait
 * while its certificate is revoked, and only then send it.  So the check
 * uses the set in force now: swapped into the session (the handshake is
 * over; only the check reads them), and held until the connection ends. */
static int use_current_credentials(gnutls_session_t s, struct connection *conn)
{
    reload_if_crl_changed();
    pthread_mutex_lock(&clients.lock);
    struct shared_creds *now = clients.creds;
    bool same = now->creds == conn->creds;
    if (!same)
        now->users++;
    pthread_mutex_unlock(&clients.lock);
    if (same)
        return 0;
    int ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, now->creds);
    pthread_mutex_lock(&clients.lock);
    if (ret < 0) {
        release_creds(now);
    } else {
        if (conn->newer_creds)
            release_creds(conn->newer_creds);
        conn->newer_creds = now;
        conn->creds = now->creds;
    }
    pthread_mutex_unlock(&clients.lock);
    return ret;
}

/* At the connection's end, after gnutls_deinit: let go of what
 * use_current_credentials took. */
static void release_newer_creds(struct connection *conn)
{
    if (conn->newer_creds == NULL)
        return;
    pthread_mutex_lock(&clients.lock);
    release_creds(conn->newer_creds);
    pthread_mutex_unlock(&clients.lock);
    conn->newer_creds = NULL;
}

static sigset_t wait_mask;          /* the accept loop's mask while it waits */

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int install_signal_handlers(void)
{
    struct sigaction sa;
    sigset_t stop_signals;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    /* blocked from here on, and in every thread started later */
    if (sigprocmask(SIG_BLOCK, &stop_signals, &wait_mask) < 0 ||
        sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
        fprintf(stderr, "server: signals: %s\n", strerror(errno));
        return -1;
    }
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    return 0;
}

static int open_listener(int port, int *bound_port)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } addr;
    socklen_t len;
    int one = 1, zero = 0;

    memset(&addr, 0, sizeof addr);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd >= 0) {
        addr.v6.sin6_family = AF_INET6;
        addr.v6.sin6_addr = in6addr_any;
        addr.v6.sin6_port = htons((unsigned short)port);
        len = sizeof addr.v6;
        /* accept IPv4 clients too, as ::ffff:a.b.c.d */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    } else if (errno == EAFNOSUPPORT) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        addr.v4.sin_family = AF_INET;
        addr.v4.sin_addr.s_addr = htonl(INADDR_ANY);
        addr.v4.sin_port = htons((unsigned short)port);
        len = sizeof addr.v4;
    }
    if (fd < 0) {
        fprintf(stderr, "server: socket: %s\n", strerror(errno));
        return -1;
    }
    /* restart at once after a stop, without waiting out TIME_WAIT */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* a backlog of 128: room for the clients that wait while every slot is busy */
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || bind(fd, &addr.sa, len) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, &addr.sa, &len) < 0) {
        fprintf(stderr, "server: cannot listen on port %d: %s\n", port, strerror(errno));
        close(fd);
        return -1;
    }
    *bound_port = ntohs(addr.sa.sa_family == AF_INET6 ? addr.v6.sin6_port : addr.v4.sin_port);
    return fd;
}

/* The client's address as text for the log, without reverse DNS (slow,
 * and a name the client's DNS chooses is not evidence of anything). */
static void describe_peer(const struct sockaddr_storage *peer, socklen_t len,
                          char *out, size_t size)
{
    if (getnameinfo((const struct sockaddr *)peer, len, out, (socklen_t)size,
                    NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(out, size, "?");
    else if (strncmp(out, "::ffff:", 7) == 0 && strchr(out, '.'))
        memmove(out, out + 7, strlen(out + 7) + 1);     /* IPv4 as IPv4 */
}

/* A worker: wait for a connection, serve it (the lesson's serve_connection),
 * hand the slot back, wait for the next.  The fd is closed under the lock,
 * so that a stop never shuts down a descriptor number the system has given
 * to someone else. */
static void *worker(void *arg)
{
    struct slot *slot = arg;
    char done = 1;

    this_slot = slot;

    pthread_mutex_lock(&clients.lock);
    for (;;) {
        while (!slot->busy && !clients.stopping)
            pthread_cond_wait(&slot->work, &clients.lock);
        if (!slot->busy)
            break;                                      /* stopping */
        pthread_mutex_unlock(&clients.lock);
        serve_connection(slot->srv, slot->creds->creds, slot->fd, slot->peer);
        pthread_mutex_lock(&clients.lock);
        close(slot->fd);
        slot->fd = -1;
        release_creds(slot->creds);
        slot->creds = NULL;
        slot->busy = false;
        if (write(clients.done_pipe[1], &done, 1) < 0) {
            /* the pipe is full: the loop has wake-ups pending already */
        }
    }
    pthread_mutex_unlock(&clients.lock);
    return NULL;
}

/* A slot with no connection, or NULL when every one is busy.  Only the
 * accept loop calls this. */
static struct slot *free_slot(void)
{
    struct slot *found = NULL;
    pthread_mutex_lock(&clients.lock);
    for (int i = 0; i < clients.count && found == NULL; i++)
        if (!clients.slots[i].busy)
            found = &clients.slots[i];
    pthread_mutex_unlock(&clients.lock);
    return found;
}

/*
 * Every slot taken.  Without more, 8 idle connections from each of 8
 * addresses held all 64 slots, and Alice waited in the backlog until their
 * deadline (4.2 s, for they had held their slots 0.8 s already).  So the
 * accept loop takes the newcomer (and refuses it at once if its address
 * has its share already), then makes room: one connection whose worker is
 * waiting for its client right now gives way.  Which one:
 *   - from the address (or /64) holding the most slots: a crowd from a
 *     few addresses holds several each, Alice one.  A slot already
 *     answered is not counted: it is leaving anyway, and Alice's last
 *     visit, lingering beside her next, made her look like a crowd of two
 *     (her next handshake gave way, 1 run in 8 under ASan);
 *   - of those, one we have not replied to yet (no whole ClientHello: it
 *     cost us nothing and got nowhere), then one already answered, whose
 *     client has only to close (cutting its lingering short risks only a
 *     reset after the answer), then any other;
 *   - and of those, the one that has kept us waiting longest.  We wait for
 *     a real visitor only for a round trip between her messages, while an
 *     idle or stalled connection has kept us waiting since it stalled.
 * Each of the simpler rules before this was broken by an outside attack:
 * "the first to arrive" (a crowd that keeps coming made Alice's the
 * oldest), "has said nothing" (a crowd that says one byte left her, silent
 * while curl reads her .p12, the only one), classes and waits alone (a
 * crowd that finishes its handshake, or gets a HelloRetryRequest, which
 * costs us no signature, and then sends a byte every 5 ms, kept its waits
 * shorter than hers).  What still wins: a crowd from more addresses than
 * there are slots, one connection each, that keeps us busier than Alice
 * does.  The one chosen is flagged and its socket shut down, so that
 * its wait ends at once (its client just sees the connection close); its
 * worker logs "dropped" (unless it had its answer already) and frees the
 * slot for the newcomer.  One at a time: none is chosen while one is still
 * going.  A worker busy on our side (a signature, a page of part 2) is not
 * waiting, so it is not chosen; one that stops waiting just as it is
 * chosen is cut short all the same.
 */
enum room_class { NOT_REPLIED_TO = 1, FINISHING, ANY_OTHER };

static int slots_held_by(const char *network);
static int slots_in_play(const char *network);

static enum room_class room_class(const struct slot *sl)
{
    return !atomic_load(&sl->replied)  ? NOT_REPLIED_TO
           : atomic_load(&sl->finishing) ? FINISHING
                                         : ANY_OTHER;
}

static bool make_room(void)
{
    struct slot *chosen = NULL;
    long long chosen_since = 0;
    enum room_class chosen_class = ANY_OTHER;
    int chosen_held = 0;
    pthread_mutex_lock(&clients.lock);
    for (int i = 0; i < clients.count; i++) {
        struct slot *sl = &clients.slots[i];
        if (sl->busy && atomic_load(&sl->give_way)) {
            chosen = NULL;          /* one is going already */
            break;
        }
        long long since = sl->busy ? atomic_load(&sl->waiting_since) : 0;
        if (since == 0)
            continue;
        enum room_class class = room_class(sl);
        int held = slots_in_play(sl->network);
        if (chosen == NULL || held > chosen_held ||
            (held == chosen_held &&
             (class < chosen_class || (class == chosen_class && since < chosen_since)))) {
            chosen = sl;
            chosen_since = since;
            chosen_class = class;
            chosen_held = held;
        }
    }
    if (chosen) {
        atomic_store(&chosen->give_way, true);
        shutdown(chosen->fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&clients.lock);
    return chosen != NULL;
}

/*
 * What --max-per-address counts as one client: an IPv4 address, or an
 * IPv6 /64.  One IPv6 host may be given a whole /64 (RFC 8273), and
 * may pick any of its 2^64 addresses for each connection; counted one by
 * one, the cap would hold nobody.  Link-local addresses too: a host may
 * take as many as it likes (so in fe80::/64, the usual link-local prefix,
 * every host on the link shares one cap).  Only ::1 is kept whole.
 */
static void network_of(const struct sockaddr_storage *peer, const char *peer_text,
                       char *out, size_t size)
{
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)peer;
    struct in6_addr net;
    char text[INET6_ADDRSTRLEN];
    if (peer->ss_family != AF_INET6 || IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) ||
        IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) {
        snprintf(out, size, "%s", peer_text);
        return;
    }
    net = v6->sin6_addr;
    memset(net.s6_addr + 8, 0, 8);
    if (inet_ntop(AF_INET6, &net, text, sizeof text) == NULL)
        snprintf(text, sizeof text, "?");
    snprintf(out, size, "%s/64", text);
}

/* Connections in flight from this network; under clients.lock. */
static int slots_held_by(const char *network)
{
    int n = 0;
    for (int i = 0; i < clients.count; i++)
        n += clients.slots[i].busy && strcmp(clients.slots[i].network, network) == 0;
    return n;
}

static int slots_in_play(const char *network)
{
    int n = 0;
    for (int i = 0; i < clients.count; i++)
        n += clients.slots[i].busy && !atomic_load(&clients.slots[i].finishing) &&
             strcmp(clients.slots[i].network, network) == 0;
    return n;
}

static int in_flight_from(const char *network)
{
    pthread_mutex_lock(&clients.lock);
    int n = slots_held_by(network);
    pthread_mutex_unlock(&clients.lock);
    return n;
}

/* Over --max-per-address: close at once, and say so, but at most one line a
 * second, so that a flood of refused connections is not a flood of the log. */
static void refuse_busy_address(int fd, const char *peer, const char *network, int max)
{
    struct timespec now;
    struct connection conn = {.fd = -1};

    close(fd);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec == clients.refused_logged) {
        clients.refused_unlogged++;
        return;
    }
    snprintf(conn.peer, sizeof conn.peer, "%s", peer);
    if (strcmp(peer, network) == 0)
        note(&conn, "refused at once: %d connection%s from this address already "
                    "(--max-per-address)", max, max == 1 ? "" : "s");
    else
        note(&conn, "refused at once: %d connection%s from its network %s already "
                    "(--max-per-address)", max, max == 1 ? "" : "s", network);
    if (clients.refused_unlogged > 0)
        note(&conn, "%lu more refused before, not logged", clients.refused_unlogged);
    log_connection(&conn);
    clients.refused_logged = now.tv_sec;
    clients.refused_unlogged = 0;
}

/* Hand the connection to the slot's worker, starting the worker first if
 * this slot never had one. */
static void start_connection(struct slot *slot, const struct server *srv, int fd,
                             const char *peer, const char *network)
{
    pthread_mutex_lock(&clients.lock);
    if (!slot->started) {
        int ret = pthread_create(&slot->thread, NULL, worker, slot);
        if (ret != 0) {
            pthread_mutex_unlock(&clients.lock);
            log_say("no thread for a client from %s: %s", peer, strerror(ret));
            close(fd);
            return;
        }
        slot->started = true;
    }
    slot->busy = true;
    slot->fd = fd;
    slot->srv = srv;
    slot->creds = clients.creds;
    slot->creds->users++;
    snprintf(slot->peer, sizeof slot->peer, "%s", peer);
    snprintf(slot->network, sizeof slot->network, "%s", network);
    atomic_store(&slot->waiting_since, 0);
    atomic_store(&slot->replied, false);
    atomic_store(&slot->finishing, false);
    atomic_store(&slot->give_way, false);
    pthread_cond_signal(&slot->work);
    pthread_mutex_unlock(&clients.lock);
}

/* Stopping: the connections in flight are cut short (shutdown ends their
 * waits at once; each not yet answered logs "dropped: the server is
 * stopping"), every
 * worker is told to end and joined, so that none runs when the credentials
 * are freed. */
static void stop_connections(void)
{
    pthread_mutex_lock(&clients.lock);
    clients.stopping = true;
    for (int i = 0; i < clients.count; i++) {
        if (clients.slots[i].busy)
            shutdown(clients.slots[i].fd, SHUT_RDWR);
        pthread_cond_signal(&clients.slots[i].work);
    }
    pthread_mutex_unlock(&clients.lock);
    for (int i = 0; i < clients.count; i++) {     /* not under the lock: they need it to end */
        if (clients.slots[i].started)
            pthread_join(clients.slots[i].thread, NULL);
        pthread_cond_destroy(&clients.slots[i].work);
    }
}

/* A pause after an error that will not go away at once (out of descriptors
 * or memory), rather than a loop that spins on it. */
static void pause_after(const char *what)
{
    log_say("%s: %s", what, strerror(errno));
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000000L}, NULL);
}

/* The slots and the workers' pipe, made before the server says it
 * listens: a test that counts its descriptors from then on counts them. */
static int make_slots(const struct options *o)
{
    clients.count = o->max_clients;
    clients.slots = calloc((size_t)clients.count, sizeof *clients.slots);
    if (clients.slots == NULL || pipe2(clients.done_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        fprintf(stderr, "server: %s\n", strerror(errno ? errno : ENOMEM));
        free(clients.slots);
        clients.slots = NULL;
        return -1;
    }
    for (int i = 0; i < clients.count; i++)
        pthread_cond_init(&clients.slots[i].work, NULL);
    return 0;
}

static int accept_loop(const struct server *srv)
{
    /* a newcomer accepted while every slot was taken, until one is free */
    struct newcomer {
        int fd;
        char peer[INET6_ADDRSTRLEN], network[INET6_ADDRSTRLEN + 4];
    } next = {.fd = -1};
    while (!stop_requested) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        char drain[64];

        struct slot *slot = free_slot();
        if (next.fd >= 0 && slot) {
            reload_if_crl_changed();
            start_connection(slot, srv, next.fd, next.peer, next.network);
            next.fd = -1;
            continue;
        }
        /* Wait for a client (not while a newcomer waits for its slot), a
         * worker's end, or a stop signal.  A newcomer that waits looks
         * again every 100 ms for a connection to make room: one that was
         * busy on our side may have begun to wait for its client. */
        struct pollfd p[2] = {
            {.fd = next.fd < 0 ? srv->listen_fd : -1, .events = POLLIN},
            {.fd = clients.done_pipe[0], .events = POLLIN},
        };
        struct timespec look_again = {.tv_nsec = 100 * 1000000L};
        if (ppoll(p, 2, next.fd >= 0 ? &look_again : NULL, &wait_mask) < 0) {
            if (errno != EINTR)     /* EINTR: the loop's test sees stop_requested */
                pause_after("waiting for clients");
            continue;
        }
        while (read(clients.done_pipe[0], drain, sizeof drain) > 0)
            continue;
        if (next.fd >= 0) {
            if (free_slot() == NULL)
                make_room();
            continue;
        }
        if (!(p[0].revents & POLLIN))
            continue;
        /* the listener does not block: a client that left between ppoll
         * and accept gives EAGAIN instead of a wait for the next one */
        int fd = accept(srv->listen_fd, (struct sockaddr *)&peer, &len);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                pause_after("accept");
            continue;
        }
        describe_peer(&peer, len, next.peer, sizeof next.peer);
        network_of(&peer, next.peer, next.network, sizeof next.network);
        if (in_flight_from(next.network) >= srv->opts->max_per_address) {
            refuse_busy_address(fd, next.peer, next.network, srv->opts->max_per_address);
            continue;
        }
        next.fd = fd;               /* served at the top of the loop, once a slot is free */
        if (free_slot() == NULL)    /* (one may have come free while we waited) */
            make_room();
    }
    if (next.fd >= 0)
        close(next.fd);
    stop_connections();
    if (clients.refused_unlogged > 0)
        log_say("%lu more connections refused at once (--max-per-address), not logged",
                clients.refused_unlogged);
    return 0;
}

static void free_slots(void)
{
    if (clients.slots == NULL)
        return;
    close(clients.done_pipe[0]);
    close(clients.done_pipe[1]);
    free(clients.slots);
    clients.slots = NULL;
}

static void free_creds(void)
{
    if (clients.creds)
        release_creds(clients.creds);
    clients.creds = NULL;
    free_marks(clients.marks, clients.mark_count);
    clients.mark_count = 0;
    free(clients.crl_text.data);
    clients.crl_text.data = NULL;
}

/* ======================= 14. Files, written whole, and text built whole === */
/*
 * Part 2 keeps its records in files: invitations, accounts, certificates,
 * the CRL.  A file is written aside, flushed to disk, given its mode, and
 * renamed into place, so that a reader (another thread, a second process, a
 * restart after a crash) finds the old file or the new one, never a part;
 * and a full or read-only disk leaves nothing behind.  Modes are set
 * explicitly, never left to the umask.
 */

/* Make folder path, 0700.  1 if it was made, 0 if it was there, -1 with why. */
static int make_folder(const char *path, char *why)
{
    if (mkdir(path, 0700) == 0 && chmod(path, 0700) == 0)
        return 1;
    if (errno == EEXIST)
        return 0;
    snprintf(why, WHY_SIZE, "cannot make %.150s: %s", path, strerror(errno));
    return -1;
}

/* path holds exactly data afterwards, with mode; or it is as it was before.
 * 0, or -1 with why. */
static int write_file(const char *path, const void *data, size_t len, mode_t mode, char *why)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(why, WHY_SIZE, "cannot write %.150s: %s", path, strerror(errno));
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
    int saved = left > 0 ? (errno ? errno : ENOSPC) : 0;
    if (saved == 0 && (fchmod(fd, mode) < 0 || fsync(fd) < 0))
        saved = errno;
    if (close(fd) < 0 && saved == 0)
        saved = errno;
    if (saved == 0 && rename(tmp, path) < 0)
        saved = errno;
    if (saved != 0) {
        unlink(tmp);
        snprintf(why, WHY_SIZE, "cannot write %.150s: %s", path, strerror(saved));
        return -1;
    }
    return 0;
}

/* Take the lock: wait as long as it takes on the command line (conn NULL).
 * A page waits a second at most, and never past its connection's deadline:
 * the lock is held only for a rename, so a second means something is wrong. */
static int take_lock(int fd, const struct connection *conn)
{
    if (conn == NULL)
        return flock(fd, LOCK_EX);
    for (int waited_ms = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; waited_ms += 10) {
        if (errno != EWOULDBLOCK)
            return -1;
        if (ms_left(conn) <= 0 || waited_ms >= 1000) {
            errno = ETIMEDOUT;
            return -1;
        }
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000L}, NULL);
    }
    return 0;
}

/* A whole file into out (free out->data with free()), and what fstat said of
 * the very file read.  0, or -1 with errno. */
static int read_whole_file(const char *path, gnutls_datum_t *out, struct stat *st)
{
    unsigned char *data = NULL;
    int err = 0, fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) < 0)
        err = errno;
    else if (!S_ISREG(st->st_mode))
        err = S_ISDIR(st->st_mode) ? EISDIR : EINVAL;
    else if (st->st_size >= INT_MAX || (data = malloc((size_t)st->st_size + 1)) == NULL)
        err = ENOMEM;
    else {
        size_t got = 0, want = (size_t)st->st_size;
        ssize_t n = 1;
        while (got < want && (n = read(fd, data + got, want - got)) > 0)
            got += (size_t)n;
        if (got != want)
            err = n < 0 ? errno : EIO;
        else
            data[got] = '\0';
        out->size = (unsigned)got;
    }
    close(fd);
    if (err) {
        free(data);
        errno = err;
        return -1;
    }
    out->data = data;
    return 0;
}

/* A small text file, NUL-terminated, into buf; -1 if it can't be read or
 * holds cap bytes or more (not one of ours), or holds a NUL. */
static int read_small_file(const char *path, char *buf, size_t cap)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    ssize_t n = read(fd, buf, cap);
    close(fd);
    if (n < 0 || (size_t)n >= cap || memchr(buf, '\0', (size_t)n) != NULL)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* Pages are built piece by piece with text_add: the text grows as needed,
 * and if memory runs out, or a length would overflow, it is marked failed
 * and text_take gives NULL: a page is whole, or there is none (a 500). */
static void text_add(struct text *t, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    int n = t->failed ? -1 : vsnprintf(NULL, 0, format, ap);
    va_end(ap);
    if (n < 0 || (size_t)n > SIZE_MAX / 2 - t->len) {
        t->failed = true;
        return;
    }
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *more = realloc(t->s, cap);
        if (more == NULL) {
            t->failed = true;
            return;
        }
        t->s = more;
        t->cap = cap;
    }
    va_start(ap, format);
    vsnprintf(t->s + t->len, t->cap - t->len, format, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* The text (free it), or NULL if any text_add failed; t is empty again. */
static char *text_take(struct text *t)
{
    char *s = t->failed ? NULL : t->s;
    if (t->failed)
        free(t->s);
    memset(t, 0, sizeof *t);
    return s;
}

/* For load_credentials: a file it can read, or why[] says which one it can't. */
static int check_readable(const char *path, const char *what, char *why)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);   /* a FIFO must not hang us */
    int err = fd < 0 ? errno : fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
    if (fd >= 0)
        close(fd);
    if (err) {
        snprintf(why, WHY_SIZE, "cannot read the %s %.150s: %s", what, path,
                 err == EINVAL ? "not a file" : strerror(err));
        return -1;
    }
    return 0;
}

/* A copy of a GnuTLS string, in memory we free with free(). */
static char *copy_datum(gnutls_datum_t *d)
{
    char *s = malloc(d->size + 1);
    if (s) {
        memcpy(s, d->data, d->size);
        s[d->size] = '\0';
    }
    gnutls_free(d->data);
    return s;
}

/* GnuTLS hands a name back escaped for use inside a DN string (RFC 4514:
 * "Doe\, John"); the page shows the name itself. */
static void unescape_dn_value(char *s)
{
    char *out = s;
    for (; *s; s++) {
        if (*s == '\\' && s[1] != '\0')
            s++;
        *out++ = *s;
    }
    *out = '\0';
}

static void free_identity(struct identity *id)
{
    free(id->subject_cn);
    free(id->issuer_cn);
    free(id->subject_dn);
    free(id->page_reason);
    free(id->log_reason);
}

/* Certificate fields are chosen by whoever made the certificate: escape them
 * before they go into HTML, or a CN of "<script>..." runs in the browser. */
static char *html_escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += strchr("&<>\"'", *p) ? 6 : 1;
    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (; *s; s++) {
        switch (*s) {
        case '&': o = stpcpy(o, "&amp;"); break;
        case '<': o = stpcpy(o, "&lt;"); break;
        case '>': o = stpcpy(o, "&gt;"); break;
        case '"': o = stpcpy(o, "&quot;"); break;
        case '\'': o = stpcpy(o, "&#39;"); break;
        default: *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

/* printf into freshly allocated memory. */
static char *format_text(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* ======================= 15. Drawing the handshake: GET /handshake ======== */
/*
 * Section 6's record, drawn for the visitor whose connection it is: a
 * sequence diagram (HTML, no script, no style: our pages load nothing) for
 * a browser, plain text for curl, both from the same record.  Then the
 * certificate check as GnuTLS reported it, and the tutorial's verdict.
 *
 * What a message carried comes from the message itself where the session
 * does not say it: the versions from the kept ClientHello, the CA names
 * and signature algorithms from the kept CertificateRequest.  The rest is
 * what GnuTLS says of the session: the version and suite agreed, the
 * certificates, the client's signature algorithm.  Whatever came from the
 * client, or from a certificate, goes through log_escape (section 11:
 * bounded, no control or invisible character; say_quoted), then is escaped
 * for HTML.
 */
#define DRAWN_TEXT 300          /* a name on the page: at most this many bytes */
#define DRAWN_CERTS 8           /* the client's chain: at most this many drawn */

/* A bounded reader of a TLS message: a length too long for what is left
 * makes it empty and bad, never reads past the end. */
struct reader {
    const unsigned char *p;
    size_t left;
    bool bad;
};

static const unsigned char *take(struct reader *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = true;
        r->left = 0;
        return NULL;
    }
    const unsigned char *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

static unsigned read_number(struct reader *r, size_t bytes)
{
    const unsigned char *at = take(r, bytes);
    unsigned v = 0;
    for (size_t i = 0; at && i < bytes; i++)
        v = v << 8 | at[i];
    return v;
}

/* A vector: its length in length_bytes bytes, then that many bytes. */
static struct reader vector(struct reader *r, size_t length_bytes)
{
    size_t len = read_number(r, length_bytes);
    const unsigned char *at = take(r, len);
    return (struct reader){at, at ? len : 0, at == NULL};
}

/* The RFC 8446 / RFC 5246 names (GnuTLS's own are "CLIENT HELLO"...). */
static const char *message_name(unsigned type)
{
    switch (type) {
    case GNUTLS_HANDSHAKE_HELLO_REQUEST: return "HelloRequest";
    case GNUTLS_HANDSHAKE_CLIENT_HELLO: return "ClientHello";
    case GNUTLS_HANDSHAKE_CLIENT_HELLO_V2: return "ClientHello";
    case GNUTLS_HANDSHAKE_SERVER_HELLO: return "ServerHello";
    case GNUTLS_HANDSHAKE_HELLO_RETRY_REQUEST: return "HelloRetryRequest";
    case GNUTLS_HANDSHAKE_NEW_SESSION_TICKET: return "NewSessionTicket";
    case GNUTLS_HANDSHAKE_END_OF_EARLY_DATA: return "EndOfEarlyData";
    case GNUTLS_HANDSHAKE_ENCRYPTED_EXTENSIONS: return "EncryptedExtensions";
    case GNUTLS_HANDSHAKE_CERTIFICATE_PKT: return "Certificate";
    case GNUTLS_HANDSHAKE_SERVER_KEY_EXCHANGE: return "ServerKeyExchange";
    case GNUTLS_HANDSHAKE_CERTIFICATE_REQUEST: return "CertificateRequest";
    case GNUTLS_HANDSHAKE_SERVER_HELLO_DONE: return "ServerHelloDone";
    case GNUTLS_HANDSHAKE_CERTIFICATE_VERIFY: return "CertificateVerify";
    case GNUTLS_HANDSHAKE_CLIENT_KEY_EXCHANGE: return "ClientKeyExchange";
    case GNUTLS_HANDSHAKE_FINISHED: return "Finished";
    case GNUTLS_HANDSHAKE_CERTIFICATE_STATUS: return "CertificateStatus";
    case GNUTLS_HANDSHAKE_KEY_UPDATE: return "KeyUpdate";
    case GNUTLS_HANDSHAKE_COMPRESSED_CERTIFICATE_PKT: return "CompressedCertificate";
    default: return "(another message)";
    }
}

/* A protocol version as the wire writes it (0x0304), by name. */
static void version_name(unsigned v, char *out, size_t cap)
{
    if (v >= 0x0301 && v <= 0x0304)
        snprintf(out, cap, "TLS1.%u", v - 0x0301);
    else if ((v & 0x0f0f) == 0x0a0a && v >> 8 == (v & 0xff))
        snprintf(out, cap, "GREASE 0x%04x (RFC 8701: a value to be ignored)", v);
    else
        snprintf(out, cap, "0x%04x", v);
}

/* A signature scheme (RFC 8446 4.2.3), by name.  GnuTLS has names only for
 * its own numbering, so the RFC's list it is. */
static void scheme_name(unsigned code, char *out, size_t cap)
{
    static const struct {
        unsigned code;
        const char *name;
    } schemes[] = {
        {0x0401, "rsa_pkcs1_sha256"},   {0x0501, "rsa_pkcs1_sha384"},
        {0x0601, "rsa_pkcs1_sha512"},   {0x0403, "ecdsa_secp256r1_sha256"},
        {0x0503, "ecdsa_secp384r1_sha384"}, {0x0603, "ecdsa_secp521r1_sha512"},
        {0x0804, "rsa_pss_rsae_sha256"}, {0x0805, "rsa_pss_rsae_sha384"},
        {0x0806, "rsa_pss_rsae_sha512"}, {0x0807, "ed25519"}, {0x0808, "ed448"},
        {0x0809, "rsa_pss_pss_sha256"}, {0x080a, "rsa_pss_pss_sha384"},
        {0x080b, "rsa_pss_pss_sha512"}, {0x0201, "rsa_pkcs1_sha1"}, {0x0203, "ecdsa_sha1"},
    };
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (schemes[i].code == code) {
            snprintf(out, cap, "%s", schemes[i].name);
            return;
        }
    snprintf(out, cap, "0x%04x", code);
}

/* The page as it grows: the diagram's rows, and the lines under the
 * message being drawn. */
#define LISTED 16               /* CA names of the list compared with the client's issuer */

struct drawing {
    struct text out, carried;
    bool html;
    bool found;                 /* the extension looked for was there */
    gnutls_datum_t listed[LISTED];      /* the list's DER names, inside the kept request */
    int listed_count;           /* -1: the list is not known (not kept, or unparsable) */
};

/* A line of what a message carried, or of the check: our own words. */
static void say(struct drawing *d, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void say(struct drawing *d, const char *format, ...)
{
    char *line = NULL;
    va_list ap;
    va_start(ap, format);
    int n = vasprintf(&line, format, ap);
    va_end(ap);
    if (n < 0) {
        d->carried.failed = true;       /* no memory: the page is a 500 */
        return;
    }
    if (d->html)
        text_add(&d->carried, "%s%s", d->carried.len ? "<br>" : "", line);
    else
        text_add(&d->carried, "    %s\n", line);
    free(line);
}

/* The same with text from the client or a certificate: escaped, bounded.
 * log_escape writes a control byte as \x0a, and a backslash or a quote as
 * \\ or \"; the page has no quotes of its own to protect, and a DN from
 * GnuTLS escapes its own backslashes (RFC 4514), so those two come back. */
static void say_quoted(struct drawing *d, const char *label, const char *text, size_t len)
{
    char safe[DRAWN_TEXT + 4];
    log_escape(safe, sizeof safe, text, len);
    char *out = safe;
    for (const char *in = safe; *in; in++) {
        if (in[0] == '\\' && (in[1] == '\\' || in[1] == '"'))
            in++;
        *out++ = *in;
    }
    *out = '\0';
    char *shown = d->html ? html_escape(safe) : NULL;
    if (d->html && shown == NULL)
        d->carried.failed = true;
    else
        say(d, "%s: %s", label, shown ? shown : safe);
    free(shown);
}

/* One message: a row of the diagram (an arrow from its sender), or one
 * line "client -> server  ClientHello"; then what it carried. */
static void draw_message(struct drawing *d, bool from_client, const char *name)
{
    const char *carried = d->carried.s ? d->carried.s : "";
    if (d->html) {
        /* the arrow: a line and a head, drawn by SVG attributes (no style) */
        const char *arrow = from_client
            ? "<line x1=\"0\" y1=\"7\" x2=\"110\" y2=\"7\" stroke=\"black\"/>"
              "<polygon points=\"110,2 120,7 110,12\"/>"
            : "<line x1=\"10\" y1=\"7\" x2=\"120\" y2=\"7\" stroke=\"black\"/>"
              "<polygon points=\"10,2 0,7 10,12\"/>";
        text_add(&d->out, "<tr><td align=\"right\">%s</td><td><svg width=\"120\" height=\"14\" "
                          "role=\"img\" aria-label=\"%s\">%s</svg></td><td>%s</td><td>%s</td></tr>\n",
                 from_client ? name : "", from_client ? "client to server" : "server to client",
                 arrow, from_client ? "" : name, carried);
    } else {
        text_add(&d->out, "%s  %s\n%s", from_client ? "client -> server" : "server -> client",
                 name, carried);
    }
    d->out.failed |= d->carried.failed;     /* a line lost: no page, a 500 */
    free(d->carried.s);
    memset(&d->carried, 0, sizeof d->carried);
}

/* gnutls_ext_raw_parse's callback for the ClientHello: supported_versions
 * (RFC 8446 4.2.1), a list of two-byte versions behind a one-byte length. */
static int offered_versions(void *ctx, unsigned tls_id, const unsigned char *data, unsigned size)
{
    struct drawing *d = ctx;
    if (tls_id != 43)
        return 0;
    d->found = true;
    struct reader r = {data, size, false};
    struct reader list = vector(&r, 1);
    char all[400] = "", name[80];
    while (list.left >= 2 && strlen(all) + 80 < sizeof all) {
        version_name(read_number(&list, 2), name, sizeof name);
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", all[0] ? ", " : "", name);
    }
    say(d, "versions offered: %s%s", all[0] ? all : "none", list.bad || r.bad ? " (malformed)" : "");
    return 0;
}

/* ClientHello: the versions it offers.  A client without supported_versions
 * speaks TLS 1.2 at most, and says which in its first two bytes. */
static void draw_client_hello(struct drawing *d, const gnutls_datum_t *hello)
{
    char name[80];
    if (hello->size < 2) {
        say(d, "(not kept: too long, or no memory)");
        return;
    }
    d->found = false;
    int ret = gnutls_ext_raw_parse(d, offered_versions, hello, GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO);
    if (ret == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
        ret = 0;                        /* a TLS 1.2 hello may end before any extension */
    if (ret == 0 && !d->found) {
        version_name((unsigned)hello->data[0] << 8 | hello->data[1], name, sizeof name);
        say(d, "versions offered: up to %s (no supported_versions extension)", name);
    } else if (ret < 0) {
        say(d, "its extensions do not parse: %s", gnutls_strerror(ret));
    }
}

/* The signature algorithms a CertificateRequest accepts. */
static void draw_schemes(struct drawing *d, struct reader *r)
{
    struct reader list = vector(r, 2);
    char all[1200] = "", name[40];
    while (list.left >= 2 && strlen(all) + 40 < sizeof all) {
        scheme_name(read_number(&list, 2), name, sizeof name);
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", all[0] ? ", " : "", name);
    }
    say(d, "signature algorithms it accepts (the client's key must sign with one): %s", all);
}

/* The CA names (certificate_authorities): DER names, each behind a two-byte
 * length.  A browser offers only certificates issued under one of them. */
static void draw_ca_names(struct drawing *d, struct reader *r)
{
    struct reader list = vector(r, 2);
    int count = 0;
    while (list.left > 0) {
        struct reader dn = vector(&list, 2);
        gnutls_datum_t der = {(unsigned char *)dn.p, (unsigned)dn.left}, str = {NULL, 0};
        if (dn.bad || gnutls_x509_rdn_get2(&der, &str, 0) < 0) {
            say(d, "CA name: (does not parse)");
            break;
        }
        say_quoted(d, "CA name", (const char *)str.data, str.size);
        gnutls_free(str.data);
        if (count < LISTED)
            d->listed[count] = der;
        count++;
    }
    d->listed_count = list.bad ? -1 : count < LISTED ? count : LISTED;
    if (count == 0)
        say(d, "no CA names: the client may offer any certificate");
    else
        say(d, "this is the list: a browser offers only certificates issued under these CAs");
}

/* certificate_authorities (47) and signature_algorithms (13), in a TLS 1.3
 * CertificateRequest's extensions. */
static int request_extension(void *ctx, unsigned tls_id, const unsigned char *data, unsigned size)
{
    struct reader r = {data, size, false};
    if (tls_id == 47)
        draw_ca_names(ctx, &r);
    else if (tls_id == 13)
        draw_schemes(ctx, &r);
    return 0;
}

/* Our CertificateRequest: TLS 1.3 puts the list in extensions (RFC 8446
 * 4.3.2); TLS 1.2 in fields (RFC 5246 7.4.4), after the certificate types. */
static void draw_certificate_request(struct drawing *d, const gnutls_datum_t *req, bool tls13)
{
    struct reader r = {req->data, req->size, false};
    if (req->size == 0) {
        say(d, "(not kept: too long, or no memory)");
    } else if (tls13) {
        vector(&r, 1);                                  /* certificate_request_context */
        gnutls_datum_t exts = {(unsigned char *)r.p, (unsigned)r.left};
        if (r.bad || gnutls_ext_raw_parse(d, request_extension, &exts, 0) < 0)
            say(d, "(does not parse)");
    } else {
        vector(&r, 1);                                  /* certificate_types */
        draw_schemes(d, &r);
        draw_ca_names(d, &r);
    }
    say(d, tls13 ? "sent encrypted (TLS 1.3): hidden from anyone watching the network, "
                   "though any client that connects is sent it"
                 : "sent in the clear (TLS 1.2): anyone watching the network reads the list");
}

/* A certificate's subject and issuer, for the Certificate messages. */
static void draw_names(struct drawing *d, const gnutls_datum_t *der, int n)
{
    gnutls_x509_crt_t crt;
    gnutls_datum_t subject = {NULL, 0}, issuer = {NULL, 0};
    char label[40];
    if (gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0 &&
        gnutls_x509_crt_get_dn3(crt, &subject, 0) == 0 &&
        gnutls_x509_crt_get_issuer_dn3(crt, &issuer, 0) == 0) {
        snprintf(label, sizeof label, "certificate %d subject", n);
        say_quoted(d, label, (const char *)subject.data, subject.size);
        snprintf(label, sizeof label, "certificate %d issuer", n);
        say_quoted(d, label, (const char *)issuer.data, issuer.size);
    } else {
        say(d, "certificate %d: does not parse", n);
    }
    gnutls_free(subject.data);
    gnutls_free(issuer.data);
    gnutls_x509_crt_deinit(crt);
}

/* Would a browser have offered this certificate?  Only if its issuer's
 * name, byte for byte, is one of the list's. */
static void draw_offered(struct drawing *d, const gnutls_datum_t *der)
{
    gnutls_x509_crt_t crt;
    gnutls_datum_t issuer = {NULL, 0};
    bool listed = false;
    if (d->listed_count < 0 || gnutls_x509_crt_init(&crt) < 0)
        return;                             /* the list is not known */
    if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0 &&
        gnutls_x509_crt_get_raw_issuer_dn(crt, &issuer) == 0) {
        for (int i = 0; i < d->listed_count; i++)
            listed |= d->listed[i].size == issuer.size &&
                      memcmp(d->listed[i].data, issuer.data, issuer.size) == 0;
        say(d, listed ? "its issuer is in the list: a browser may offer it; "
                        "the check below decides whether it is admitted"
                      : "its issuer is not in the list: a browser would not have offered it "
                        "(curl and openssl send what they are told to)");
    }
    gnutls_free(issuer.data);
    gnutls_x509_crt_deinit(crt);
}

static void draw_client_certificates(struct drawing *d, gnutls_session_t s)
{
    unsigned count = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &count);
    if (certs == NULL || count == 0) {
        say(d, "empty: the client had no certificate from these CAs, or chose none");
        say(d, "(a browser remembers its choice for the site until it restarts)");
        return;
    }
    if (count > 1)
        say(d, "certificate 1 is the client's own; the rest, the chain it sent along");
    for (unsigned i = 0; i < count && i < DRAWN_CERTS; i++)
        draw_names(d, &certs[i], (int)i + 1);
    if (count > DRAWN_CERTS)
        say(d, "and %u more", count - DRAWN_CERTS);
    draw_offered(d, &certs[0]);
}

/* What each message carried that matters here. */
static void draw_carried(struct drawing *d, gnutls_session_t s, const struct handshake_record *r,
                         int i, bool tls13)
{
    unsigned type = r->messages[i].type;
    bool from_client = r->messages[i].from_client;
    char name[40];
    bool hello_again = false;                   /* a later ClientHello, after a retry */
    for (int k = i + 1; k < r->count; k++)
        hello_again |= r->messages[k].type == GNUTLS_HANDSHAKE_CLIENT_HELLO;
    if (type == GNUTLS_HANDSHAKE_CLIENT_HELLO && hello_again) {
        say(d, "answered with a HelloRetryRequest: no key share the server takes");
    } else if (type == GNUTLS_HANDSHAKE_CLIENT_HELLO) {
        draw_client_hello(d, &r->client_hello);     /* the last one's copy is kept */
    } else if (type == GNUTLS_HANDSHAKE_CLIENT_HELLO_V2) {
        say(d, "in the old SSLv2-compatible format (RFC 5246 E.2): no extensions, "
               "so TLS 1.2 at most");
    } else if (type == GNUTLS_HANDSHAKE_HELLO_RETRY_REQUEST) {
        const char *group = gnutls_group_get_name(gnutls_group_get(s));
        say(d, "asks for a new ClientHello, with a key share for %s", group ? group : "?");
    } else if (type == GNUTLS_HANDSHAKE_SERVER_HELLO) {
        const char *suite = gnutls_ciphersuite_get(s);
        const char *group = gnutls_group_get_name(gnutls_group_get(s));
        say(d, "version agreed: %s; cipher suite: %s",
            gnutls_protocol_get_name(gnutls_protocol_get_version(s)), suite ? suite : "?");
        if (tls13)
            say(d, "key exchange: %s, from the key shares of both hellos",
                group ? group : "?");
        if (tls13)
            say(d, "from here on, every handshake message is encrypted");
    } else if (type == GNUTLS_HANDSHAKE_CERTIFICATE_REQUEST) {
        draw_certificate_request(d, &r->certificate_request, tls13);
    } else if (type == GNUTLS_HANDSHAKE_CERTIFICATE_PKT && from_client) {
        draw_client_certificates(d, s);
    } else if (type == GNUTLS_HANDSHAKE_CERTIFICATE_PKT) {
        const gnutls_datum_t *ours = gnutls_certificate_get_ours(s);
        if (ours)
            draw_names(d, ours, 1);
    } else if (type == GNUTLS_HANDSHAKE_CERTIFICATE_VERIFY) {
        int sign = from_client ? gnutls_sign_algorithm_get_client(s) : gnutls_sign_algorithm_get(s);
        const char *sign_name = sign < 0 ? NULL : gnutls_sign_get_name((gnutls_sign_algorithm_t)sign);
        snprintf(name, sizeof name, "%s", sign_name ? sign_name : "?");
        say(d, "signature: %s, over the handshake so far", name);
        say(d, "it proves the %s holds the private key of the certificate it sent",
            from_client ? "client" : "server");
    } else if (type == GNUTLS_HANDSHAKE_SERVER_KEY_EXCHANGE) {
        const char *group = gnutls_group_get_name(gnutls_group_get(s));
        say(d, "the server's ECDHE key share (%s): its half of a fresh Diffie-Hellman "
               "exchange, signed with its key", group ? group : "?");
    } else if (type == GNUTLS_HANDSHAKE_CLIENT_KEY_EXCHANGE) {
        say(d, "the client's ECDHE key share");
    } else if (type == GNUTLS_HANDSHAKE_FINISHED) {
        say(d, "a MAC (a keyed checksum) of the whole handshake: nothing above was altered");
        if (!tls13)
            say(d, "encrypted: it follows a ChangeCipherSpec, which is no handshake message");
    }
}

/* The certificate check, step by step, from what GnuTLS reported: ret and
 * status, as gnutls_certificate_verify_peers gave them.  Without a trusted
 * issuer, GnuTLS still checks the dates and the purpose, but has no key to
 * check a signature with, nor its CRL. */
static void draw_check(struct drawing *d, const struct identity *id, int ret, unsigned status)
{
    static const struct {
        const char *step;
        unsigned bits;
        bool needs_issuer;
    } steps[] = {
        {"its issuer is one of our CAs (ca), by name",
         GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA, false},
        {"the issuer's signature verifies",     /* or the issuer's key can't have made it */
         GNUTLS_CERT_SIGNATURE_FAILURE | GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE, true},
        {"signed with a secure algorithm", GNUTLS_CERT_INSECURE_ALGORITHM, true},
        {"valid today (not before, not after)", GNUTLS_CERT_NOT_ACTIVATED | GNUTLS_CERT_EXPIRED,
         false},
        {"made for TLS clients (purpose)", GNUTLS_CERT_PURPOSE_MISMATCH, false},
        {"not revoked (the revocation lists below)", GNUTLS_CERT_REVOKED | GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED |
         GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE, true},
    };
    if (!id->presented) {
        say(d, "nothing to check: no client certificate");
        return;
    }
    if (ret < 0) {
        say(d, "the check could not be made: %s", gnutls_strerror(ret));
    } else {
        bool no_issuer = status & GNUTLS_CERT_SIGNER_NOT_FOUND;
        unsigned explained = GNUTLS_CERT_INVALID, last = sizeof steps / sizeof steps[0] - 1;
        for (size_t i = 0; i <= last; i++) {
            say(d, "%s: %s", steps[i].step,
                status & steps[i].bits ? "no"
                : no_issuer && steps[i].needs_issuer ? "not checked (no trusted issuer's key to check with)"
                /* seen: a revoked certificate that also expired gets no REVOKED bit */
                : i == last && status != 0 ? "not known (with another step failed, GnuTLS does "
                                             "not report revocation)"
                : "yes");
            explained |= steps[i].bits;
        }
        if (status & ~explained) {      /* a reason none of the steps names */
            gnutls_datum_t text = {NULL, 0};
            if (gnutls_certificate_verification_status_print(status & ~explained, GNUTLS_CRT_X509,
                                                              &text, 0) == 0)
                say_quoted(d, "and GnuTLS says", (const char *)text.data, text.size);
            gnutls_free(text.data);
        }
    }
}

/* The CRLs in force (section 9): whose, which number, of when. */
static void draw_crls(struct drawing *d)
{
    gnutls_datum_t text = {NULL, 0};
    pthread_mutex_lock(&clients.reload_lock);
    if (clients.crl_text.data && (text.data = malloc(clients.crl_text.size)) != NULL) {
        memcpy(text.data, clients.crl_text.data, clients.crl_text.size);
        text.size = clients.crl_text.size;
    }
    pthread_mutex_unlock(&clients.reload_lock);
    gnutls_x509_crl_t *list = NULL;
    unsigned n = 0;
    if (text.data == NULL || gnutls_x509_crl_list_import2(&list, &n, &text, GNUTLS_X509_FMT_PEM, 0) < 0)
        n = 0;
    if (n == 0)
        say(d, "revocation lists (CRLs) in force: none, so revocation is not checked");
    for (unsigned i = 0; i < n; i++) {
        unsigned char number[20];       /* RFC 5280 5.2.3: 20 bytes at most */
        size_t size = sizeof number;
        char shown[2 * sizeof number + 16] = "no number", date[32];
        gnutls_datum_t issuer = {NULL, 0};
        int ret = gnutls_x509_crl_get_number(list[i], number, &size, NULL);
        if (ret >= 0 && size <= 8) {
            unsigned long long v = 0;
            for (size_t k = 0; k < size; k++)
                v = v << 8 | number[k];
            snprintf(shown, sizeof shown, "number %llu", v);
        } else if (ret >= 0) {                  /* too big for a number of ours: hex */
            strcpy(shown, "number 0x");
            for (size_t k = 0; k < size; k++)
                snprintf(shown + 9 + 2 * k, sizeof shown - 9 - 2 * k, "%02x", number[k]);
        }
        time_t at = gnutls_x509_crl_get_this_update(list[i]);
        struct tm tm;
        strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime_r(&at, &tm));
        if (gnutls_x509_crl_get_issuer_dn3(list[i], &issuer, 0) == 0) {
            char label[sizeof shown + sizeof date + 64];
            snprintf(label, sizeof label, "revocation list (CRL) in force: %s, issued %s, by",
                     shown, date);
            say_quoted(d, label, (const char *)issuer.data, issuer.size);
        }
        gnutls_free(issuer.data);
        gnutls_x509_crl_deinit(list[i]);
    }
    gnutls_free(list);
    free(text.data);
}

/* The tutorial's verdict, with the 403 page's reason, and the tutorial's
 * line it leads to (the tutorial shows only ".send(" for the last two). */
static void draw_verdict(struct drawing *d, const struct identity *id)
{
    const char *line = id->authorized ? "200 Hello ...; the tutorial's line: "
                                        "if (req.client.authorized) { res.send(`Hello ...`)"
                       : id->presented ? "403 Sorry ...; the tutorial's line: "
                                         "} else if (cert.subject) { .send(`Sorry ...`)"
                       : "401 Sorry, but you need ...; the tutorial's line: "
                         "} else { .send(`Sorry, but you need ...`)";
    const char *why = !id->authorized && id->page_reason ? id->page_reason : NULL;
    if (d->html)
        text_add(&d->out, "<p><code>authorized: %s</code>%s%s<br>/authenticate would answer "
                          "<code>%s</code></p>\n", id->authorized ? "true" : "false",
                 why ? "<br>refused because " : "", why ? why : "", line);
    else
        text_add(&d->out, "\nauthorized: %s\n%s%s%s/authenticate would answer: %s\n",
                 id->authorized ? "true" : "false", why ? "refused because " : "",
                 why ? why : "", why ? "\n" : "", line);
}

/* The whole page; NULL when out of memory. */
static char *draw_handshake(gnutls_session_t s, const struct handshake_record *r,
                            const struct identity *id, int ret, unsigned status, bool html)
{
    struct drawing d = {.html = html, .listed_count = -1};
    bool tls13 = gnutls_protocol_get_version(s) == GNUTLS_TLS1_3;
    text_add(&d.out, html ? "<title>Your handshake</title>\n<p><a href=\"/\">Home</a></p>\n"
                            "<h1>Your handshake with this server</h1>\n"
                            "<p>The TLS handshake of the connection that fetched this page, "
                            "message by message, as the server recorded it.</p>\n"
                            "<table border=\"1\" cellpadding=\"4\">\n<tr><th>client</th><th></th>"
                            "<th>server</th><th>what it carried</th></tr>\n"
                          : "Your handshake with this server\n\n"
                            "The TLS handshake of the connection that fetched this page,\n"
                            "message by message, as the server recorded it.\n\n");
    for (int i = 0; i < r->count; i++) {
        draw_carried(&d, s, r, i, tls13);
        draw_message(&d, r->messages[i].from_client, message_name(r->messages[i].type));
    }
    if (r->missed)
        text_add(&d.out, html ? "<tr><td colspan=\"4\">and %d more</td></tr>\n" : "and %d more\n",
                 r->missed);
    text_add(&d.out, html ? "</table>\n<h2>The certificate check</h2>\n<p>%s</p>\n<p>"
                          : "\nThe certificate check\n%s\n",
             "GnuTLS checks the certificate the client sent; a step is \"yes\" when "
             "GnuTLS reported no problem with it.");
    draw_check(&d, id, ret, status);
    draw_crls(&d);
    text_add(&d.out, "%s", d.carried.s ? d.carried.s : "");
    text_add(&d.out, html ? "</p>\n" : "");
    d.out.failed |= d.carried.failed;
    free(d.carried.s);
    draw_verdict(&d, id);
    return text_take(&d.out);
}

/* GET /handshake: this connection's record, and the check /authenticate
 * would make (section 3), noted in the log as /authenticate notes it.  The
 * check is made twice: once as section 3 makes it, for the verdict, and
 * once more for the status bits, which section 3 keeps to itself. */
static void handshake_page(gnutls_session_t s, struct connection *conn,
                           const struct request *req, struct answer *ans)
{
    struct identity id;
    unsigned status = 0;
    check_client_certificate(s, conn, &id);
    note_visitor(conn, &id);
    int ret = id.presented ? gnutls_certificate_verify_peers(s, &tls_client_purpose, 1, &status) : 0;
    ans->status = 200;
    ans->vary = "Accept";
    if (conn->record == NULL) {
        ans->page = NULL;                   /* no memory for the record: a 500 */
    } else {
        ans->page = draw_handshake(s, conn->record, &id, ret, status, req->wants_html);
        if (!req->wants_html && ans->page) {
            ans->content_type = "text/plain; charset=utf-8";
            ans->page_len = strlen(ans->page);
        }
    }
    free_identity(&id);
}

/* The link under /authenticate's answers; page is freed. */
static char *with_handshake_link(char *page)
{
    char *linked = page ? format_text("%s\n<p>How did the server know? <a href=\"handshake\">"
                                      "See the handshake</a>.</p>",
                                      page)
                        : NULL;
    free(page);
    return linked;
}

/* ======================= 16. The command line ============================= */

#define DEFAULT_CERTS_DIR "certs"   /* where gencerts.sh writes */
#define DEFAULT_TIMEOUT_S 5         /* longest time one client may take */
#define DEFAULT_MAX_CLIENTS 64      /* connections in flight (section 13 says why) */
#define DEFAULT_MAX_PER_ADDRESS 8   /* of those, from one client address */
#define DEFAULT_INVITE_HOURS 24     /* part 2: how long an invitation is good for */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: ./server [--port N] [--certs DIR] [--key FILE] [--cert FILE]\n"
        "                [--ca FILE] [--crl FILE] [--timeout SECONDS] [--reject-unauthorized]\n"
        "                [--max-clients N] [--max-per-address N] [--enroll [--invite-hours N]]\n"
        "       ./server [--certs DIR] [--port N] --invite NAME [--invite-hours N]\n"
        "       ./server [--certs DIR] [--crl FILE] --revoke SERIAL | --renew-crl\n"
        "  --port N           listen on port N (default %d; 0 = any free port)\n"
        "  --certs DIR        folder with the tutorial's files (default %s/):\n"
        "                     server_key.pem, server_cert.pem; the CA is server_cert.pem\n"
        "  --key FILE         the server's private key      (default DIR/localhost_key.pem\n"
        "                     if DIR/localhost_cert.pem exists, else DIR/server_key.pem)\n"
        "  --cert FILE        the server's certificate      (default DIR/localhost_cert.pem\n"
        "                     if it exists, else DIR/server_cert.pem)\n"
        "  --ca FILE          CA certificates to trust      (default DIR/server_cert.pem)\n"
        "  --crl FILE         revoked certificates (default DIR/crl.pem, if it exists)\n"
        "  --timeout SECONDS  longest time one connection may take (default %d)\n"
        "  --reject-unauthorized\n"
        "                     the tutorial's rejectUnauthorized: true: refuse a client\n"
        "                     without a trusted certificate inside the TLS handshake,\n"
        "                     with an alert and no page\n"
        "  --max-clients N    connections served at once (default %d); when all are\n"
        "                     taken, one that waits for its client is closed to make\n"
        "                     room (docs/many-visitors.md), or the\n"
        "                     newcomer waits\n"
        "  --max-per-address N  of those, from one client address or IPv6 /64 (::1\n"
        "                     alone) (default %d); more are closed at once\n"
        "Part 2, the server issues and revokes certificates (signed by DIR/server_cert.pem\n"
        "with DIR/server_key.pem):\n"
        "  --enroll           serve /enroll, /certificates, /revoke and /add-device as well\n"
        "  --invite NAME      open a new account for NAME with a one-time invitation,\n"
        "                     print its link, exit\n"
        "  --invite-hours N   how long an invitation is valid, from --invite or from\n"
        "                     /add-device (default %d)\n"
        "  --revoke SERIAL    add the certificate with this serial (hex) to the CRL, exit\n"
        "  --renew-crl        sign the CRL again with nextUpdate %d days ahead, exit\n"
        "  --help             show this help\n",
        DEFAULT_PORT, DEFAULT_CERTS_DIR, DEFAULT_TIMEOUT_S, DEFAULT_MAX_CLIENTS,
        DEFAULT_MAX_PER_ADDRESS, DEFAULT_INVITE_HOURS, CRL_DAYS);
}

/* The value of a numeric flag: a whole decimal number in [min, max], or -1
 * after an error message that names the flag. */
static long parse_number(const char *flag, const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "server: %s wants a number from %ld to %ld, not '%s'\n",
                flag, min, max, text);
        return -1;
    }
    return n;
}

static int join_path(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
    return (n < 0 || n >= PATH_MAX) ? -1 : 0;
}

static int copy_path(char *out, const char *path)
{
    int n = snprintf(out, PATH_MAX, "%s", path);
    return (n < 0 || n >= PATH_MAX) ? -1 : 0;
}

/* Returns 0 to run, 1 when --help was shown, -1 after an error message. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option flags[] = {
        {"port", required_argument, NULL, 'p'},
        {"certs", required_argument, NULL, 'd'},
        {"key", required_argument, NULL, 'k'},
        {"cert", required_argument, NULL, 'c'},
        {"ca", required_argument, NULL, 'a'},
        {"crl", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 't'},
        {"reject-unauthorized", no_argument, NULL, 'R'},
        {"max-clients", required_argument, NULL, 'm'},
        {"max-per-address", required_argument, NULL, 'M'},
        {"enroll", no_argument, NULL, 'E'},
        {"invite", required_argument, NULL, 'I'},
        {"invite-hours", required_argument, NULL, 'H'},
        {"revoke", required_argument, NULL, 'V'},
        {"renew-crl", no_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = DEFAULT_CERTS_DIR;
    const char *key = NULL, *cert = NULL, *ca = NULL, *crl = NULL;
    int c, which = -1;
    bool seen[sizeof flags / sizeof flags[0]] = {false};

    memset(o, 0, sizeof *o);
    o->port = DEFAULT_PORT;
    o->timeout_s = DEFAULT_TIMEOUT_S;
    o->max_clients = DEFAULT_MAX_CLIENTS;
    o->max_per_address = DEFAULT_MAX_PER_ADDRESS;
    o->invite_hours = DEFAULT_INVITE_HOURS;
    /* ":" and opterr = 0: getopt stays quiet and tells us what went wrong
     * (':' a value is missing, '?' an unknown flag); we word the errors. */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", flags, &which)) != -1) {
        /* As usual, a setting given twice takes its last value; but a
         * second --revoke or --invite would drop the first quietly (--revoke
         * A --revoke B revoked B alone).  An empty value names nothing. */
        if (c != ':' && c != '?' && which >= 0) {
            if (seen[which] && (c == 'V' || c == 'I')) {
                fprintf(stderr, "server: --%s is given twice; give it once (run the "
                                "command again for another)\n", flags[which].name);
                return -1;
            }
            seen[which] = true;
            if (optarg && optarg[0] == '\0') {
                fprintf(stderr, "server: --%s needs a value, not ''\n", flags[which].name);
                return -1;
            }
        }
        which = -1;
        switch (c) {
        case 'p':
            if ((o->port = (int)parse_number("--port", optarg, 0, 65535)) < 0)
                return -1;
            break;
        case 't':
            if ((o->timeout_s = (int)parse_number("--timeout", optarg, 1, 3600)) < 0)
                return -1;
            break;
        case 'd': dir = optarg; break;
        case 'k': key = optarg; break;
        case 'c': cert = optarg; break;
        case 'a': ca = optarg; break;
        case 'r': crl = optarg; break;
        case 'R': o->reject_unauthorized = true; break;
        case 'm':
            if ((o->max_clients = (int)parse_number("--max-clients", optarg, 1, 10000)) < 0)
                return -1;
            break;
        case 'M':
            if ((o->max_per_address = (int)parse_number("--max-per-address", optarg, 1, 10000)) < 0)
                return -1;
            break;
        case 'E': o->enroll = true; break;
        case 'I': o->invite_name = optarg; break;
        case 'H':
            if ((o->invite_hours = (int)parse_number("--invite-hours", optarg, 1, 24 * 365)) < 0)
                return -1;
            break;
        case 'V': o->revoke_serial = optarg; break;
        case 'W': o->renew_crl = true; break;
        case 'h': usage(stdout); return 1;
        case ':':
            fprintf(stderr, "server: %s needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "server: unknown flag '%s' (see --help)\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "server: unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    if (o->invite_name && o->invite_name[0] == '-') {
        fprintf(stderr, "server: --invite wants a name, not the flag '%s'\n", o->invite_name);
        return -1;
    }
    if (o->invite_name && o->port == 0) {
        fprintf(stderr, "server: --invite prints a link to the server's --port; 0 is none\n");
        return -1;
    }
    if ((o->invite_name != NULL) + (o->revoke_serial != NULL) + o->renew_crl + o->enroll > 1) {
        fprintf(stderr, "server: --invite, --revoke, --renew-crl and --enroll go one at a time\n");
        return -1;
    }
    if (o->enroll && o->reject_unauthorized) {
        /* an invited visitor has no certificate yet: REQUIRE would refuse them */
        fprintf(stderr, "server: --enroll serves visitors without a certificate; it can't go "
                        "with --reject-unauthorized\n");
        return -1;
    }
    /* The tutorial presents server_cert.pem and trusts it as the CA:
     * ca: [server_cert].  Firefox refuses a CA's certificate as a web
     * server's, so where gencerts.sh made localhost_cert.pem (signed by
     * server_cert.pem, CA:FALSE) we present that instead, with its key. */
    char own[PATH_MAX];
    bool own_cert = !key && !cert && join_path(own, dir, "localhost_cert.pem") == 0 &&
                    access(own, F_OK) == 0;
    const char *default_key = own_cert ? "localhost_key.pem" : "server_key.pem";
    const char *default_cert = own_cert ? "localhost_cert.pem" : "server_cert.pem";
    if ((key ? copy_path(o->key_file, key) : join_path(o->key_file, dir, default_key)) < 0 ||
        (cert ? copy_path(o->cert_file, cert) : join_path(o->cert_file, dir, default_cert)) < 0 ||
        (ca ? copy_path(o->ca_file, ca) : join_path(o->ca_file, dir, "server_cert.pem")) < 0 ||
        (crl ? copy_path(o->crl_file, crl) : join_path(o->crl_file, dir, "crl.pem")) < 0 ||
        copy_path(o->certs_dir, dir) < 0 ||
        join_path(o->issuer_cert_file, dir, "server_cert.pem") < 0 ||
        join_path(o->issuer_key_file, dir, "server_key.pem") < 0) {
        fprintf(stderr, "server: a file name is longer than %d bytes\n", PATH_MAX - 1);
        return -1;
    }
    /* Failing closed across a restart too: once this server has issued a
     * certificate here (issued/) or revoked one (crl.pem.lock), crl.pem
     * holds revocations that must not be forgotten, so it must be there. */
    char issued[PATH_MAX], lock[PATH_MAX + 8];
    snprintf(lock, sizeof lock, "%s.lock", o->crl_file);
    o->crl_required = crl != NULL ||
                      (join_path(issued, dir, "issued") == 0 && access(issued, F_OK) == 0) ||
                      access(lock, F_OK) == 0;
    return 0;
}


/* ======================= 17. main() ======================================= */

static void free_server(struct server *srv)
{
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    if (srv->priorities)
        gnutls_priority_deinit(srv->priorities);
}

int main(int argc, char **argv)
{
    struct options opt;
    struct server srv = {.listen_fd = -1};
    int port;

    switch (parse_options(argc, argv, &opt)) {
    case 1: return 0;
    case -1: return 2;
    }
    /* part 2's one-shot commands */
    if (opt.invite_name)
        return invite(&opt);
    if (opt.revoke_serial || opt.renew_crl)
        return revoke_from_command_line(&opt);

    /* before the first line of the log: a closed log pipe (section 11) */
    signal(SIGPIPE, SIG_IGN);
    struct issuer ca = {NULL, NULL};
    srv.timeout_ms = opt.timeout_s * 1000;
    srv.opts = &opt;
    srv.reject_unauthorized = opt.reject_unauthorized;
    if ((opt.enroll && load_issuer(&opt, &ca) < 0) || load_first_creds(&opt) < 0 ||
        load_priorities(&srv) < 0 || install_signal_handlers() < 0 || make_slots(&opt) < 0 ||
        (srv.listen_fd = open_listener(opt.port, &port)) < 0) {
        free_slots();
        free_creds();
        free_server(&srv);
        free_issuer(&ca);
        return 1;
    }
    if (opt.enroll) {
        enrolled_ca = &ca;
        fprintf(stderr, "server: --enroll: invited visitors get certificates signed by %s\n",
                opt.issuer_cert_file);
    }
    if (opt.reject_unauthorized)
        fprintf(stderr, "server: --reject-unauthorized: a client without a trusted certificate "
                        "is refused in the handshake, with no page\n");
    if (getenv("SSLKEYLOGFILE"))    /* GnuTLS honours it, for servers too: say so */
        fprintf(stderr, "server: SSLKEYLOGFILE is set: GnuTLS writes every session's secrets "
                        "there, and they decrypt every connection; never on a real server\n");
    fprintf(stderr, "server: listening on https://localhost:%d/ (Ctrl-C stops)\n", port);
    int status = log_start() < 0 || accept_loop(&srv) < 0 ? 1 : 0;
    log_say("stopped");
    log_stop();
    free_slots();
    free_creds();
    free_server(&srv);
    free_issuer(&ca);
    return status;
}
