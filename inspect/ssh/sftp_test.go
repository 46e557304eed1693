package ssh

import (
	"bytes"
	"sync/atomic"
	"testing"
)

// TestPacketsDropAfterSendBefore: a request that is judged after what came
// before it in the same read was sent, and then refused, reaches the
// target neither whole nor in part, and the stream stays in step.
func TestPacketsDropAfterSendBefore(t *testing.T) {
	const fxpStat = 17
	before := sftpPacket(fxpStat, 1, "/a/long/path/so/this/packet/is/longer/than/the/next/one")
	denied := sftpPacket(fxpRemove, 2, "/secret")
	after := sftpPacket(fxpStat, 3, "/b")
	src := bytes.NewReader(append(append(append([]byte(nil), before...), denied...), after...))
	var dst writes
	var n atomic.Int64
	err := packets(src, &dst, &n, func(pkt []byte, sendBefore func() error) bool {
		if pkt[4] != fxpRemove {
			return true
		}
		if err := sendBefore(); err != nil {
			t.Fatal(err)
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dst) == 0 || !bytes.Equal(dst[0], before) {
		t.Errorf("first write %q, want what came before the judged packet, %q", dst, before)
	}
	if got, want := bytes.Join(dst, nil), append(append([]byte(nil), before...), after...); !bytes.Equal(got, want) {
		t.Errorf("relayed %q, want %q", got, want)
	}
	if n.Load() != int64(len(before)+len(denied)+len(after)) {
		t.Errorf("counted %d bytes", n.Load())
	}
}

// writes keeps each Write apart.
type writes [][]byte

func (w *writes) Write(p []byte) (int, error) {
	*w = append(*w, append([]byte(nil), p...))
	return len(p), nil
}
