/*
 * The smallest short-lived TLS client: connects to 127.0.0.1:PORT with the
 * system libssl, checks the server's certificate against CA, sends
 * "GET PATH HTTP/1.0" and reads the answer to its end. For tests that need
 * thousands of TLS processes (curl spends most of its time loading its
 * libraries). Exit 0 when the answer came.
 *
 *   tls_get CA PORT PATH
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_load_verify_locations(ctx, argv[1], NULL) != 1)
		return 1;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0)
		return 1;
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, "localhost");
	SSL_set1_host(ssl, "localhost");
	if (SSL_connect(ssl) != 1)
		return 1;
	char request[512];
	int length = snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\n\r\n", argv[3]);
	if (SSL_write(ssl, request, length) != length)
		return 1;
	char buffer[4096];
	int got = 0, total = 0;
	while ((got = SSL_read(ssl, buffer, sizeof(buffer))) > 0)
		total += got;
	return total > 0 ? 0 : 1;
}
