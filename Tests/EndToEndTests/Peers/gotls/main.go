// A Go HTTPS client and server for tlstap's tests (crypto/tls, loopback only).
//
//	gotls server CERT KEY PORTFILE   answers one request: "go got <method> <path> <body length>\n"
//	gotls client URL CAFILE BODY     POSTs BODY, prints the response body on stderr
//	gotls h2server CERT KEY PORTFILE  net/http over TLS as deployed (HTTP/2 on), until killed:
//	                                  answers every request with "path=<path>\n"
//	gotls h2client URL CAFILE N        GETs URL/0 .. URL/N-1 over one HTTP/2 connection, one after another
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	switch os.Args[1] {
	case "server":
		serve(os.Args[2], os.Args[3], os.Args[4])
	case "client":
		get(os.Args[2], os.Args[3], os.Args[4])
	case "h2server":
		serveH2(os.Args[2], os.Args[3], os.Args[4])
	case "h2client":
		getH2(os.Args[2], os.Args[3], os.Args[4])
	default:
		os.Exit(2)
	}
}

func serve(cert, key, portFile string) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	check(err)
	listener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	check(err)
	check(os.WriteFile(portFile+".tmp", []byte(fmt.Sprint(listener.Addr().(*net.TCPAddr).Port)), 0o600))
	check(os.Rename(portFile+".tmp", portFile))
	done := make(chan struct{})
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "go got %s %s %d\n", r.Method, r.URL.Path, len(body))
		close(done)
	})}
	go server.Serve(listener)
	<-done
	// Shutdown, not Close: the response is written before the connection goes.
	server.Shutdown(context.Background())
}

func serveH2(cert, key, portFile string) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	check(os.WriteFile(portFile+".tmp", []byte(fmt.Sprint(listener.Addr().(*net.TCPAddr).Port)), 0o600))
	check(os.Rename(portFile+".tmp", portFile))
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "path=%s\n", r.URL.Path)
	})}
	check(server.ServeTLS(listener, cert, key))
}

// A client that trusts the certificate in caFile only.
func client(caFile string, http2 bool) *http.Client {
	pem, err := os.ReadFile(caFile)
	check(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: http2}}
}

func get(url, caFile, body string) {
	client := client(caFile, false)
	response, err := client.Post(url, "text/plain", strings.NewReader(body))
	check(err)
	answer, err := io.ReadAll(response.Body)
	check(err)
	fmt.Fprint(os.Stderr, string(answer))  // stdout belongs to the tracer in the tests
}

func getH2(url, caFile, count string) {
	client := client(caFile, true)
	var n int
	_, err := fmt.Sscan(count, &n)
	check(err)
	for i := 0; i < n; i++ {
		response, err := client.Get(fmt.Sprintf("%s/%d", url, i))
		check(err)
		_, err = io.Copy(io.Discard, response.Body)
		check(err)
		response.Body.Close()
		if response.ProtoMajor != 2 {
			fmt.Fprintln(os.Stderr, "not HTTP/2:", response.Proto)
			os.Exit(1)
		}
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
