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
 * This file does the same with GnuTLS and the C library.
 *
 * FIRST READING: the lesson, sections 1 to 6, in the tutorial's order.
 *
 *   1. credentials: key, certificate, trusted CAs   opts = { key, cert, ca }
 *   2. the session: ask for a client certificate    requestCert, rejectUnauthorized
 *   3. when the handshake fails: a TLS alert        (the "cryptic error" the tutorial avoids)
 *   4. the certificate check                        req.client.authorized, getPeerCertificate()
 *   5. the answers                                  app.get(...), res.send(...)
 *   6. one connection, start to end
 *
 * Skip the rest on a first pass: it is THE MACHINERY, what a real server
 * needs that express and Node did for the tutorial (sections 7 to 12: the
 * deadline on every connection, the log, HTTP by hand, the accept loop and
 * its worker threads, the command line, main).  Come back to 7, 8 and
 * 10 to see why a slow or hostile client can't hold the server, forge its
 * log, or keep others out.
 *
 * Build and run:  make && ./server      Try it:  ./test.sh, or README.md.
 */

#define _GNU_SOURCE     /* ppoll */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#define DEFAULT_PORT      9999      /* the tutorial's listen(9999) */
#define DEFAULT_CERTS_DIR "certs"   /* where gencerts.sh writes */
#define DEFAULT_TIMEOUT_S 5         /* longest time one client may take */
#define DEFAULT_MAX_CLIENTS 64      /* connections in flight (section 10 says why) */
#define DEFAULT_MAX_PER_ADDRESS 8   /* of those, from one client address */
#define MAX_REQUEST_HEAD  8192      /* request line + headers, in bytes */

/* ========================================================================== */
/*                        THE LESSON: the tutorial in C                       */
/* ========================================================================== */

/* ======================= 1. Credentials ================================== */
/*
 * Tutorial: const opts = { key: ..., cert: ..., ca: [ server_cert.pem ] }.
 * Loaded once at start-up and shared by every session: loading them per
 * connection would redo the key check and double the cost of a handshake.
 */

/* The files behind opts; the command line (section 11) fills them in. */
struct options {
    int port;                    /* 0 = any free port (the tests use it) */
    int timeout_s;
    char key_file[PATH_MAX];     /* localhost_key.pem, or the tutorial's server_key.pem */
    char cert_file[PATH_MAX];    /* localhost_cert.pem, or the tutorial's server_cert.pem */
    char ca_file[PATH_MAX];      /* the CAs whose clients we admit: server_cert.pem */
    char crl_file[PATH_MAX];     /* certificates those CAs revoked */
    bool crl_required;           /* --crl given: the file must be there */
    bool reject_unauthorized;    /* the tutorial's other choice (section 2) */
    int max_clients;             /* connections in flight at most (section 10) */
    int max_per_address;         /* of those, from one address */
};

/*
 * TLS policy, beyond the tutorial:
 * - TLS 1.2 and 1.3 only: 1.0 and 1.1 are deprecated (RFC 8996), and GnuTLS
 *   3.7's "NORMAL" still offers them.
 * - No session resumption.  A resumed session carries the identity proved
 *   in an earlier handshake, without fresh proof that the client still holds
 *   the key, and it skips today's date and revocation checks.  GnuTLS only
 *   resumes when asked to, so we simply never ask: no session tickets
 *   (gnutls_session_ticket_enable_server) and no session cache (gnutls_db_*).
 * - No renegotiation: a TLS 1.2 client that asks for a new handshake ends
 *   its connection (see read_request_head); we never call gnutls_handshake
 *   twice.
 */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* What every connection shares, read-only.  The credentials themselves
 * (opts, loaded) are handed to each connection as it starts (section 10):
 * they are loaded anew when crl.pem changes. */
struct server {
    const struct options *opts;
    gnutls_priority_t priorities;
    int listen_fd;
    int timeout_ms;
};

/* GnuTLS's "Error while reading file" does not say which one; we do. */
static int check_readable(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "server: cannot read the %s %s: %s\n", what, path, strerror(errno));
        if (errno == ENOENT)
            fprintf(stderr, "server: run ./gencerts.sh (or make) to create the tutorial's files\n");
        return -1;
    }
    fclose(f);
    return 0;
}

/* opts, loaded into fresh credentials.  Returns 0, or -1 after a message
 * that names the file.  Section 10 calls it again when crl.pem changes. */
static int load_credentials(gnutls_certificate_credentials_t *out, const struct options *o)
{
    gnutls_certificate_credentials_t creds;
    int ret;

    if (check_readable(o->key_file, "server key") < 0 ||
        check_readable(o->cert_file, "server certificate") < 0 ||
        check_readable(o->ca_file, "CA certificate") < 0)
        return -1;

    ret = gnutls_certificate_allocate_credentials(&creds);
    if (ret < 0) {
        fprintf(stderr, "server: credentials: %s\n", gnutls_strerror(ret));
        return -1;
    }
    /* key + cert: what the server shows every client. GnuTLS also checks here
     * that the key belongs to the certificate. */
    ret = gnutls_certificate_set_x509_key_file(creds, o->cert_file, o->key_file,
                                               GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        fprintf(stderr, "server: cannot use %s with %s: %s\n",
                o->cert_file, o->key_file, gnutls_strerror(ret));
        goto fail;
    }
    fprintf(stderr, "server: presenting %s\n", o->cert_file);
    /* ca: the issuers whose clients we admit. It returns how many certificates
     * it read; a file with none is an error for us, not for GnuTLS. */
    ret = gnutls_certificate_set_x509_trust_file(creds, o->ca_file, GNUTLS_X509_FMT_PEM);
    if (ret <= 0) {
        fprintf(stderr, "server: no CA certificate in %s: %s\n", o->ca_file,
                ret < 0 ? gnutls_strerror(ret) : "the file holds no PEM certificate");
        goto fail;
    }
    /* Beyond the tutorial: a CA takes back certificates by listing them in
     * a CRL; without it, a revoked certificate would still be admitted.
     * VERIFY_CRLS makes GnuTLS check, as it loads the CRL, that one of the
     * CAs above signed it, so a stray file is an error now, not a silent
     * no-op later. */
    if (o->crl_required || access(o->crl_file, F_OK) == 0) {
        if (check_readable(o->crl_file, "certificate revocation list") < 0)
            goto fail;
        gnutls_certificate_set_flags(creds, GNUTLS_CERTIFICATE_VERIFY_CRLS);
        ret = gnutls_certificate_set_x509_crl_file(creds, o->crl_file, GNUTLS_X509_FMT_PEM);
        if (ret <= 0) {
            fprintf(stderr, "server: no usable CRL in %s: %s\n", o->crl_file,
                    ret < 0 ? gnutls_strerror(ret) : "the file holds no PEM CRL");
            goto fail;
        }
        fprintf(stderr, "server: revoked certificates are listed in %s\n", o->crl_file);
    } else {
        fprintf(stderr, "server: no %s: revocation is not checked\n", o->crl_file);
    }
    *out = creds;
    return 0;
fail:
    gnutls_certificate_free_credentials(creds);
    return -1;
}

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

static void free_server(struct server *srv)
{
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    if (srv->priorities)
        gnutls_priority_deinit(srv->priorities);
}

/* ======================= 2. The session ================================== */

/* Everything we know about one connection; it ends as one log line. */
struct connection {
    int fd;
    gnutls_certificate_credentials_t creds;    /* opts, as loaded when it began */
    struct timespec deadline;   /* the whole exchange must end by then */
    unsigned long bytes_in;     /* how much the client sent us */
    char peer[INET6_ADDRSTRLEN];
    const char *tls_version;    /* "TLS1.3", once the handshake is done */
    char request_line[160];     /* as the client sent it, escaped by log_escape */
    int status;                 /* HTTP status sent, 0 if none */
    char note[640];             /* who the client is, or what went wrong */
};

/* What the lesson uses from the machinery below section 6. */
static atomic_int stop_requested;               /* SIGINT or SIGTERM came */
static void use_deadline_transport(gnutls_session_t s, struct connection *conn, int timeout_ms);
static void note(struct connection *conn, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
static void log_escape(char *out, size_t cap, const char *text, size_t len);

/*
 * Tutorial: requestCert: true, rejectUnauthorized: false.
 *
 * GNUTLS_CERT_REQUEST asks for a certificate and lets the handshake finish
 * without one, or with one we don't trust, so that section 4 can look at it
 * and answer 401 or 403 with a page.
 *
 * The tutorial's other choice, rejectUnauthorized: true, is two things in
 * GnuTLS (./server --reject-unauthorized shows it):
 *   GNUTLS_CERT_REQUIRE         a handshake without a certificate fails;
 *   gnutls_session_set_verify_cert2
 *                               a certificate that does not verify fails it
 *                               too.  REQUIRE alone does not check trust:
 *                               Bob's self-signed certificate would pass.
 * Either failure ends the handshake with a TLS alert (section 3), before
 * any page can be sent: the browser shows its own error, the "cryptic
 * HTTPS error message (ERR_BAD_SSL_CLIENT_AUTH_CERT)" the tutorial avoids.
 *
 * Either way, the request carries the names of our trusted CAs, and a
 * browser offers only certificates from them: the tutorial's "only Alice's
 * certificate is in the list".
 */
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

    if (!srv->opts->reject_unauthorized) {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
    } else {
        static gnutls_typed_vdata_st purpose = {
            .type = GNUTLS_DT_KEY_PURPOSE_OID,
            .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT,
        };
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert2(s, &purpose, 1, 0);
    }
    use_deadline_transport(s, conn, srv->timeout_ms);
    *out = s;
    return 0;

fail_session:
    gnutls_deinit(s);
fail:
    note(conn, "session setup: %s", gnutls_strerror(ret));
    return -1;
}

/* ======================= 3. When the handshake fails: an alert ============ */
/*
 * An alert is how TLS says "no".  When a handshake fails (a version we don't
 * speak, no cipher suite in common, a message that does not parse, a
 * signature that does not verify), RFC 8446 section 6 and RFC 5246 section
 * 7.2 say the side that found the problem MUST send an alert saying which.
 * GnuTLS leaves that to the application: without this, the client sees
 * only a closed connection ("unexpected eof") and cannot tell why.
 * gnutls_alert_send_appropriate picks the alert GnuTLS maps the error to.
 * We send none when there is nobody left to tell: the client closed, reset
 * or sent its own alert, the deadline has passed, or the server is stopping.
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
           err == GNUTLS_E_INTERRUPTED || stop_requested;
}

/* The TLS layer failed with err: tell the client with an alert when it can
 * still hear one, and note "WHAT: WHY (sent alert NAME)" for the log. */
static void tls_failure(gnutls_session_t s, struct connection *conn, const char *what,
                        const char *why, int err)
{
    char name[40];
    if (stop_requested)
        return;     /* our own stop cut it short: the log says "dropped" */
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

/* ======================= 4. The certificate check ======================== */
/*
 * Tutorial: req.client.authorized, and req.connection.getPeerCertificate().
 * The handshake has finished whatever the client sent (GNUTLS_CERT_REQUEST);
 * now we look at what it was.
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

enum dn_of { SUBJECT, ISSUER };

/* The common name (CN) of the subject or issuer, whatever its length: ask
 * for the size first, then read it.  With no CN, the whole distinguished
 * name stands in, so the page still says who it was. */
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
            unescape_dn_value(cn);
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

/*
 * req.client.authorized.  Decide on the verification status, never on the
 * return value alone: a certificate from an unknown issuer verifies
 * "successfully" (0) with a status that says it is not trusted.  status
 * starts as INVALID so that any path we did not foresee refuses.
 *
 * The purpose check (TLS WWW client) refuses a certificate our CA made for
 * servers only; one without any extended key usage may serve any purpose.
 */
static void check_client_certificate(gnutls_session_t s, struct identity *id)
{
    gnutls_typed_vdata_st purpose = {
        .type = GNUTLS_DT_KEY_PURPOSE_OID,
        .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT,
    };
    unsigned int status = GNUTLS_CERT_INVALID;
    gnutls_datum_t text = {NULL, 0};

    memset(id, 0, sizeof *id);
    int ret = gnutls_certificate_verify_peers(s, &purpose, 1, &status);
    if (ret == GNUTLS_E_NO_CERTIFICATE_FOUND)
        return;                                 /* no certificate at all */
    id->presented = true;
    id->authorized = ret == 0 && status == 0;   /* req.client.authorized */
    if (!id->authorized)
        id->page_reason = ret < 0 ? strdup("it could not be verified") : refusal_words(status);

    if (ret < 0)
        id->log_reason = strdup(gnutls_strerror(ret));
    else if (status != 0 &&
             gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0)
        id->log_reason = copy_datum(&text);
    for (size_t n = id->log_reason ? strlen(id->log_reason) : 0;
         n > 0 && id->log_reason[n - 1] == ' '; n--)
        id->log_reason[n - 1] = '\0';      /* GnuTLS ends its sentences with a space */

    ret = read_names(s, id);
    if (ret < 0 && id->authorized) {
        /* trusted, yet unreadable: refuse rather than greet "(null)" */
        id->authorized = false;
        free(id->log_reason);
        id->log_reason = strdup(gnutls_strerror(ret));
        id->page_reason = strdup("its names could not be read");
    }
}

static void free_identity(struct identity *id)
{
    free(id->subject_cn);
    free(id->issuer_cn);
    free(id->subject_dn);
    free(id->page_reason);
    free(id->log_reason);
}

/* ======================= 5. The answers ================================== */

/* What the HTTP machinery (section 9) found in the request. */
struct request {
    const char *method;
    size_t method_len;
    const char *path;           /* the target without its ?query */
    size_t path_len;
    const char *problem;        /* why the head is malformed, for the log */
};

static bool path_is(const struct request *req, const char *path)
{
    return req->path_len == strlen(path) && memcmp(req->path, path, req->path_len) == 0;
}

static bool method_is(const struct request *req, const char *method)
{
    return req->method_len == strlen(method) && memcmp(req->method, method, req->method_len) == 0;
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

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 505: return "HTTP Version Not Supported";
    default: return "Internal Server Error";
    }
}

/* What the log says of the visitor.  The DN is the certificate maker's
 * text, and GnuTLS's sentence quotes from the certificate too: both go
 * through log_escape (section 8). */
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

/* Tutorial: app.get('/authenticate', ...), its three answers.  Sets *status. */
static char *authenticate_page(gnutls_session_t s, struct connection *conn, int *status)
{
    struct identity id;
    char *page = NULL, *who = NULL, *issuer = NULL;

    check_client_certificate(s, &id);
    note_visitor(conn, &id);
    if (id.presented) {
        /* whoever makes a certificate chooses its names: escape them for HTML */
        who = html_escape(id.subject_cn ? id.subject_cn : "stranger");
        issuer = html_escape(id.issuer_cn ? id.issuer_cn : "an unknown issuer");
        if (who == NULL || issuer == NULL)
            goto out;
    }
    if (id.authorized) {                    /* if (req.client.authorized) */
        *status = 200;
        page = format_text("Hello %s, your certificate was issued by %s!", who, issuer);
    } else if (id.presented) {              /* else if (cert.subject) */
        *status = 403;
        /* the tutorial's sentence, then why */
        page = format_text("Sorry %s, certificates from %s are not welcome here.\n"
                           "<p>Refused because %s.</p>",
                           who, issuer, id.page_reason ? id.page_reason : "it is not trusted");
    } else {
        *status = 401;
        page = strdup("Sorry, but you need to provide a client certificate to continue.");
    }
out:
    free(who);
    free(issuer);
    free_identity(&id);
    return page;
}

/* Route the request (tutorial: app.get('/') and app.get('/authenticate'))
 * and return the page; *status says which answer it is. */
static char *route(gnutls_session_t s, struct connection *conn,
                   const struct request *req, int *status)
{
    if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
        *status = 405;
    } else if (path_is(req, "/")) {
        *status = 200;      /* the landing page: unprotected, for everyone */
        return strdup("<a href=\"authenticate\">Log in using client certificate</a>");
    } else if (path_is(req, "/authenticate")) {
        return authenticate_page(s, conn, status);
    } else {
        *status = 404;
    }
    return format_text("%d %s", *status, status_text(*status));
}

/* The answer to send: its status, its page, and whether it is for HEAD. */
struct answer {
    int status;
    char *page;
    bool head_only;
};

static int read_request_head(gnutls_session_t s, struct connection *conn,
                             char *buf, size_t cap, const char **head, size_t *head_len);
static int parse_request(const char *head, size_t len, struct request *req);

/* What express does for the tutorial: read the request, check its form, and
 * route it, or pick the error that says what is wrong with it.  Returns -1
 * when there is no request to answer (the client left, or TLS failed). */
static int answer_request(gnutls_session_t s, struct connection *conn, struct answer *ans)
{
    char buf[MAX_REQUEST_HEAD];
    const char *head;
    size_t head_len = 0;
    struct request req;

    int ret = read_request_head(s, conn, buf, sizeof buf, &head, &head_len);
    if (ret < 0)
        return -1;
    ans->status = ret > 0 ? ret : parse_request(head, head_len, &req);   /* 414, 431; 400, 505 */
    if (ans->status == 0) {
        ans->head_only = method_is(&req, "HEAD");
        ans->page = route(s, conn, &req, &ans->status);
    } else {
        if (ret == 0)
            note(conn, "%s", req.problem);
        ans->page = format_text("%d %s", ans->status, status_text(ans->status));
    }
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
        if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && !stop_requested)
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
static int send_response(gnutls_session_t s, struct connection *conn, int status,
                         const char *body, bool head_only)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));

    /* Cache-Control: the page depends on the certificate, so no cache may
     * hand Alice's greeting to the next visitor. */
    char *msg = format_text("HTTP/1.1 %d %s\r\n"
                            "Date: %s\r\n"
                            "Content-Type: text/html; charset=utf-8\r\n"
                            "Content-Length: %zu\r\n"
                            "Cache-Control: no-store\r\n"
                            "%s"
                            "Connection: close\r\n"
                            "\r\n"
                            "%s\n",
                            status, status_text(status), date, strlen(body) + 1,
                            status == 405 ? "Allow: GET, HEAD\r\n" : "",
                            head_only ? "" : body);
    if (msg == NULL)
        return GNUTLS_E_MEMORY_ERROR;
    size_t len = strlen(msg) - (head_only ? 1 : 0);    /* HEAD: not even the newline */
    int ret = send_all(s, msg, len);
    free(msg);
    if (ret == 0)
        conn->status = status;
    return ret;
}

/* ======================= 6. One connection, start to end ================= */

static void set_deadline(struct connection *conn, int timeout_ms);
static void linger_close(struct connection *conn);
static void log_connection(const struct connection *conn);

/* Handshake, read the request, answer it, close.  Every failure ends this
 * connection only; it is logged and the accept loop goes on. */
static void serve_connection(const struct server *srv, gnutls_certificate_credentials_t creds,
                             int fd, const char *peer)
{
    struct connection conn = {.fd = fd, .creds = creds};
    struct answer ans = {0};
    gnutls_session_t s = NULL;
    int ret;

    snprintf(conn.peer, sizeof conn.peer, "%s", peer);
    set_deadline(&conn, srv->timeout_ms);
    if (start_session(srv, &conn, &s) < 0)
        goto out;

    /* The TLS handshake: the client's certificate, if any, arrives here. */
    do {
        ret = gnutls_handshake(s);
    } while (ret < 0 && !gnutls_error_is_fatal(ret) && !stop_requested);
    if (ret == GNUTLS_E_PREMATURE_TERMINATION && !stop_requested) {
        /* Not a failure: browsers open spare connections ahead of need and
         * close the ones they don't use, some before a word, some after
         * their ClientHello.  GnuTLS calls it "non-properly terminated". */
        note(&conn, conn.bytes_in == 0 ? "closed before a handshake began"
                                       : "the client left during the handshake");
        goto out;
    }
    if (ret < 0) {
        tls_failure(s, &conn, "handshake failed", gnutls_strerror(ret), ret);
        goto out;
    }
    conn.tls_version = gnutls_protocol_get_name(gnutls_protocol_get_version(s));

    /* The request, the certificate check, the page: sections 4 and 5. */
    if (answer_request(s, &conn, &ans) < 0)
        goto out;
    ret = send_response(s, &conn, ans.status, ans.page, ans.head_only);   /* res.send */
    if (ret < 0) {
        tls_failure(s, &conn, "sending the answer failed", gnutls_strerror(ret), ret);
        goto out;
    }
    /* close_notify tells the client the answer is complete; SHUT_WR does not
     * wait for the client's own, since we close anyway. */
    ret = gnutls_bye(s, GNUTLS_SHUT_WR);
    if (ret < 0)
        note(&conn, "close_notify: %s", gnutls_strerror(ret));
out:
    /* after an answer or an alert: let the client read it before we close */
    linger_close(&conn);
    if (conn.status == 0 && stop_requested)
        note(&conn, "dropped: the server is stopping");
    log_connection(&conn);
    free(ans.page);
    if (s)
        gnutls_deinit(s);
}

/* ========================================================================== */
/*       THE MACHINERY: what a real server needs that the tutorial's          */
/*       express and Node did for it.  Skip it on a first reading.            */
/* ========================================================================== */

/* ======================= 7. Deadlines: the transport ===================== */
/*
 * GnuTLS's own timeouts restart whenever a byte arrives, so a client that
 * dribbles one byte a second could hold a connection's thread (section 10)
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

/* Wait until the socket is ready for `events` or the deadline (or `limit_ms`)
 * passes: 1 = ready, 0 = time is up, -1 with errno EINTR = the server is
 * stopping, -1 with another errno = poll failed.  (A stop also shuts the
 * socket down, section 10, so a wait in progress ends at once.) */
static int wait_ready(struct connection *conn, short events, long limit_ms)
{
    for (;;) {
        long left = ms_left(conn);
        if (stop_requested) {
            errno = EINTR;
            return -1;
        }
        if (left <= 0)
            return 0;
        if (limit_ms >= 0 && limit_ms < left)
            left = limit_ms;
        struct pollfd p = {.fd = conn->fd, .events = events};
        int n = poll(&p, 1, (int)left);
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

/* GnuTLS hands over a whole flight of records at once (in TLS 1.3, seven
 * from ServerHello to Finished): one sendmsg() sends them in one segment,
 * where a send() per record would cost a system call and a packet each.
 * We try at once and wait only when the client's window is full: a client
 * that stops reading holds us until the deadline, no longer.
 * MSG_NOSIGNAL: a client that resets the connection makes sendmsg() fail
 * with EPIPE instead of raising SIGPIPE, which would kill the whole server. */
static ssize_t transport_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
    struct connection *conn = ptr;
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    for (;;) {
        ssize_t n = sendmsg(conn->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
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
 * (at most a second, never past the deadline, not at all when stopping). */
static void linger_close(struct connection *conn)
{
    char sink[4096];
    shutdown(conn->fd, SHUT_WR);
    while (!stop_requested && wait_ready(conn, POLLIN, 1000) == 1 &&
           recv(conn->fd, sink, sizeof sink, 0) > 0)
        continue;
}

/* ======================= 8. The log: one line per connection ============= */
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

/* Characters that are valid UTF-8 yet rearrange or break what a terminal or
 * a log viewer shows: C1 controls, line and paragraph separators, and the
 * bidirectional overrides ("Trojan Source") that make text read backwards. */
static bool deceptive(const unsigned char *s, size_t len)
{
    if (len == 2)
        return s[0] == 0xc2 && s[1] < 0xa0;                 /* U+0080-U+009F */
    if (len == 3 && s[0] == 0xe2 && s[1] == 0x80)
        return s[2] == 0x8e || s[2] == 0x8f ||              /* U+200E, U+200F */
               (s[2] >= 0xa8 && s[2] <= 0xae);              /* U+2028-U+202E */
    if (len == 3 && s[0] == 0xe2 && s[1] == 0x81)
        return s[2] >= 0xa6 && s[2] <= 0xa9;                /* U+2066-U+2069 */
    return len == 2 && s[0] == 0xd8 && s[1] == 0x9c;        /* U+061C */
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

/* One write() per line, so that lines never mix, whoever else writes. */
static void log_connection(const struct connection *conn)
{
    char line[1024];
    size_t len = format_log_line(conn, line, sizeof line);
    if (write(STDERR_FILENO, line, len) < 0)
        return;     /* nowhere left to say it */
}

/* ======================= 9. HTTP: the request, by hand =================== */
/*
 * A minimal HTTP/1.1 server side (RFC 9112): read the request head (request
 * line and header fields, up to an empty line), check its form, find method
 * and path.  We never read a body: every answer closes the connection.
 */

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

/* The request line as the log shows it (log_escape keeps it on its line). */
static void remember_request_line(struct connection *conn, const char *buf, size_t len)
{
    size_t n = 0;
    while (n < len && buf[n] != '\r' && buf[n] != '\n')
        n++;
    log_escape(conn->request_line, sizeof conn->request_line, buf, n);
}

/* Read until the head is complete; *head is where it starts in buf, past
 * any empty lines.  Returns 0 when it is complete, 414 or 431 when it
 * outgrows the buffer (the status to answer), -1 when the client is gone. */
static int read_request_head(gnutls_session_t s, struct connection *conn,
                             char *buf, size_t cap, const char **head, size_t *head_len)
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
        if ((n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) && !stop_requested)
            continue;
        if (n == 0 && !stop_requested)
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
    remember_request_line(conn, buf + skip, used - skip);
    return result;
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
         * where it and Host differ, it wins (RFC 9112 3.2.3), and Host is
         * not compared with it. */
        t += end;
        n -= end;
    }
    const char *query = memchr(t, '?', n);
    req->path_len = query ? (size_t)(query - t) : n;
    req->path = req->path_len > 0 ? t : "/";   /* "https://host" is "/" */
    req->path_len = req->path_len > 0 ? req->path_len : 1;
    return 0;
}

/* Check the head's form and find method and path.  Returns 0, or the HTTP
 * status that explains what is wrong (400, 505). */
static int parse_request(const char *head, size_t len, struct request *req)
{
    const char *p = head, *end = head + len, *line;
    size_t n;

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
    int hosts = 0;
    while (next_line(&p, end, &line, &n) && n > 0) {
        const char *colon = memchr(line, ':', n);
        if (colon == NULL || !all_tchars(line, (size_t)(colon - line)) ||
            !valid_field_value(colon + 1, n - (size_t)(colon + 1 - line)))
            return malformed(req, 400, "bad header line");  /* also obsolete line folding */
        if (colon - line == 4 && strncasecmp(line, "host", 4) == 0) {
            const char *v = colon + 1, *v_end = line + n;
            while (v < v_end && (*v == ' ' || *v == '\t'))
                v++;
            while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
                v_end--;
            if (!valid_authority(v, (size_t)(v_end - v)))
                return malformed(req, 400, "bad Host header");  /* RFC 9112 3.2 */
            hosts++;
        }
    }
    /* RFC 9112 3.2: HTTP/1.1 needs exactly one Host; HTTP/1.0 may omit it */
    if (hosts > 1)
        return malformed(req, 400, "more than one Host header");
    if (hosts == 0 && version[7] != '0')
        return malformed(req, 400, "HTTP/1.1 request without Host header");
    return 0;
}

/* ======================= 10. The listener and the accept loop ============ */
/*
 * Tutorial: https.createServer(opts, app).listen(9999).  Like Node, we
 * listen on every address, IPv6 and IPv4 on one socket where the system has
 * IPv6.
 *
 * Many visitors at once.  Node serves them all on one event loop.  Here the
 * accept loop hands each connection to a worker thread and goes straight
 * back to accept(), so serve_connection stays one straight, blocking story
 * with its own deadline, and a visitor who connects and says nothing holds
 * one worker, not the server.  Threads, not processes: on these 2-core
 * machines a thread costs tens of microseconds to start, where fork, exit and
 * waitpid cost 0.26-0.4 ms, 15-25% of a whole ECDSA connection; and GnuTLS
 * lets threads share credentials and priorities read-only (its manual,
 * "Thread safety"), while each session stays in the thread that made it.
 * A worker is started the first time its slot is needed and then kept for
 * the next connection, not one thread per connection: GnuTLS 3.7 keeps a
 * random generator per thread that has used it and frees them only at
 * exit (about 0.2 KiB each, measured), so a new thread for every connection
 * would make the server grow without end.  At most --max-clients workers.
 *
 * What the threads share, and how:
 *   - srv (credentials, priorities, settings): loaded before the first
 *     thread starts, read-only after;
 *   - the slots below, one per worker: under clients.lock;
 *   - the log: one write() per line (section 8), so lines never mix;
 *   - stop_requested: an atomic flag.
 * Bounds, so that concurrency is not a new way to exhaust the machine:
 *   --max-clients (64): connections in flight.  At the cap the loop stops
 *     accepting until one ends, and new clients wait in the kernel's backlog.
 *     64 is far more than 2 cores can handshake at once with the tutorial's
 *     RSA-4096 key (about 15 ms of CPU each), and 64 idle connections cost
 *     a few MB (README, "Many visitors at once").
 *   --max-per-address (8): a connection over it is closed at once, so that
 *     one visitor can't take every slot: with 100 idle sockets from one
 *     address, Alice from another still gets in.
 * Signals: SIGINT and SIGTERM are blocked in every thread, and let through
 * only while the accept loop waits in ppoll(), so they are handled in this
 * one place, and one that comes between the loop's look at stop_requested
 * and its wait is not lost: it ends the wait at once.
 */

/*
 * Revoking without a restart.  When crl.pem changes (an operator, or part 2,
 * revokes a certificate), the next connection must see it.  Adding a CRL to
 * credentials that other threads are verifying with is not safe in GnuTLS,
 * so the accept loop loads a whole new set (section 1's load_credentials)
 * and swaps it in: connections already running finish with the set they
 * started with, and a set is freed when the last of its users is done.
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
    const struct server *srv;
    struct shared_creds *creds;
};

static struct {
    pthread_mutex_t lock;           /* guards every slot, and stopping */
    struct slot *slots;
    int count;
    bool stopping;
    int done_pipe[2];               /* a worker writes a byte here when it is free again */
    time_t refused_logged;          /* when the last refusal was logged */
    unsigned long refused_unlogged; /* refusals since, not logged */
    struct shared_creds *creds;     /* the set new connections get */
    struct stat crl_seen;           /* crl.pem as it was when that set was loaded */
} clients = {.lock = PTHREAD_MUTEX_INITIALIZER};

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
    struct shared_creds *sc = calloc(1, sizeof *sc);
    if (sc == NULL || load_credentials(&sc->creds, o) < 0) {
        free(sc);
        return -1;
    }
    sc->users = 1;
    clients.creds = sc;
    if (stat(o->crl_file, &clients.crl_seen) < 0)
        memset(&clients.crl_seen, 0, sizeof clients.crl_seen);
    return 0;
}

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Before each new connection: if crl.pem is not as it was, load a new set
 * and make it current.  A set that fails to load (a CRL half written, or
 * signed by no CA of ours) changes nothing: the old one stays, and the next
 * change is tried again.  Only the accept loop calls this. */
static void reload_if_crl_changed(const struct options *o)
{
    struct stat now;
    if (stat(o->crl_file, &now) < 0)
        memset(&now, 0, sizeof now);
    if (same_file_state(&now, &clients.crl_seen))
        return;
    fprintf(stderr, "server: %s changed: loading the credentials anew\n", o->crl_file);
    struct shared_creds *sc = calloc(1, sizeof *sc);
    if (sc == NULL || load_credentials(&sc->creds, o) < 0) {
        fprintf(stderr, "server: keeping the credentials loaded before\n");
        free(sc);
        return;
    }
    sc->users = 1;
    clients.crl_seen = now;
    pthread_mutex_lock(&clients.lock);
    release_creds(clients.creds);
    clients.creds = sc;
    pthread_mutex_unlock(&clients.lock);
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

static int in_flight_from(const char *peer)
{
    int n = 0;
    pthread_mutex_lock(&clients.lock);
    for (int i = 0; i < clients.count; i++)
        n += clients.slots[i].busy && strcmp(clients.slots[i].peer, peer) == 0;
    pthread_mutex_unlock(&clients.lock);
    return n;
}

/* Over --max-per-address: close at once, and say so, but at most one line a
 * second, so that a flood of refused connections is not a flood of the log. */
static void refuse_busy_address(int fd, const char *peer, int max)
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
    note(&conn, "refused at once: %d connections from this address already (--max-per-address)",
         max);
    if (clients.refused_unlogged > 0)
        note(&conn, "%lu more refused before, not logged", clients.refused_unlogged);
    log_connection(&conn);
    clients.refused_logged = now.tv_sec;
    clients.refused_unlogged = 0;
}

/* Hand the connection to the slot's worker, starting the worker first if
 * this slot never had one. */
static void start_connection(struct slot *slot, const struct server *srv, int fd,
                             const char *peer)
{
    pthread_mutex_lock(&clients.lock);
    if (!slot->started) {
        int ret = pthread_create(&slot->thread, NULL, worker, slot);
        if (ret != 0) {
            pthread_mutex_unlock(&clients.lock);
            fprintf(stderr, "server: no thread for a client from %s: %s\n", peer, strerror(ret));
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
    pthread_cond_signal(&slot->work);
    pthread_mutex_unlock(&clients.lock);
}

/* Stopping: the connections in flight are cut short (shutdown ends their
 * waits at once, and each logs "dropped: the server is stopping"), every
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
    fprintf(stderr, "server: %s: %s\n", what, strerror(errno));
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000000L}, NULL);
}

static int accept_loop(const struct server *srv)
{
    clients.count = srv->opts->max_clients;
    clients.slots = calloc((size_t)clients.count, sizeof *clients.slots);
    if (clients.slots == NULL || pipe2(clients.done_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        fprintf(stderr, "server: %s\n", strerror(errno ? errno : ENOMEM));
        free(clients.slots);
        return -1;
    }
    for (int i = 0; i < clients.count; i++)
        pthread_cond_init(&clients.slots[i].work, NULL);
    while (!stop_requested) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        char peer_text[INET6_ADDRSTRLEN], drain[64];

        /* Wait for a client, a thread's end, or a stop signal.  At the cap
         * the listener is left out (fd -1): clients wait in the backlog. */
        struct slot *slot = free_slot();
        struct pollfd p[2] = {
            {.fd = slot ? srv->listen_fd : -1, .events = POLLIN},
            {.fd = clients.done_pipe[0], .events = POLLIN},
        };
        if (ppoll(p, 2, NULL, &wait_mask) < 0) {
            if (errno != EINTR)     /* EINTR: the loop's test sees stop_requested */
                pause_after("waiting for clients");
            continue;
        }
        while (read(clients.done_pipe[0], drain, sizeof drain) > 0)
            continue;
        if (slot == NULL || !(p[0].revents & POLLIN))
            continue;
        /* the listener does not block: a client that left between ppoll
         * and accept gives EAGAIN instead of a wait for the next one */
        int fd = accept(srv->listen_fd, (struct sockaddr *)&peer, &len);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                pause_after("accept");
            continue;
        }
        describe_peer(&peer, len, peer_text, sizeof peer_text);
        if (in_flight_from(peer_text) >= srv->opts->max_per_address) {
            refuse_busy_address(fd, peer_text, srv->opts->max_per_address);
        } else {
            reload_if_crl_changed(srv->opts);
            start_connection(slot, srv, fd, peer_text);
        }
    }
    stop_connections();
    if (clients.refused_unlogged > 0)
        fprintf(stderr, "server: %lu more connections refused at once (--max-per-address), "
                        "not logged\n", clients.refused_unlogged);
    close(clients.done_pipe[0]);
    close(clients.done_pipe[1]);
    free(clients.slots);
    return 0;
}

static void free_creds(void)
{
    if (clients.creds)
        release_creds(clients.creds);
    clients.creds = NULL;
}

/* ======================= 11. The command line ============================ */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: ./server [--port N] [--certs DIR] [--key FILE] [--cert FILE]\n"
        "                [--ca FILE] [--crl FILE] [--timeout SECONDS] [--reject-unauthorized]\n"
        "                [--max-clients N] [--max-per-address N]\n"
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
        "  --max-clients N    connections served at once (default %d); more wait\n"
        "  --max-per-address N  of those, from one client address (default %d); more\n"
        "                     are closed at once\n"
        "  --help             show this help\n",
        DEFAULT_PORT, DEFAULT_CERTS_DIR, DEFAULT_TIMEOUT_S, DEFAULT_MAX_CLIENTS,
        DEFAULT_MAX_PER_ADDRESS);
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
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = DEFAULT_CERTS_DIR;
    const char *key = NULL, *cert = NULL, *ca = NULL, *crl = NULL;
    int c;

    memset(o, 0, sizeof *o);
    o->port = DEFAULT_PORT;
    o->timeout_s = DEFAULT_TIMEOUT_S;
    o->max_clients = DEFAULT_MAX_CLIENTS;
    o->max_per_address = DEFAULT_MAX_PER_ADDRESS;
    /* ":" and opterr = 0: getopt stays quiet and tells us what went wrong
     * (':' a value is missing, '?' an unknown flag); we word the errors. */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", flags, NULL)) != -1) {
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
        (crl ? copy_path(o->crl_file, crl) : join_path(o->crl_file, dir, "crl.pem")) < 0) {
        fprintf(stderr, "server: a file name is longer than %d bytes\n", PATH_MAX - 1);
        return -1;
    }
    o->crl_required = crl != NULL;
    return 0;
}

/* ======================= 12. main() ====================================== */

int main(int argc, char **argv)
{
    struct options opt;
    struct server srv = {.listen_fd = -1};
    int port;

    switch (parse_options(argc, argv, &opt)) {
    case 1: return 0;
    case -1: return 2;
    }
    srv.timeout_ms = opt.timeout_s * 1000;
    srv.opts = &opt;
    if (load_first_creds(&opt) < 0 || load_priorities(&srv) < 0 || install_signal_handlers() < 0 ||
        (srv.listen_fd = open_listener(opt.port, &port)) < 0) {
        free_creds();
        free_server(&srv);
        return 1;
    }
    if (opt.reject_unauthorized)
        fprintf(stderr, "server: --reject-unauthorized: a client without a trusted certificate "
                        "is refused in the handshake, with no page\n");
    fprintf(stderr, "server: listening on https://localhost:%d/ (Ctrl-C stops)\n", port);
    int status = accept_loop(&srv) < 0 ? 1 : 0;
    fprintf(stderr, "server: stopped\n");
    free_creds();
    free_server(&srv);
    return status;
}
