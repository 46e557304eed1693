package ssh

import (
	"io"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// benchUpload sends size bytes to `cat > /dev/null` over an exec channel.
func benchUpload(b *testing.B, c *gossh.Client, size int64) {
	b.Helper()
	sess, err := c.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	w, _ := sess.StdinPipe()
	if err := sess.Start("cat > /dev/null"); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	if err := sess.Wait(); err != nil {
		b.Fatal(err)
	}
}

func benchDownload(b *testing.B, c *gossh.Client, size int64) {
	sess, err := c.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	r, _ := sess.StdoutPipe()
	if err := sess.Start("head -c " + itoa(size) + " /dev/zero"); err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, r)
	if n != size {
		b.Fatalf("got %d", n)
	}
	sess.Wait()
}

func BenchmarkRelay(b *testing.B) {
	const size = 64 << 20
	for _, via := range []string{"direct", "interlock"} {
		for _, dir := range []string{"up", "down"} {
			b.Run(via+"-"+dir, func(b *testing.B) {
				r := newRig(b, rigOpts{})
				var c *gossh.Client
				var err error
				if via == "direct" {
					c, err = gossh.Dial("tcp", r.target.addr().String(), &gossh.ClientConfig{User: "alice",
						Auth: []gossh.AuthMethod{gossh.PublicKeys(r.credKey)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
				} else {
					c, err = r.dial("alice")
				}
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				b.SetBytes(size)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if dir == "up" {
						benchUpload(b, c, size)
					} else {
						benchDownload(b, c, size)
					}
				}
			})
		}
	}
}
