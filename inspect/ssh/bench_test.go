package ssh

import (
	"io"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
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

// BenchmarkMaskedOutput measures the output masking of a channel: text
// with a secret every few lines, in reads of ioBufSize, all detectors,
// live; "detect" is policy.Detect alone over the same reads (the cost
// without the carry-over window).
func BenchmarkMaskedOutput(b *testing.B) {
	var text []byte
	for i := 0; len(text) < 8<<20; i++ {
		text = append(text, "2026-11-26 12:00:01 worker-3 processed order 12345 for customer 678 in 35 ms\n"...)
		if i%10 == 0 {
			text = append(text, "contact jane.doe@example.com card 4111 1111 1111 1111\n"...)
		}
	}
	b.Run("carry", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			r := newMaskRig(b, model.MaskRule{Rule: "m", Detectors: policy.MaskDetectorNames(), Live: true})
			mo := r.om.stream(func([]byte) error { return nil }, func([]byte) {}, nil)
			for i := 0; i < len(text); i += ioBufSize {
				mo.write(text[i:min(i+ioBufSize, len(text))])
			}
			mo.close()
		}
	})
	b.Run("detect", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			for i := 0; i < len(text); i += ioBufSize {
				policy.Detect(policy.MaskDetectorNames(), text[i:min(i+ioBufSize, len(text))])
			}
		}
	})
}
