// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * gen [-w] [-r MB/S] SIZE COUNT SECONDS: drives OpenSSL as fast as it can
 * (or, with -r, at that many megabytes per second of writes), for the pipeline
 * capacity benchmark. A TLS 1.3 client and server in this one process talk
 * through a memory BIO pair (no sockets, no syscalls): the client makes
 * SSL_write calls of SIZE bytes and the server SSL_reads each one back in
 * full, COUNT times or until SECONDS have passed, whichever comes first.
 *
 * Setup (a key and self-signed certificate made in memory, the handshake)
 * happens first; then gen prints "gen: ready" on stderr and, with -w, waits
 * for SIGUSR1 so that a tracer can attach to it by PID before the first
 * measured call. At the end it prints one line on stdout:
 *   gen: size=S writes=N write_bytes=B reads=R read_bytes=B seconds=T
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static void fail(const char *what)
{
	fprintf(stderr, "gen: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A P-256 key and a one-day self-signed certificate for the server. */
static void make_identity(SSL_CTX *ctx)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = X509_new();

	if (!key || !cert)
		fail("cannot make a key");
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
				   (const unsigned char *)"tlstap-bench", -1, -1, 0);
	X509_set_issuer_name(cert, X509_get_subject_name(cert));
	if (!X509_sign(cert, key, EVP_sha256()))
		fail("cannot sign the certificate");
	if (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1)
		fail("cannot use the certificate");
	X509_free(cert);
	EVP_PKEY_free(key);
}

static int finished_handshake(SSL *ssl)
{
	int ret = SSL_do_handshake(ssl);

	if (ret == 1)
		return 1;
	if (SSL_get_error(ssl, ret) != SSL_ERROR_WANT_READ)
		fail("handshake failed");
	return 0;
}

int main(int argc, char **argv)
{
	int wait_for_start = 0;
	double rate = 0; /* bytes per second of writes; 0: as fast as possible */
	int option;

	while ((option = getopt(argc, argv, "wr:")) != -1) {
		switch (option) {
		case 'w':
			wait_for_start = 1;
			break;
		case 'r':
			rate = strtod(optarg, NULL) * 1e6;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 3)
		goto usage;
	size_t size = strtoul(argv[optind], NULL, 0);
	unsigned long count = strtoul(argv[optind + 1], NULL, 0);
	double seconds = strtod(argv[optind + 2], NULL);
	if (size == 0 || count == 0 || seconds <= 0)
		goto usage;

	SSL_CTX *server_ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *client_ctx = SSL_CTX_new(TLS_client_method());
	if (!server_ctx || !client_ctx)
		fail("cannot make SSL contexts");
	make_identity(server_ctx);
	SSL_CTX_set_num_tickets(server_ctx, 0); /* nobody would read them */
	SSL *server = SSL_new(server_ctx);
	SSL *client = SSL_new(client_ctx);
	BIO *client_bio, *server_bio;

	/* Room for one whole write: SIZE bytes in 16 KiB records plus their overhead. */
	if (!BIO_new_bio_pair(&client_bio, 2 * size + 65536, &server_bio, 2 * size + 65536))
		fail("cannot make a BIO pair");
	SSL_set_bio(client, client_bio, client_bio);
	SSL_set_bio(server, server_bio, server_bio);
	SSL_set_connect_state(client);
	SSL_set_accept_state(server);
	for (int step = 0, client_done = 0, server_done = 0; !(client_done && server_done); step++) {
		if (step > 100)
			fail("handshake did not finish");
		client_done = client_done || finished_handshake(client);
		server_done = server_done || finished_handshake(server);
	}

	unsigned char *out = malloc(size), *in = malloc(size);
	if (!out || !in)
		fail("out of memory");
	for (size_t i = 0; i < size; i++)
		out[i] = (unsigned char)('a' + i % 26);

	if (wait_for_start) {
		sigset_t start;
		int signal_number;

		sigemptyset(&start);
		sigaddset(&start, SIGUSR1);
		sigprocmask(SIG_BLOCK, &start, NULL);
		fprintf(stderr, "gen: ready\n");
		sigwait(&start, &signal_number);
	} else {
		fprintf(stderr, "gen: ready\n");
	}

	unsigned long writes = 0, reads = 0;
	unsigned long long write_bytes = 0, read_bytes = 0;
	double start = now_seconds(), elapsed = 0;

	while (writes < count) {
		int written = SSL_write(client, out, (int)size);

		if (written != (int)size)
			fail("SSL_write did not take the whole buffer");
		writes++;
		write_bytes += written;
		for (size_t got = 0; got < size;) {
			int n = SSL_read(server, in + got, (int)(size - got));

			if (n <= 0)
				fail("SSL_read failed");
			reads++;
			read_bytes += n;
			got += n;
		}
		if (rate > 0) {
			/* Paced: sleep until the time this many bytes are due. */
			double due = start + write_bytes / rate;

			elapsed = now_seconds() - start;
			if (elapsed >= seconds)
				break;
			if (due > start + elapsed) {
				struct timespec until = { (time_t)due, (long)((due - (time_t)due) * 1e9) };

				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
			}
		} else if ((writes & 63) == 0 && (elapsed = now_seconds() - start) >= seconds) {
			/* The clock is read every 64 calls: a call can be as short as a microsecond. */
			break;
		}
	}
	elapsed = now_seconds() - start;
	if (memcmp(in, out, size) != 0)
		fail("the server read something else than the client wrote");
	printf("gen: size=%zu writes=%lu write_bytes=%llu reads=%lu read_bytes=%llu seconds=%.3f\n", size, writes,
	       write_bytes, reads, read_bytes, elapsed);
	SSL_free(client);
	SSL_free(server);
	SSL_CTX_free(client_ctx);
	SSL_CTX_free(server_ctx);
	free(out);
	free(in);
	return 0;

usage:
	fprintf(stderr, "usage: gen [-w] [-r MB/S] SIZE COUNT SECONDS\n");
	return 2;
}
