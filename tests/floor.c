/*
 * tests/floor.c - the public-key work a server must do per connection, alone.
 *
 * For `make bench`: what a full handshake with a client certificate costs the
 * server in cryptography, measured on this machine in CPU time, so that the
 * server's own CPU time per connection can be put next to it as a ratio.
 * Per connection the server
 *   1. signs the handshake once with its key (RSA-PSS-SHA256 for RSA keys,
 *      ECDSA-SHA256 for P-256 keys), with GnuTLS;
 *   2. verifies the client's certificate against the CA (gnutls_x509_crt_verify);
 *   3. verifies the client's handshake signature (CertificateVerify);
 *   4. does its half of the ephemeral key exchange: one key generation and one
 *      shared-secret computation on the negotiated group (nettle, GnuTLS's
 *      own crypto library, since GnuTLS 3.7 has no public call for it).
 *
 *   floor --key localhost_key.pem --ca server_cert.pem --client-cert alice_cert.pem
 *         --client-key alice_key.pem --group x25519|secp256r1 [--iterations N]
 *
 * Prints one line: "floor_us TOTAL sign_us A cert_us B verify_us C kx_us D".
 */
#define _POSIX_C_SOURCE 200809L

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gmp.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <nettle/curve25519.h>
#include <nettle/ecc-curve.h>
#include <nettle/ecc.h>

static void check(int ret, const char *what)
{
    if (ret < 0) {
        fprintf(stderr, "floor: %s: %s\n", what, gnutls_strerror(ret));
        exit(2);
    }
}

static double cpu_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static gnutls_x509_crt_t load_crt(const char *file)
{
    gnutls_datum_t d;
    gnutls_x509_crt_t crt;
    check(gnutls_load_file(file, &d), file);
    check(gnutls_x509_crt_init(&crt), "crt_init");
    check(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), file);
    gnutls_free(d.data);
    return crt;
}

static gnutls_privkey_t load_key(const char *file)
{
    gnutls_datum_t d;
    gnutls_privkey_t key;
    check(gnutls_load_file(file, &d), file);
    check(gnutls_privkey_init(&key), "privkey_init");
    check(gnutls_privkey_import_x509_raw(key, &d, GNUTLS_X509_FMT_PEM, NULL, 0), file);
    gnutls_free(d.data);
    return key;
}

/* The TLS 1.3 signature scheme for a key: what GnuTLS picks in a handshake. */
static gnutls_sign_algorithm_t scheme_for(gnutls_privkey_t key)
{
    unsigned int bits;
    int pk = gnutls_privkey_get_pk_algorithm(key, &bits);
    return pk == GNUTLS_PK_RSA ? GNUTLS_SIGN_RSA_PSS_RSAE_SHA256
                               : GNUTLS_SIGN_ECDSA_SECP256R1_SHA256;
}

static void random_scalar(uint8_t *out, size_t n)
{
    check(gnutls_rnd(GNUTLS_RND_NONCE, out, n), "rnd");
}

/* The client's key share, made once outside the timing. */
static uint8_t x25519_peer[32];
static struct ecc_point p256_peer;

static void ecc_random_scalar(struct ecc_scalar *s)
{
    uint8_t bytes[32];
    mpz_t z;
    random_scalar(bytes, sizeof bytes);
    bytes[0] &= 0x7f;                       /* below the group order */
    mpz_init(z);
    mpz_import(z, sizeof bytes, 1, 1, 0, 0, bytes);
    ecc_scalar_set(s, z);
    mpz_clear(z);
}

static void make_peer_share(const char *group)
{
    if (strcmp(group, "x25519") == 0) {
        uint8_t theirs[32];
        random_scalar(theirs, 32);
        curve25519_mul_g(x25519_peer, theirs);
        return;
    }
    struct ecc_scalar theirs;
    ecc_scalar_init(&theirs, nettle_get_secp_256r1());
    ecc_point_init(&p256_peer, nettle_get_secp_256r1());
    ecc_random_scalar(&theirs);
    ecc_point_mul_g(&p256_peer, &theirs);
    ecc_scalar_clear(&theirs);
}

/* The server's half: one ephemeral key pair and one shared secret. */
static void key_exchange(const char *group)
{
    if (strcmp(group, "x25519") == 0) {
        uint8_t mine[32], pub[32], shared[32];
        random_scalar(mine, 32);
        curve25519_mul_g(pub, mine);
        curve25519_mul(shared, mine, x25519_peer);
        return;
    }
    const struct ecc_curve *curve = nettle_get_secp_256r1();
    struct ecc_scalar mine;
    struct ecc_point pub, shared;
    ecc_scalar_init(&mine, curve);
    ecc_point_init(&pub, curve);
    ecc_point_init(&shared, curve);
    ecc_random_scalar(&mine);
    ecc_point_mul_g(&pub, &mine);
    ecc_point_mul(&shared, &mine, &p256_peer);
    ecc_point_clear(&pub);
    ecc_point_clear(&shared);
    ecc_scalar_clear(&mine);
}

int main(int argc, char **argv)
{
    static const struct option flags[] = {
        {"key", 1, 0, 'k'}, {"ca", 1, 0, 'a'}, {"client-cert", 1, 0, 'c'},
        {"client-key", 1, 0, 'K'}, {"group", 1, 0, 'g'}, {"iterations", 1, 0, 'n'},
        {0, 0, 0, 0},
    };
    const char *key_file = NULL, *ca_file = NULL, *cert_file = NULL, *ckey_file = NULL;
    const char *group = "x25519";
    int n = 100, opt;
    while ((opt = getopt_long(argc, argv, "", flags, NULL)) != -1) {
        switch (opt) {
        case 'k': key_file = optarg; break;
        case 'a': ca_file = optarg; break;
        case 'c': cert_file = optarg; break;
        case 'K': ckey_file = optarg; break;
        case 'g': group = optarg; break;
        case 'n': n = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!key_file || !ca_file || !cert_file || !ckey_file || n < 1) {
        fprintf(stderr, "floor: see the comment at the top of tests/floor.c\n");
        return 2;
    }

    gnutls_privkey_t server_key = load_key(key_file), client_key = load_key(ckey_file);
    gnutls_x509_crt_t ca = load_crt(ca_file), client = load_crt(cert_file);
    gnutls_pubkey_t client_pub;
    check(gnutls_pubkey_init(&client_pub), "pubkey_init");
    check(gnutls_pubkey_import_x509(client_pub, client, 0), "pubkey_import");

    /* a transcript-hash-sized message, as in TLS 1.3's CertificateVerify */
    unsigned char msg[130];
    random_scalar(msg, sizeof msg);
    gnutls_datum_t data = {msg, sizeof msg}, sig, csig;
    gnutls_sign_algorithm_t server_scheme = scheme_for(server_key);
    gnutls_sign_algorithm_t client_scheme = scheme_for(client_key);
    check(gnutls_privkey_sign_data2(client_key, client_scheme, 0, &data, &csig), "client sign");
    if (strcmp(group, "x25519") != 0 && strcmp(group, "secp256r1") != 0) {
        fprintf(stderr, "floor: --group is x25519 or secp256r1, not %s\n", group);
        return 2;
    }
    make_peer_share(group);

    double sign = 0, cert = 0, verify = 0, kx = 0, t;
    for (int i = 0; i < n; i++) {
        t = cpu_us();
        check(gnutls_privkey_sign_data2(server_key, server_scheme, 0, &data, &sig), "sign");
        sign += cpu_us() - t;
        gnutls_free(sig.data);

        unsigned int status = 1;
        t = cpu_us();
        check(gnutls_x509_crt_verify(client, &ca, 1, 0, &status), "crt_verify");
        cert += cpu_us() - t;
        if (status != 0) {
            fprintf(stderr, "floor: the client certificate does not verify against the CA\n");
            return 2;
        }

        t = cpu_us();
        check(gnutls_pubkey_verify_data2(client_pub, client_scheme, 0, &data, &csig), "verify");
        verify += cpu_us() - t;

        t = cpu_us();
        key_exchange(group);
        kx += cpu_us() - t;
    }
    printf("floor_us %.1f sign_us %.1f cert_us %.1f verify_us %.1f kx_us %.1f\n",
           (sign + cert + verify + kx) / n, sign / n, cert / n, verify / n, kx / n);

    if (strcmp(group, "x25519") != 0)
        ecc_point_clear(&p256_peer);
    gnutls_free(csig.data);
    gnutls_pubkey_deinit(client_pub);
    gnutls_x509_crt_deinit(ca);
    gnutls_x509_crt_deinit(client);
    gnutls_privkey_deinit(server_key);
    gnutls_privkey_deinit(client_key);
    return 0;
}
