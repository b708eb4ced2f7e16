// A Go HTTPS client and server for tlstap's tests (crypto/tls, loopback only).
//
//	gotls server CERT KEY PORTFILE   answers one request: "go got <method> <path> <body length>\n"
//	gotls client URL CAFILE BODY     POSTs BODY, prints the response body on stderr
//	gotls h2server CERT KEY PORTFILE  net/http over TLS as deployed (HTTP/2 on), until killed:
//	                                  answers every request with "path=<path>\n"
//	gotls h2client URL CAFILE N        GETs URL/0 .. URL/N-1 over one HTTP/2 connection, one after another
//	gotls parkedreads CERT KEY PORTFILE N
//	                                  on each of N connections, two goroutines Read at once (the second
//	                                  parks on the connection's lock before any syscall) while a third
//	                                  writes to a plain TCP socket on the same thread (GOMAXPROCS 1)
//	gotls parkedclient PORT N          N connections to it, each sending "cI-one", then "cI-two"
//	gotls sink CERT KEY PORTFILE       reads one connection to its end, then exits
//	gotls slowwriter PORT N DELAYMS TIMESFILE
//	                                  after its handshake, N Writes of "slow-write-<i>" through a net.Conn
//	                                  that waits DELAYMS before each socket write; writes each Write's
//	                                  start and end (Unix ns) to TIMESFILE, one line per Write
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
	"runtime"
	"strings"
	"sync"
	"time"
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
	case "parkedreads":
		serveParkedReads(os.Args[2], os.Args[3], os.Args[4], atoi(os.Args[5]))
	case "parkedclient":
		sendToParkedReads(os.Args[2], atoi(os.Args[3]))
	case "sink":
		sink(os.Args[2], os.Args[3], os.Args[4])
	case "slowwriter":
		writeSlowly(os.Args[2], atoi(os.Args[3]), time.Duration(atoi(os.Args[4]))*time.Millisecond, os.Args[5])
	default:
		os.Exit(2)
	}
}

// A TLS listener on loopback whose port is written to portFile (atomically: the tests poll it).
func listenTLS(cert, key, portFile string) net.Listener {
	pair, err := tls.LoadX509KeyPair(cert, key)
	check(err)
	listener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	check(err)
	announce(listener, portFile)
	return listener
}

func announce(listener net.Listener, portFile string) {
	check(os.WriteFile(portFile+".tmp", []byte(fmt.Sprint(listener.Addr().(*net.TCPAddr).Port)), 0o600))
	check(os.Rename(portFile+".tmp", portFile))
}

func serve(cert, key, portFile string) {
	listener := listenTLS(cert, key, portFile)
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
	announce(listener, portFile)
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
	fmt.Fprint(os.Stderr, string(answer)) // stdout belongs to the tracer in the tests
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

// Two Reads at once on each connection: the first waits in the kernel for
// the client's first record, holding the connection's input lock; the
// second parks on that lock without a syscall; then this goroutine, on the
// same thread (GOMAXPROCS 1), writes to a plain TCP socket. Whatever names
// the Reads' socket must not take that write's.
func serveParkedReads(cert, key, portFile string, count int) {
	runtime.GOMAXPROCS(1)
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	go func() {
		for {
			conn, err := sink.Accept()
			check(err)
			go io.Copy(io.Discard, conn)
		}
	}()
	plain, err := net.Dial("tcp", sink.Addr().String())
	check(err)
	listener := listenTLS(cert, key, portFile)
	for i := 0; i < count; i++ {
		conn, err := listener.Accept()
		check(err)
		check(conn.(*tls.Conn).Handshake())
		var reads sync.WaitGroup
		for k := 0; k < 2; k++ {
			reads.Add(1)
			go func() {
				defer reads.Done()
				buffer := make([]byte, 64)
				_, err := conn.Read(buffer)
				check(err)
			}()
			time.Sleep(100 * time.Millisecond)
		}
		_, err = plain.Write([]byte("not TLS"))
		check(err)
		reads.Wait()
		conn.Close()
	}
}

func sendToParkedReads(port string, count int) {
	for i := 0; i < count; i++ {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{InsecureSkipVerify: true})
		check(err)
		time.Sleep(400 * time.Millisecond) // both Reads are waiting
		_, err = fmt.Fprintf(conn, "c%d-one", i)
		check(err)
		time.Sleep(100 * time.Millisecond) // one record each
		_, err = fmt.Fprintf(conn, "c%d-two", i)
		check(err)
		io.Copy(io.Discard, conn) // until the server closes
		conn.Close()
	}
}

func sink(cert, key, portFile string) {
	listener := listenTLS(cert, key, portFile)
	conn, err := listener.Accept()
	check(err)
	_, err = io.Copy(io.Discard, conn)
	check(err)
	conn.Close()
}

// A connection that waits before each write, once armed: what a rate
// limiter or a metering wrapper does between crypto/tls and the socket.
type delayedConn struct {
	net.Conn
	delay time.Duration
	armed bool
}

func (c *delayedConn) Write(b []byte) (int, error) {
	if c.armed {
		time.Sleep(c.delay)
	}
	return c.Conn.Write(b)
}

func writeSlowly(port string, count int, delay time.Duration, timesFile string) {
	raw, err := net.Dial("tcp", "127.0.0.1:"+port)
	check(err)
	slow := &delayedConn{Conn: raw, delay: delay}
	conn := tls.Client(slow, &tls.Config{InsecureSkipVerify: true})
	check(conn.Handshake())
	slow.armed = true
	var times strings.Builder
	for i := 0; i < count; i++ {
		start := time.Now().UnixNano()
		_, err := fmt.Fprintf(conn, "slow-write-%d", i)
		check(err)
		fmt.Fprintf(&times, "%d %d\n", start, time.Now().UnixNano())
	}
	check(conn.Close())
	check(os.WriteFile(timesFile, []byte(times.String()), 0o600))
}

func atoi(text string) int {
	var n int
	_, err := fmt.Sscan(text, &n)
	check(err)
	return n
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
