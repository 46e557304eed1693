package ssh

import (
	"bytes"
	"fmt"
	"io"

	"github.com/interlock/interlock/model"
)

// Tunnel detection.
//
// An exec or a shell is a byte pipe: `bash -c 'exec 3<>/dev/tcp/HOST/22;
// cat <&3 & cat >&3'`, nc or socat turn it into a relay, and an SSH client
// speaking through it opens a session interlock sees as ciphertext only.
// An sftp server started under a name interlock does not recognise
// (a copy, a wrapper) turns it into an sftp session judged by no sftp
// rule. So the data of exec and shell channels (and of subsystems other
// than sftp) is scanned for the first bytes of those protocols, and a
// channel that carries them is ended (both legs) unless the target's
// exec.tunnels is allow:
//
//   - an SSH identification string, "SSH-2.0-" or "SSH-1.99-" at the start
//     of a line (RFC 4253 4.2: what every SSH client and server sends
//     first), in either direction, stdout and stderr included;
//   - an SSH_FXP_INIT packet from the client: uint32 length 5..255, type 1,
//     uint32 version 1..6, anywhere in its data.
//
// Both are tripwires for the plain forms, not a proof of absence: a
// relay that encodes what it carries (base64, a prefix per line) passes.
// The exec allowlist is what keeps a relay from starting at all.
//
// The scan keeps a few bytes of state per stream, so a banner split
// across reads, or after other output, is found; its cost is a memchr for
// newlines (and for 0x01 in the client's data) plus a few steps per line.

// tunnelScan scans one stream of a channel.
type tunnelScan struct {
	// pos is how many bytes of the current line matched a banner prefix
	// (-1: the line cannot be one); m1 and m2 say which prefix still
	// matches.
	pos    int
	m1, m2 bool
	// sftpInit: look for SSH_FXP_INIT (the client's data). tail holds
	// the last bytes of the previous read, for a packet split across.
	sftpInit bool
	tail     [sftpInitLen - 1]byte
	tailLen  int
}

const (
	bannerV2    = "SSH-2.0-"
	bannerV199  = "SSH-1.99-"
	sftpInitLen = 9 // uint32 length, byte type, uint32 version
)

func newTunnelScan(client bool) *tunnelScan {
	return &tunnelScan{m1: true, m2: true, sftpInit: client}
}

// scan reports what p (with what came before it) shows of a tunnel, or
// "". before is how many bytes of p come ahead of the tunnel's start
// (the lines before a banner, however the reads split them); 0 when it
// began in an earlier read, or for the client's sftp handshake.
func (t *tunnelScan) scan(p []byte) (found string, before int) {
	if ok, start := t.banner(p); ok {
		return "an SSH identification string", start
	}
	if t.sftpInit && t.initPacket(p) {
		return "an sftp handshake (SSH_FXP_INIT)", 0
	}
	return "", 0
}

// banner follows p line by line: memchr to each newline, then at most
// len(bannerV199) steps. On a find, start is where in p the banner's
// line begins.
func (t *tunnelScan) banner(p []byte) (found bool, start int) {
	for i := 0; i < len(p); {
		if t.pos < 0 {
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return false, 0
			}
			i += j + 1
			t.pos, t.m1, t.m2 = 0, true, true
			start = i
			continue
		}
		b := p[i]
		i++
		if b == '\n' {
			t.pos, t.m1, t.m2 = 0, true, true
			start = i
			continue
		}
		n := t.pos
		t.m1 = t.m1 && n < len(bannerV2) && bannerV2[n] == b
		t.m2 = t.m2 && n < len(bannerV199) && bannerV199[n] == b
		switch {
		case t.m1 && n+1 == len(bannerV2), t.m2 && n+1 == len(bannerV199):
			return true, start
		case !t.m1 && !t.m2:
			t.pos = -1
		default:
			t.pos++
		}
	}
	return false, 0
}

// initPacket looks for an SSH_FXP_INIT packet in p, and across the end
// of the previous read.
func (t *tunnelScan) initPacket(p []byte) bool {
	if t.tailLen > 0 {
		var edge [2*sftpInitLen - 2]byte
		n := copy(edge[:], t.tail[:t.tailLen])
		n += copy(edge[n:], p[:min(len(p), sftpInitLen-1)])
		if findInit(edge[:n]) {
			return true
		}
	}
	if findInit(p) {
		return true
	}
	if len(p) >= len(t.tail) {
		t.tailLen = copy(t.tail[:], p[len(p)-len(t.tail):])
	} else {
		// Keep the newest bytes of tail and p.
		keep := min(t.tailLen, len(t.tail)-len(p))
		copy(t.tail[:], t.tail[t.tailLen-keep:t.tailLen])
		t.tailLen = keep + copy(t.tail[keep:], p)
	}
	return false
}

// findInit finds 00 00 00 L 01 00 00 00 V (L in 5..255, V in 1..6).
func findInit(p []byte) bool {
	for i := 0; i+sftpInitLen <= len(p); {
		j := bytes.IndexByte(p[i+4:len(p)-4], 1)
		if j < 0 {
			return false
		}
		k := i + 4 + j // the type byte
		q := p[k-4 : k+5]
		if q[0] == 0 && q[1] == 0 && q[2] == 0 && q[3] >= 5 && q[5] == 0 && q[6] == 0 && q[7] == 0 && q[8] >= 1 && q[8] <= 6 {
			return true
		}
		i = k - 3
	}
	return false
}

// tunnelReason is the journaled reason for ending a channel.
func tunnelReason(found, stream string) string {
	from := "the client's data"
	switch stream {
	case "o":
		from = "the target's output"
	case "e":
		from = "the target's error output"
	}
	return fmt.Sprintf("%s in %s: a protocol tunnelled through the channel, which interlock would record as opaque bytes; "+
		"set exec.tunnels: allow on the target if this is intended", found, from)
}

// scanner is a stream's scanner, nil when the channel is not scanned.
func scanner(scan, client bool) *tunnelScan {
	if !scan {
		return nil
	}
	return newTunnelScan(client)
}

// tunnelIn scans a chunk of the channel's data; on a find it ends the
// channel and says so.
//
// pass, when not nil, gets the bytes of p ahead of the tunnel before the
// channel ends: the output before a banner's line is the target's
// ordinary output, and how the reads happened to split it must not
// decide whether the client sees it.
func (s *sessionChan) tunnelIn(tun *tunnelScan, p []byte, stream string, pass io.Writer) bool {
	if tun == nil {
		return false
	}
	found, before := tun.scan(p)
	if found == "" {
		return false
	}
	if pass != nil && before > 0 {
		pass.Write(p[:before])
	}
	s.endTunnel(found, stream)
	return true
}

// endTunnel ends a channel that carries a tunnel: the target's side is
// closed first (nothing more of the client's reaches it), the refusal is
// journaled, the client is told why and its side closed.
func (s *sessionChan) endTunnel(found, stream string) {
	s.tunnelOnce.Do(func() {
		s.uch.Close()
		// The chunk that carried the tunnel is journaled before the
		// refusal.
		s.io.flush()
		rec := s.request("tunnel")
		rec.Command = s.command
		rec.Decision = model.Decision{Action: model.Deny, Rule: "tunnel", Reason: tunnelReason(found, stream)}
		s.c.record(model.KindSSHRequest, rec, model.Synced)
		s.c.log.Warn("ssh channel ended: tunnel", "channel", s.id, "command", s.command, "found", found, "stream", stream)
		msg := []byte("\r\ninterlock: channel ended by policy (tunnel): " + rec.Decision.Reason + "\r\n")
		s.io.post("e", msg)
		s.cch.Stderr().Write(msg)
		s.cch.Close()
	})
}
