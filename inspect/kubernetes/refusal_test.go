package kubernetes

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
)

// TestUpgradeRefusalReachesClient: an exec or port-forward that asks to
// upgrade its HTTP/1.1 connection and is answered with an error (here a
// malformed request) gets that answer whole, every time. Interlock used to
// end such a connection as if it had been taken over, racing net/http's
// flush of the answer: the client often saw the connection close with no
// response at all (kubectl: "error upgrading connection: unexpected EOF").
func TestUpgradeRefusalReachesClient(t *testing.T) {
	// A journal as slow to take a response record as a loaded disk's
	// makes the race certain: the record is posted after the handler
	// ended the connection and before net/http flushes the answer.
	s := serveThrough(t, nil, func(j model.Recorder) model.Recorder { return slowPosts{j} })
	tc, err := rest.TLSConfigFor(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.NextProtos = []string{"http/1.1"}
	host := strings.TrimPrefix(s.cfg.Host, "https://")
	pod := "/api/v1/namespaces/default/pods/" + kubetest.PodName
	for _, c := range []struct{ name, path, want string }{
		{"exec without streams", pod + "/exec?container=" + kubetest.Container + "&command=true", "at least 1 of stdin, stdout, stderr"},
		{"port-forward to a bad port", pod + "/portforward?ports=" + url.QueryEscape("0"), "invalid port"},
	} {
		for i := range 20 {
			conn, err := tls.Dial("tcp", host, tc)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n", c.path, host)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				conn.Close()
				t.Fatalf("%s, try %d: no answer: %v", c.name, i, err)
			}
			body, err := io.ReadAll(resp.Body)
			conn.Close()
			if resp.StatusCode != http.StatusBadRequest || err != nil || !strings.Contains(string(body), c.want) {
				t.Fatalf("%s, try %d: %d %q (%v), want 400 saying %q", c.name, i, resp.StatusCode, body, err, c.want)
			}
		}
	}
}

// slowPosts takes 5 ms over each posted record.
type slowPosts struct{ model.Recorder }

func (s slowPosts) Post(rec model.Record) {
	time.Sleep(5 * time.Millisecond)
	s.Recorder.Post(rec)
}
