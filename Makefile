# Makefile for the teaching server.
#   make          build ./server, and make certs/ with ./gencerts.sh if it is empty
#   make test     run ./test.sh (its own server, port and certificates)
#   make clean    remove the build; make distclean also removes certs/
# CFLAGS and LDFLAGS may be overridden; the warnings stay on.

CFLAGS   ?= -O2 -g
WARNINGS  = -Wall -Wextra
CERTS     = certs

GNUTLS_CFLAGS := $(shell pkg-config --cflags gnutls 2>/dev/null)
GNUTLS_LIBS   := $(shell pkg-config --libs gnutls 2>/dev/null)

.PHONY: all certs test clean distclean

all: server $(CERTS)/server_cert.pem

server: server.c
	@pkg-config --exists gnutls || { \
	    echo "GnuTLS not found: apt-get install pkg-config libgnutls28-dev" >&2; exit 1; }
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARNINGS) $(GNUTLS_CFLAGS) -o $@ server.c $(LDFLAGS) $(GNUTLS_LIBS)

certs: $(CERTS)/server_cert.pem

$(CERTS)/server_cert.pem:
	./gencerts.sh $(CERTS)

# A GnuTLS client the tests use for what curl can't do; not part of the lesson.
tests/tlsclient: tests/tlsclient.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARNINGS) $(GNUTLS_CFLAGS) -o $@ $< $(LDFLAGS) $(GNUTLS_LIBS)

test: server tests/tlsclient
	./test.sh

clean:
	rm -f server tests/tlsclient

distclean: clean
	rm -f $(CERTS)/*.pem $(CERTS)/*.p12
