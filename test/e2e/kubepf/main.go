// Command kubepf is the end-to-end tests' misbehaving port-forward client:
// with client-go's own dialers (SPDY, or SPDY tunnelled through a
// websocket) it opens a pod's portforward and then streams no kubectl
// would: for a port its request did not name, more at once than a server
// admits, and streams it never closes before it exits. It prints what it
// saw as one JSON line. With -tcp it is instead a plain TCP client of a
// forwarded local port: it sends -send bytes, half-closes, and counts
// what comes back.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

type result struct {
	// Errors are what each error stream said, by the action that opened
	// it ("" when it closed saying nothing, "open" when it stayed open).
	Errors map[string]string `json:"errors"`
	// Many is how many of the -many streams were refused, and what the
	// first refusal said.
	ManyRefused int    `json:"many_refused"`
	ManyError   string `json:"many_error,omitempty"`
	// HoldRead is what the held stream read from the pod.
	HoldRead int `json:"hold_read"`
	// TCPRead is what the -tcp client read back.
	TCPRead int64  `json:"tcp_read"`
	Error   string `json:"error,omitempty"`
}

func main() {
	server := flag.String("server", "", "API server URL")
	ca := flag.String("ca", "", "CA bundle file")
	cert := flag.String("cert", "", "client certificate file")
	key := flag.String("key", "", "client key file")
	pod := flag.String("pod", "", "pod name (namespace default)")
	query := flag.String("query", "", "the portforward request's query")
	tunnel := flag.Bool("tunnel", false, "tunnel SPDY through a websocket, as kubectl 1.31+ does")
	other := flag.Int("other", 0, "open a stream to this port")
	closed := flag.Int("closed", 0, "open a stream to this port (nothing listens)")
	hold := flag.Int("hold", 0, "open a stream to this port, send -hold-bytes, read -hold-read, and exit without closing it")
	holdBytes := flag.Int("hold-bytes", 0, "")
	holdRead := flag.Int("hold-read", 0, "")
	many := flag.Int("many", 0, "open this many streams to -many-port at once and keep them open")
	manyPort := flag.Int("many-port", 0, "")
	tcp := flag.String("tcp", "", "be a TCP client of this address instead")
	send := flag.Int("send", 0, "with -tcp: bytes to send before half-closing")
	flag.Parse()

	res := result{Errors: map[string]string{}}
	out := func() {
		json.NewEncoder(os.Stdout).Encode(res)
		// The streams still open are not closed: the process just ends.
		os.Exit(0)
	}
	if *tcp != "" {
		n, err := tcpClient(*tcp, *send)
		res.TCPRead = n
		if err != nil {
			res.Error = err.Error()
		}
		out()
	}
	cfg := &rest.Config{Host: *server, TLSClientConfig: rest.TLSClientConfig{CAFile: *ca, CertFile: *cert, KeyFile: *key}}
	u, err := url.Parse(*server + "/api/v1/namespaces/default/pods/" + *pod + "/portforward")
	if err != nil {
		res.Error = err.Error()
		out()
	}
	u.RawQuery = *query
	var dialer httpstream.Dialer
	if *tunnel {
		dialer, err = portforward.NewSPDYOverWebsocketDialer(u, cfg)
	} else {
		var tr http.RoundTripper
		var up spdy.Upgrader
		tr, up, err = spdy.RoundTripperFor(cfg)
		dialer = spdy.NewDialer(up, &http.Client{Transport: tr}, http.MethodPost, u)
	}
	if err != nil {
		res.Error = err.Error()
		out()
	}
	conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		res.Error = "dial: " + err.Error()
		out()
	}
	id := 0
	open := func(port int) (httpstream.Stream, <-chan string, error) {
		id++
		h := http.Header{}
		h.Set(v1.StreamType, v1.StreamTypeError)
		h.Set(v1.PortHeader, strconv.Itoa(port))
		h.Set(v1.PortForwardRequestIDHeader, strconv.Itoa(id))
		es, err := conn.CreateStream(h)
		if err != nil {
			return nil, nil, err
		}
		es.Close()
		msg := make(chan string, 1)
		go func() { b, _ := io.ReadAll(es); msg <- string(b) }()
		h.Set(v1.StreamType, v1.StreamTypeData)
		ds, err := conn.CreateStream(h)
		return ds, msg, err
	}
	wait := func(msg <-chan string, d time.Duration) string {
		select {
		case m := <-msg:
			return m
		case <-time.After(d):
			return "open"
		}
	}
	for name, port := range map[string]int{"other": *other, "closed": *closed} {
		if port == 0 {
			continue
		}
		ds, msg, err := open(port)
		switch {
		case err != nil && msg == nil:
			res.Errors[name] = "create: " + err.Error()
			continue
		case err != nil:
			// Refused at once: the data stream may be reset before its
			// creation is answered; the reason is on the error stream.
		default:
			ds.Close()
		}
		res.Errors[name] = wait(msg, 10*time.Second)
	}
	if *hold != 0 {
		ds, _, err := open(*hold)
		if err != nil {
			res.Error = "hold: " + err.Error()
			out()
		}
		if _, err := ds.Write(make([]byte, *holdBytes)); err != nil {
			res.Error = "hold: " + err.Error()
			out()
		}
		n, _ := io.ReadFull(ds, make([]byte, *holdRead))
		res.HoldRead = n
	}
	if *many > 0 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range *many {
			ds, msg, err := open(*manyPort)
			switch {
			case err != nil && msg == nil:
				res.Error = "many: " + err.Error()
				out()
			case err != nil:
				// A server that refuses a stream pair at once may reset
				// its data stream before it has answered its creation.
			default:
				// Read, or spdystream's frame workers stall on the unread
				// data and no further stream is answered.
				go io.Copy(io.Discard, ds)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if m := wait(msg, 5*time.Second); m != "open" {
					mu.Lock()
					res.ManyRefused++
					if res.ManyError == "" || !strings.Contains(m, "interlock") {
						res.ManyError = m
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	fmt.Fprintln(os.Stderr, "kubepf: exiting with its streams open")
	out()
}

func tcpClient(addr string, send int) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(make([]byte, send)); err != nil {
		return 0, err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, c)
}
