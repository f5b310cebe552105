# Makefile for the teaching server.
#   make          build ./server, and make certs/ with ./gencerts.sh unless it is done
#   make certs    the certificates alone (./gencerts.sh certs)
#   make test     run ./test.sh (its own server, port and certificates), the short
#                 forms: 40 s (40.1 and 43.7 s, two runs on 2 shared cores at
#                 load 1-2; README.md says more)
#   make soak     the same with LONG=1 (every long form: test.sh's header), and
#                 2,000 connections in a row and 2,000 by 16 clients at once,
#                 instead of 50 and 32 (CI runs both)
#   make clean    remove the build; make distclean also removes what gencerts.sh
#                 and ./server --invite, --enroll, --revoke made in certs/
# Beyond that (docs/proving.md):
#   make asan     the whole test suite (LONG=1) against an AddressSanitizer+UBSan build
#   make tsan     the whole test suite (LONG=1) against a ThreadSanitizer build
#   make valgrind the whole test suite (LONG=1) with the server under valgrind
#   make fuzz     libFuzzer on the request parser, HTML and log escaping, part 2's form decoding, and the /handshake page (clang)
#   make bench    server CPU per connection next to the cost of its crypto,
#                 throughput with 1-16 clients next to gnutls-serv and nginx, and
#                 what part 2's lookups and revocations cost as they grow,
#                 Alice's time to an answer while a crowd holds every slot, and
#                 what recording each handshake (for GET /handshake) costs GET /
#   make profile  the same in instructions, inside the server (callgrind)
#   make test-clients  curl, wget, openssl, gnutls-cli, Python and Node.js as visitors
#   make test-browser  headless Chromium and Firefox with Alice's .p12, as a reader would
#   make test-wire  GET /handshake against the wire: a capture tshark decrypts
# CFLAGS and LDFLAGS may be overridden; the warnings stay on.

CFLAGS   ?= -O2 -g
WARNINGS  = -Wall -Wextra
CERTS     = certs

GNUTLS_CFLAGS := $(shell pkg-config --cflags gnutls 2>/dev/null)
GNUTLS_LIBS   := $(shell pkg-config --libs gnutls 2>/dev/null)

SANITIZE      = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
VALGRIND      = valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=all \
                --errors-for-leak-kinds=all --track-fds=no

.PHONY: all certs test soak asan tsan valgrind fuzz bench profile test-clients test-browser test-wire clean distclean

# gencerts.sh is done when its last file is there: a run cut short (Ctrl-C
# in a key's making) is tried again, and says what is in the way
CERTS_DONE = $(CERTS)/alice_secret.p12

all: server $(CERTS_DONE)

server: server.c
	@pkg-config --exists gnutls || { \
	    echo "GnuTLS not found: apt-get install pkg-config libgnutls28-dev" >&2; exit 1; }
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARNINGS) -pthread $(GNUTLS_CFLAGS) -o $@ server.c $(LDFLAGS) $(GNUTLS_LIBS)

certs: $(CERTS_DONE)

$(CERTS_DONE):
	./gencerts.sh $(CERTS)

# A GnuTLS client the tests use for what curl can't do; not part of the lesson.
tests/tlsclient: tests/tlsclient.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARNINGS) $(GNUTLS_CFLAGS) -o $@ $< $(LDFLAGS) $(GNUTLS_LIBS)

test: server tests/tlsclient
	./test.sh

soak: server tests/tlsclient
	LONG=1 SOAK_CONNECTIONS=2000 CONCURRENT_CONNECTIONS=2000 ./test.sh

test-clients: server
	tests/clients.sh

test-wire: server
	tests/wire.sh

# The screenshots are kept in tests/work/; README.md shows ones made with
# SCREENSHOT=docs/browser-alice.png FIREFOX_SCREENSHOT=docs/firefox-alice.png tests/browser.sh,
# and the handshake's with the three *HANDSHAKE_SCREENSHOT pointing at docs/ (tests/browser.sh's head)
test-browser: server
	mkdir -p tests/work
	SCREENSHOT=tests/work/browser-alice.png FIREFOX_SCREENSHOT=tests/work/firefox-alice.png \
	HANDSHAKE_SCREENSHOT=tests/work/handshake-chromium-tls13.png \
	FIREFOX_HANDSHAKE_SCREENSHOT=tests/work/handshake-firefox-tls13.png \
	TLS12_HANDSHAKE_SCREENSHOT=tests/work/handshake-chromium-tls12.png \
	    tests/browser.sh

server-asan: server.c
	$(CC) $(CPPFLAGS) $(SANITIZE) $(WARNINGS) -pthread $(GNUTLS_CFLAGS) -o $@ server.c $(LDFLAGS) $(GNUTLS_LIBS)

asan: server-asan tests/tlsclient
	LONG=1 SERVER=./server-asan ./test.sh

# ThreadSanitizer: every connection is served by a worker thread (server.c, section 13)
server-tsan: server.c
	$(CC) $(CPPFLAGS) -g -O1 -fsanitize=thread $(WARNINGS) -pthread $(GNUTLS_CFLAGS) -o $@ server.c $(LDFLAGS) $(GNUTLS_LIBS)

tsan: server-tsan tests/tlsclient
	LONG=1 SERVER=./server-tsan ./test.sh

# valgrind is slow: the soaks are cut to 100 and 160 connections (still a mix of all three)
valgrind: server tests/tlsclient
	LONG=1 SERVER_WRAPPER="$(VALGRIND)" SOAK_CONNECTIONS=100 CONCURRENT_CONNECTIONS=160 ./test.sh

# The crypto floor uses nettle, GnuTLS's own crypto library (it comes with
# libgnutls28-dev), for the key exchange GnuTLS has no public call for.
tests/floor: tests/floor.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARNINGS) $(GNUTLS_CFLAGS) -o $@ $< $(LDFLAGS) \
	    $(GNUTLS_LIBS) $(shell pkg-config --libs hogweed nettle) -lgmp

bench: server tests/tlsclient tests/floor
	tests/bench.sh
	tests/bench_concurrency.sh
	tests/bench_part2.sh
	tests/bench_crowd.sh
	tests/bench_handshake.sh

profile: server tests/tlsclient
	tests/profile.sh

# libFuzzer needs clang.  New inputs go to tests/work/corpus, the seeds stay as
# they are; a crash leaves its input in tests/work/ (keep it as a seed).
tests/fuzz_request: tests/fuzz_request.c server.c
	clang -g -O1 -pthread -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    $(WARNINGS) $(GNUTLS_CFLAGS) -o $@ tests/fuzz_request.c $(GNUTLS_LIBS)

fuzz: tests/fuzz_request
	mkdir -p tests/work/corpus
	cd tests/work && ../fuzz_request -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    corpus ../fuzz-seeds 2>fuzz.log; status=$$?; \
	    grep -E '^(Done|stat::number_of_executed_units)|ERROR|SUMMARY' fuzz.log; exit $$status

clean:
	rm -f server server-asan server-tsan tests/tlsclient tests/fuzz_request tests/floor
	rm -rf tests/work

# what gencerts.sh makes (keys, certificates, bundles, crl.pem and its CA's
# records in ca/), and what ./server --invite, --enroll and --revoke add
distclean: clean
	rm -f $(CERTS)/*.pem $(CERTS)/*.p12 $(CERTS)/crl.pem.lock
	rm -rf $(CERTS)/ca $(CERTS)/invites $(CERTS)/accounts $(CERTS)/issued
