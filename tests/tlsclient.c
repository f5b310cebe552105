/*
 * tests/tlsclient.c - a GnuTLS client for the tests and the benchmark.
 *
 * Not part of the lesson: it plays the visitors that curl can't (a client that
 * stops half way through a ClientHello, dribbles its request, resets the
 * connection...) and the load for the soak test and `make bench`.
 *
 *   tlsclient --port N --ca FILE [--cert FILE --key FILE | --self-signed CN]
 *             [--tls 1.2|1.3] [--source ADDRESS]
 *             [--path P | --raw BYTES] [--mode MODE] [--count N]
 *             [--expect STATUS] [--expect-text TEXT] [--stats] [--seconds S]
 *
 * --raw and --self-signed take C escapes (\r \n \t \0 \xNN \\).
 * --self-signed CN makes a fresh ECDSA key and a certificate for it, signed
 * by itself, whose subject is exactly the bytes CN (the log-forgery tests'
 * certificates: newlines, NUL, invalid UTF-8, which openssl cannot make).
 * --cert and --key need not match: a mismatch makes a CertificateVerify
 * signature that does not verify.  Modes:
 *   normal         handshake, send the request, read the whole answer (default)
 *   dribble        send the request one byte per --delay-ms (default 200)
 *   pause          handshake, wait --delay-ms, then as normal (a visitor
 *                  slow to ask, while a crowd keeps coming)
 *   send-close     send the request and close without reading
 *   reset          send the request and reset the connection (RST)
 *   silent         handshake, then send nothing; wait for the server to close
 *   half-hello     send half a ClientHello, then nothing; wait for the close
 *   tcp-silent     connect, send nothing at all; wait for the close
 *   bad-record     handshake, then send the request with its last byte
 *                  flipped, so that its record fails to decrypt; print what
 *                  the server says to that
 * With one connection the answer is printed; with --count the loop stops at
 * the first answer that does not match --expect/--expect-text (exit 1).
 * --stats prints rate, latency percentiles, the client's own CPU time per
 * connection, and the TLS version and key-exchange group of the last one.
 * --seconds S keeps connecting for S seconds (at most --count times).
 * --source ADDRESS connects from that address (127.0.1.1: the server's log
 * lines for this client start with it, so that clients run at once can be
 * told apart); only --host addresses of its family are tried.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

struct config {
    const char *host, *port, *ca, *cert, *key, *tls, *path, *mode, *expect_text, *source;
    char *raw, *self_cn;
    size_t raw_len, self_cn_len;
    int count, expect, delay_ms;
    double seconds;
    bool stats;
};

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "tlsclient: %s: %s\n", what, why);
    exit(2);
}

/* Decode C escapes in place; returns the length. */
static size_t unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p != '\\' || p[1] == '\0') {
            *o++ = *p;
            continue;
        }
        switch (*++p) {
        case 'r': *o++ = '\r'; break;
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case '0': *o++ = '\0'; break;
        case 'x': {
            char hex[3] = {p[1], p[1] ? p[2] : 0, 0};
            *o++ = (char)strtol(hex, NULL, 16);
            p += 2;
            break;
        }
        default: *o++ = *p;
        }
    }
    return (size_t)(o - s);
}

static int connect_tcp(const struct config *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, one = 1;
    int ret = getaddrinfo(c->host, c->port, &hints, &res);
    if (ret != 0)
        die(c->host, gai_strerror(ret));
    struct sockaddr_in from4 = {.sin_family = AF_INET};
    struct sockaddr_in6 from6 = {.sin6_family = AF_INET6};
    int from_family = 0;
    if (c->source) {
        if (inet_pton(AF_INET, c->source, &from4.sin_addr) == 1)
            from_family = AF_INET;
        else if (inet_pton(AF_INET6, c->source, &from6.sin6_addr) == 1)
            from_family = AF_INET6;
        else
            die("--source", "not an IPv4 or IPv6 address");
    }
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        if (from_family && ai->ai_family != from_family)
            continue;
        fd = socket(ai->ai_family, ai->ai_socktype, 0);
        if (fd >= 0 && from_family &&
            bind(fd, from_family == AF_INET ? (struct sockaddr *)&from4 : (struct sockaddr *)&from6,
                 from_family == AF_INET ? sizeof from4 : sizeof from6) < 0)
            die("bind --source", strerror(errno));
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("connect", strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Wait until the server closes the connection (or 60 s); returns ms waited. */
static double wait_for_close(int fd)
{
    double start = now_ms();
    char buf[4096];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 60000) > 0 && recv(fd, buf, sizeof buf, 0) > 0)
        ;
    return now_ms() - start;
}

/* half-hello: let GnuTLS write its ClientHello into a buffer, then send half. */
static unsigned char hello[4096];
static size_t hello_len;
static ssize_t capture_push(gnutls_transport_ptr_t p, const void *buf, size_t n)
{
    (void)p;
    if (hello_len + n > sizeof hello)
        n = sizeof hello - hello_len;
    memcpy(hello + hello_len, buf, n);
    hello_len += n;
    return (ssize_t)n;
}
static ssize_t no_pull(gnutls_transport_ptr_t p, void *buf, size_t n)
{
    (void)p, (void)buf, (void)n;
    errno = ECONNRESET;
    return -1;
}

/* bad-record: flip the last byte of what we send (the record's auth tag) */
static ssize_t corrupting_push(gnutls_transport_ptr_t p, const void *buf, size_t n)
{
    unsigned char copy[4096];
    if (n == 0 || n > sizeof copy)
        return send((int)(intptr_t)p, buf, n, MSG_NOSIGNAL);
    memcpy(copy, buf, n);
    copy[n - 1] ^= 0x01;
    return send((int)(intptr_t)p, copy, n, MSG_NOSIGNAL);
}

/* Like curl, present our certificate whatever CAs the server names: GnuTLS's
 * default, like a browser's, is to send only one the server's CA list names,
 * and Bob must be able to try. */
static gnutls_pcert_st my_pcert;
static gnutls_privkey_t my_key;
static int always_mine(gnutls_session_t s, const struct gnutls_cert_retr_st *info,
                       gnutls_pcert_st **certs, unsigned int *count,
                       gnutls_ocsp_data_st **ocsp, unsigned int *ocsp_count,
                       gnutls_privkey_t *key, unsigned int *flags)
{
    (void)s, (void)info, (void)ocsp, (void)flags;
    *certs = &my_pcert;
    *count = 1;
    *ocsp_count = 0;
    *key = my_key;
    return 0;
}

static void load_identity(gnutls_certificate_credentials_t creds, const char *cert, const char *key)
{
    gnutls_datum_t c, k;
    int ret = gnutls_load_file(cert, &c);
    if (ret == 0)
        ret = gnutls_load_file(key, &k);
    if (ret == 0)
        ret = gnutls_pcert_import_x509_raw(&my_pcert, &c, GNUTLS_X509_FMT_PEM, 0);
    if (ret == 0)
        ret = gnutls_privkey_init(&my_key);
    if (ret == 0)
        ret = gnutls_privkey_import_x509_raw(my_key, &k, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (ret < 0)
        die(cert, gnutls_strerror(ret));
    gnutls_free(c.data);
    gnutls_free(k.data);
    gnutls_certificate_set_retrieve_function3(creds, always_mine);
}

/* --self-signed: a key and a certificate made here, with the subject CN
 * given as raw bytes (GnuTLS writes them into a UTF8String unchecked). */
static void make_self_signed(gnutls_certificate_credentials_t creds, const char *cn, size_t len)
{
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
    unsigned char serial[8];
    time_t now = time(NULL);
    int ret = gnutls_x509_privkey_init(&key);
    if (ret == 0)
        ret = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                           GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
    if (ret == 0)
        ret = gnutls_x509_crt_init(&crt);
    if (ret == 0)
        ret = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial);
    serial[0] &= 0x7f;
    if (ret == 0)
        ret = gnutls_x509_crt_set_version(crt, 3);
    if (ret == 0)
        ret = gnutls_x509_crt_set_serial(crt, serial, sizeof serial);
    if (ret == 0)
        ret = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)len);
    if (ret == 0)
        ret = gnutls_x509_crt_set_activation_time(crt, now - 3600);
    if (ret == 0)
        ret = gnutls_x509_crt_set_expiration_time(crt, now + 86400);
    if (ret == 0)
        ret = gnutls_x509_crt_set_key(crt, key);
    if (ret == 0)
        ret = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
    if (ret == 0)
        ret = gnutls_pcert_import_x509(&my_pcert, crt, 0);
    if (ret == 0)
        ret = gnutls_privkey_init(&my_key);
    if (ret == 0)
        ret = gnutls_privkey_import_x509(my_key, key, GNUTLS_PRIVKEY_IMPORT_COPY);
    if (ret < 0)
        die("--self-signed", gnutls_strerror(ret));
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
    gnutls_certificate_set_retrieve_function3(creds, always_mine);
}

/* "handshake failed: WHY", and the alert's name when the server sent one. */
static void print_failure(const char *what, gnutls_session_t s, int ret)
{
    printf("%s: %s", what, gnutls_strerror(ret));
    if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED || ret == GNUTLS_E_WARNING_ALERT_RECEIVED)
        printf(" (alert %s)", gnutls_alert_get_strname(gnutls_alert_get(s)));
    printf("\n");
}

static gnutls_session_t new_session(const struct config *c,
                                    gnutls_certificate_credentials_t creds)
{
    gnutls_session_t s;
    char prio[64];
    snprintf(prio, sizeof prio, "NORMAL%s%s", c->tls ? ":-VERS-ALL:+VERS-TLS" : "",
             c->tls ? c->tls : "");
    int ret = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL);
    if (ret == 0)
        ret = gnutls_priority_set_direct(s, prio, NULL);
    if (ret == 0)
        ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, creds);
    if (ret == 0)
        ret = gnutls_server_name_set(s, GNUTLS_NAME_DNS, c->host, strlen(c->host));
    if (ret < 0)
        die("session", gnutls_strerror(ret));
    gnutls_session_set_verify_cert(s, c->host, 0);
    gnutls_handshake_set_timeout(s, 30000);
    gnutls_record_set_timeout(s, 30000);
    return s;
}

static int handshake(gnutls_session_t s)
{
    int ret;
    do {
        ret = gnutls_handshake(s);
    } while (ret < 0 && !gnutls_error_is_fatal(ret));
    return ret;
}

static int send_bytes(gnutls_session_t s, const char *buf, size_t len, int delay_ms)
{
    size_t step = delay_ms > 0 ? 1 : len;
    while (len > 0) {
        ssize_t n = gnutls_record_send(s, buf, step < len ? step : len);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n < 0)
            return (int)n;
        buf += n;
        len -= (size_t)n;
        if (delay_ms > 0)
            nanosleep(&(struct timespec){0, delay_ms * 1000000L}, NULL);
    }
    return 0;
}

/* Read the whole answer (until close); returns its length or a GnuTLS error. */
static ssize_t read_answer(gnutls_session_t s, char *buf, size_t cap)
{
    size_t used = 0;
    for (;;) {
        ssize_t n = gnutls_record_recv(s, buf + used, cap - 1 - used);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n == 0 || (n == GNUTLS_E_PREMATURE_TERMINATION && used > 0))
            break;
        if (n < 0)
            return n;
        used += (size_t)n;
        if (used == cap - 1)
            break;
    }
    buf[used] = '\0';
    return (ssize_t)used;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static const struct option flags[] = {
        {"host", 1, 0, 'H'}, {"port", 1, 0, 'p'}, {"ca", 1, 0, 'a'},
        {"cert", 1, 0, 'c'}, {"key", 1, 0, 'k'}, {"tls", 1, 0, 't'},
        {"path", 1, 0, 'P'}, {"raw", 1, 0, 'r'}, {"mode", 1, 0, 'm'},
        {"count", 1, 0, 'n'}, {"expect", 1, 0, 'e'}, {"expect-text", 1, 0, 'x'},
        {"delay-ms", 1, 0, 'd'}, {"stats", 0, 0, 's'}, {"seconds", 1, 0, 'S'},
        {"self-signed", 1, 0, 'C'}, {"source", 1, 0, 'F'},
        {0, 0, 0, 0},
    };
    struct config c = {.host = "localhost", .path = "/authenticate", .mode = "normal",
                       .count = 1, .delay_ms = 200};
    int opt;
    while ((opt = getopt_long(argc, argv, "", flags, NULL)) != -1) {
        switch (opt) {
        case 'H': c.host = optarg; break;
        case 'p': c.port = optarg; break;
        case 'a': c.ca = optarg; break;
        case 'c': c.cert = optarg; break;
        case 'k': c.key = optarg; break;
        case 't': c.tls = optarg; break;
        case 'P': c.path = optarg; break;
        case 'r': c.raw = optarg; c.raw_len = unescape(optarg); break;
        case 'C': c.self_cn = optarg; c.self_cn_len = unescape(optarg); break;
        case 'm': c.mode = optarg; break;
        case 'F': c.source = optarg; break;
        case 'n': c.count = atoi(optarg); break;
        case 'e': c.expect = atoi(optarg); break;
        case 'x': c.expect_text = optarg; break;
        case 'd': c.delay_ms = atoi(optarg); break;
        case 's': c.stats = true; break;
        case 'S': c.seconds = atof(optarg); c.count = c.count > 1 ? c.count : 1000000; break;
        default: fprintf(stderr, "tlsclient: see the comment at the top of tests/tlsclient.c\n"); return 2;
        }
    }
    if (!c.port || !c.ca || c.count < 1)
        die("usage", "--port and --ca are required; --count must be at least 1");

    gnutls_certificate_credentials_t creds;
    int ret = gnutls_certificate_allocate_credentials(&creds);
    if (ret == 0)
        ret = gnutls_certificate_set_x509_trust_file(creds, c.ca, GNUTLS_X509_FMT_PEM) > 0 ? 0 : GNUTLS_E_FILE_ERROR;
    if (ret < 0)
        die("credentials", gnutls_strerror(ret));
    if (c.cert)
        load_identity(creds, c.cert, c.key ? c.key : c.cert);
    else if (c.self_cn)
        make_self_signed(creds, c.self_cn, c.self_cn_len);

    char request[512];
    const char *req = c.raw;
    size_t req_len = c.raw_len;
    if (!req) {
        req_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", c.path, c.host);
        req = request;
    }

    if (strcmp(c.mode, "half-hello") == 0) {
        gnutls_session_t s = new_session(&c, creds);
        gnutls_transport_set_push_function(s, capture_push);
        gnutls_transport_set_pull_function(s, no_pull);
        handshake(s);       /* fails once it would read; the hello is captured */
        gnutls_deinit(s);
        int fd = connect_tcp(&c);
        if (send(fd, hello, hello_len / 2, MSG_NOSIGNAL) < 0)
            die("send", strerror(errno));
        printf("sent %zu of %zu ClientHello bytes; the server closed after %.0f ms\n",
               hello_len / 2, hello_len, wait_for_close(fd));
        close(fd);
        gnutls_certificate_free_credentials(creds);
        return 0;
    }

    if (strcmp(c.mode, "tcp-silent") == 0) {
        int fd = connect_tcp(&c);
        printf("connected, sent nothing; the server closed after %.0f ms\n", wait_for_close(fd));
        close(fd);
        gnutls_certificate_free_credentials(creds);
        return 0;
    }

    static char answer[1 << 20];
    double *lat = calloc((size_t)c.count, sizeof *lat);
    double start = now_ms();
    int good = 0, done = 0;
    char version[32] = "-", group[32] = "-";
    for (int i = 0; i < c.count; i++) {
        if (c.seconds > 0 && now_ms() - start >= c.seconds * 1e3)
            break;
        done++;
        double t0 = now_ms();
        int fd = connect_tcp(&c);
        gnutls_session_t s = new_session(&c, creds);
        gnutls_transport_set_int(s, fd);
        ret = handshake(s);
        if (ret < 0) {
            print_failure("handshake failed", s, ret);
            goto next;
        }
        if (strcmp(c.mode, "silent") == 0) {
            printf("handshake done; the server closed after %.0f ms\n", wait_for_close(fd));
            good++;
            goto next;
        }
        if (strcmp(c.mode, "bad-record") == 0) {
            gnutls_transport_set_ptr(s, (gnutls_transport_ptr_t)(intptr_t)fd);
            gnutls_transport_set_push_function(s, corrupting_push);
        }
        if (strcmp(c.mode, "pause") == 0)
            nanosleep(&(struct timespec){c.delay_ms / 1000, (c.delay_ms % 1000) * 1000000L}, NULL);
        ret = send_bytes(s, req, req_len, strcmp(c.mode, "dribble") == 0 ? c.delay_ms : 0);
        if (ret < 0) {
            printf("send failed: %s\n", gnutls_strerror(ret));
            goto next;
        }
        if (strcmp(c.mode, "send-close") == 0) {
            printf("request sent, closed without reading\n");
            good++;
            goto next;
        }
        if (strcmp(c.mode, "reset") == 0) {
            struct linger lg = {1, 0};      /* close() now sends RST */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            printf("request sent, connection reset\n");
            good++;
            goto next;
        }
        ssize_t n = read_answer(s, answer, sizeof answer);
        if (n < 0) {
            print_failure("reading failed", s, (int)n);
            goto next;
        }
        int status = 0;
        sscanf(answer, "HTTP/1.1 %d", &status);
        bool ok = (!c.expect || status == c.expect) &&
                  (!c.expect_text || strstr(answer, c.expect_text));
        if (c.count == 1)
            fwrite(answer, 1, (size_t)n, stdout);
        else if (!ok)
            printf("connection %d: unexpected answer:\n%s\n", i + 1, answer);
        good += ok;
        lat[i] = now_ms() - t0;
        snprintf(version, sizeof version, "%s", gnutls_protocol_get_name(gnutls_protocol_get_version(s)));
        const char *g = gnutls_group_get_name(gnutls_group_get(s));
        snprintf(group, sizeof group, "%s", g ? g : "-");
    next:
        gnutls_deinit(s);
        close(fd);
        if (good < i + 1 && c.count > 1)
            break;
    }
    double total = now_ms() - start;
    if (c.count > 1 || c.stats)
        printf("%d of %d answers as expected\n", good, done);
    if (c.stats && good == done) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double cpu = ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 +
                     ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
        qsort(lat, (size_t)done, sizeof *lat, cmp_double);
        printf("connections %d rate %.1f p50_ms %.3f p99_ms %.3f client_cpu_ms %.3f version %s group %s\n",
               done, done / (total / 1e3), lat[done / 2], lat[(done * 99) / 100 < done ? (done * 99) / 100 : done - 1],
               cpu / done, version, group);
    }
    free(lat);
    if (c.cert || c.self_cn) {
        gnutls_pcert_deinit(&my_pcert);
        gnutls_privkey_deinit(my_key);
    }
    gnutls_certificate_free_credentials(creds);
    return good == done ? 0 : 1;
}
