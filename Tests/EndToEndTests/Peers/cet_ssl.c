/*
 * A program built for CET (-fcf-protection=full), as Ubuntu and Fedora build
 * their libraries: every function begins with endbr64, which the kernel
 * single-steps under a uprobe, so tlstap probes the instruction after it.
 * It defines OpenSSL's SSL_write and SSL_read, so tlstap takes it for a
 * program with OpenSSL linked in; they move the bytes in the clear over a
 * loopback TCP connection (what tlstap captures is the call's buffer, not
 * the cipher). It prints "ready" on stderr, waits until the file named by
 * its argument exists, then writes one message and reads it back.
 *
 *   cet_ssl GO_FILE
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) int SSL_write(int *ssl, const void *buf, int num)
{
	return (int)write(*ssl, buf, num);
}

__attribute__((noinline)) int SSL_read(int *ssl, void *buf, int num)
{
	return (int)read(*ssl, buf, num);
}

int main(int argc, char **argv)
{
	struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t length = sizeof(address);
	int listener = socket(AF_INET, SOCK_STREAM, 0), client = socket(AF_INET, SOCK_STREAM, 0), server;
	static const char message[] = "through endbr64";
	char received[64];

	if (argc != 2 || bind(listener, (struct sockaddr *)&address, sizeof(address)) || listen(listener, 1) ||
	    getsockname(listener, (struct sockaddr *)&address, &length) ||
	    connect(client, (struct sockaddr *)&address, sizeof(address)) || (server = accept(listener, NULL, NULL)) < 0) {
		perror("cet_ssl");
		return 1;
	}
	fprintf(stderr, "ready\n");
	while (access(argv[1], F_OK) != 0)
		usleep(10000);
	int sent = SSL_write(&client, message, sizeof(message) - 1);
	int got = SSL_read(&server, received, sizeof(received));
	fprintf(stderr, "sent %d, read %d\n", sent, got);
	return sent == (int)sizeof(message) - 1 && got == sent ? 0 : 1;
}
