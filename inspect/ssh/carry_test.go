package ssh

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// maskRig is an outputMask with the policy's masker, collecting its
// ssh.mask entries.
type maskRig struct {
	om     *outputMask
	masker *policy.Masker
	mu     sync.Mutex
	posted []model.MaskDecision
}

func newMaskRig(t testing.TB, rules ...model.MaskRule) *maskRig {
	t.Helper()
	r := &maskRig{masker: policy.NewMaskerWithKey(make([]byte, 32))}
	om, err := newOutputMask(testMasker{r.masker}, &model.MaskSpec{Rules: rules})
	if err != nil || om == nil {
		t.Fatalf("newOutputMask: %v %v", om, err)
	}
	om.delay = time.Hour // the split tests must not depend on timing
	om.post = func(d model.MaskDecision) {
		r.mu.Lock()
		r.posted = append(r.posted, d)
		r.mu.Unlock()
	}
	r.om = om
	return r
}

// outputs collects what one stream sends and records.
type outputs struct {
	mu               sync.Mutex
	client, recorded []byte
	sends            int
	times            []time.Time // of each send
}

func (o *outputs) stream(om *outputMask) *maskedOutput {
	return om.stream(func(p []byte) error {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.times = append(o.times, time.Now())
		o.sends++
		o.client = append(o.client, p...)
		return nil
	}, func(p []byte) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.recorded = append(o.recorded, p...)
	}, nil)
}

func (o *outputs) get() (client, recorded string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.client), string(o.recorded)
}

// run feeds chunks to a fresh stream and closes it.
func (r *maskRig) run(chunks ...[]byte) (client, recorded string) {
	var o outputs
	mo := o.stream(r.om)
	for _, c := range chunks {
		mo.write(c)
	}
	mo.close()
	r.om.finish()
	return o.get()
}

// evidence sums the posted entries by detector: count and hashes.
func (r *maskRig) evidence() map[string]model.MaskDecision {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]model.MaskDecision{}
	for _, d := range r.posted {
		e := out[d.Detector]
		e.Rule, e.Detector = d.Rule, d.Detector
		e.Count += d.Count
		e.Hashes = append(e.Hashes, d.Hashes...)
		out[d.Detector] = e
	}
	return out
}

type secretCase struct {
	name, det, secret string
	// before and after surround the secret in the output.
	before, after string
	// optional: skipped when policy's detector does not find the secret
	// in the whole text (a detector's feature, not an example of it).
	optional bool
}

// testKeyPEM is an OpenSSH ed25519 private key.
func testKeyPEM(t testing.TB) string {
	_, p := newSigner(t)
	return strings.TrimSuffix(string(p), "\n")
}

// rsaLikePEM is a PKCS#1-shaped block of random base64, 64 columns, with
// the pty's CRLF line ends.
func rsaLikePEM(n int) string {
	raw := make([]byte, n)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	var b strings.Builder
	b.WriteString("-----BEGIN RSA PRIVATE KEY-----\r\n")
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\r\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\r\n-----END RSA PRIVATE KEY-----")
	return b.String()
}

// secretCases are the examples of every detector (policy/detect_test.go),
// in output around them.
func secretCases(t testing.TB) []secretCase {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	line := func(name, det, secret string) secretCase {
		return secretCase{name: name, det: det, secret: secret, before: "$ cat notes\nsee ", after: " today\r\n$ "}
	}
	return []secretCase{
		line("email", "email", "jane.doe+ci@example.co.uk"),
		line("card-spaced", "card", "4111 1111 1111 1111"),
		line("card-amex", "card", "378282246310005"),
		line("national_id", "national_id", "123-45-6789"),
		line("cloud_key-aws", "cloud_key", "AKIAIOSFODNN7EXAMPLE"),
		line("cloud_key-google", "cloud_key", "AIza"+strings.Repeat("B", 35)),
		line("token-github", "token", "ghp_"+strings.Repeat("a", 36)),
		line("token-slack", "token", "xoxb-1234567890-abcdefghij"),
		line("token-jwt", "token", jwt),
		{name: "national_id-keyword", det: "national_id", secret: "123456789", before: "$ cat hr.txt\nSSN:\n", after: "\n$ ", optional: true},
		{name: "private_key-openssh", det: "private_key", secret: testKeyPEM(t), before: "$ cat id\n", after: "\n$ "},
		{name: "private_key-rsa-crlf", det: "private_key", secret: rsaLikePEM(600), before: "$ cat key.pem\r\n", after: "\r\n$ "},
	}
}

// TestSecretSplitAcrossReads feeds each example split in two at every
// offset, live and not: the client and the recorded copy never hold the
// original, and get exactly what one read would have given.
func TestSecretSplitAcrossReads(t *testing.T) {
	for _, c := range secretCases(t) {
		text := c.before + c.secret + c.after
		want := c.before + marker(c.det, []byte(c.secret)) + c.after
		if c.optional && len(policy.Detect([]string{c.det}, []byte(text))) == 0 {
			t.Logf("%s: policy does not find %q here", c.name, c.secret)
			continue
		}
		for _, live := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/live=%v", c.name, live), func(t *testing.T) {
				check := func(what string, chunks ...[]byte) {
					t.Helper()
					r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: policy.MaskDetectorNames(), Live: live})
					client, recorded := r.run(chunks...)
					if recorded != want {
						t.Fatalf("%s: recorded %q, want %q", what, recorded, want)
					}
					wantClient := text
					if live {
						wantClient = want
					}
					if client != wantClient {
						t.Fatalf("%s: client got %q, want %q", what, client, wantClient)
					}
					ev := r.evidence()
					if len(ev) != 1 || ev[c.det].Count != 1 || ev[c.det].Rule != "m" ||
						!bytes.Equal(ev[c.det].Hashes, r.masker.Hash([]byte(c.secret))) {
						t.Fatalf("%s: evidence %+v", what, ev)
					}
				}
				check("one read", []byte(text))
				if strings.Contains(want, c.secret) {
					t.Fatalf("the marker shows the secret: %q", want)
				}
				start := len(c.before)
				for i := start; i <= start+len(c.secret); i++ {
					check(fmt.Sprintf("split at %d", i), []byte(text[:i]), []byte(text[i:]))
				}
				var bytewise [][]byte
				for i := range len(text) {
					bytewise = append(bytewise, []byte(text[i:i+1]))
				}
				check("a read per byte", bytewise...)
			})
		}
	}
}

// TestSecretSplitAcrossThreeReads splits the short examples at every pair
// of offsets.
func TestSecretSplitAcrossThreeReads(t *testing.T) {
	for _, c := range secretCases(t) {
		if c.det == "private_key" || c.optional {
			continue
		}
		text := c.before + c.secret + c.after
		want := c.before + marker(c.det, []byte(c.secret)) + c.after
		start, end := len(c.before), len(c.before)+len(c.secret)
		for i := start; i <= end; i++ {
			for j := i; j <= end; j++ {
				r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: []string{c.det}, Live: true})
				client, recorded := r.run([]byte(text[:i]), []byte(text[i:j]), []byte(text[j:]))
				if client != want || recorded != want {
					t.Fatalf("%s split at %d, %d: client %q recorded %q", c.name, i, j, client, recorded)
				}
			}
		}
	}
}

// TestMixedLiveRules: the client sees what the live rules mask, the
// journal what every rule masks, wherever the reads split.
func TestMixedLiveRules(t *testing.T) {
	text := "mail bob@example.org, card 4111 1111 1111 1111 and more\n"
	wantRec := "mail ***@***, card ****-****-****-1111 and more\n"
	wantLive := "mail ***@***, card 4111 1111 1111 1111 and more\n"
	for i := 1; i < len(text); i++ {
		r := newMaskRig(t,
			model.MaskRule{Rule: "mail", Detectors: []string{"email"}, Live: true},
			model.MaskRule{Rule: "cards", Detectors: []string{"card"}})
		client, recorded := r.run([]byte(text[:i]), []byte(text[i:]))
		if client != wantLive || recorded != wantRec {
			t.Fatalf("split at %d: client %q recorded %q", i, client, recorded)
		}
		ev := r.evidence()
		if ev["email"].Rule != "mail" || ev["email"].Count != 1 || ev["card"].Rule != "cards" || ev["card"].Count != 1 {
			t.Fatalf("split at %d: evidence %+v", i, ev)
		}
	}
}

// TestLongLines: a secret in a line longer than the window is found
// wherever the reads split it.
func TestLongLines(t *testing.T) {
	var b, want strings.Builder
	for i := range 12 {
		fill := strings.Repeat(fmt.Sprintf("w%d ", i), 100+i*40)
		b.WriteString(fill + "user" + itoa(int64(i)) + "@example.com ")
		want.WriteString(fill + "***@*** ")
	}
	b.WriteString("\n")
	want.WriteString("\n")
	text := b.String()
	if len(text) < 3*lineWindow {
		t.Fatalf("line of %d bytes", len(text))
	}
	for _, size := range []int{13, 1000, lineWindow - 1, lineWindow + 1, 10000} {
		r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: []string{"email"}, Live: true})
		var chunks [][]byte
		for i := 0; i < len(text); i += size {
			chunks = append(chunks, []byte(text[i:min(i+size, len(text))]))
		}
		client, recorded := r.run(chunks...)
		if client != want.String() || recorded != want.String() {
			t.Fatalf("reads of %d: client %q", size, client)
		}
		if n := r.evidence()["email"].Count; n != 12 {
			t.Fatalf("reads of %d: %d emails", size, n)
		}
	}
}

// TestUnterminatedKeyIsMasked: a key block whose END line never comes is
// masked up to the first line that cannot belong to it; the rest of the
// output is left alone.
func TestUnterminatedKeyIsMasked(t *testing.T) {
	key := rsaLikePEM(600)
	cutKey := key[:strings.LastIndex(key, "-----END")]
	cutKey = cutKey[:len(cutKey)-40] // a line cut in the middle, no END
	for _, tail := range []string{"", "\r\n$ ls\r\nfoo.txt\r\n"} {
		text := "$ head -c 500 key.pem\r\n" + cutKey + tail
		want := "$ head -c 500 key.pem\r\n" + "[REDACTED private_key]" + tail
		for _, live := range []bool{true, false} {
			for i := 1; i < len(text); i += 13 {
				r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: []string{"private_key"}, Live: live})
				client, recorded := r.run([]byte(text[:i]), []byte(text[i:]))
				if recorded != want || (live && client != want) || (!live && client != text) {
					t.Fatalf("tail %q live %v split at %d: client %q recorded %q", tail, live, i, client, recorded)
				}
				ev := r.evidence()["private_key"]
				if ev.Count != 1 || !bytes.Equal(ev.Hashes, r.masker.Hash([]byte(cutKey))) {
					t.Fatalf("split at %d: evidence %+v", i, ev)
				}
			}
		}
	}
}

// TestKeyLongerThanTheWindow: a block over keyWindow is released masked as
// it goes, and what follows is masked up to its END line.
func TestKeyLongerThanTheWindow(t *testing.T) {
	key := rsaLikePEM(keyWindow) // about 22 KiB of base64
	text := "before\n" + key + "\nafter\n"
	for _, size := range []int{1000, 4096, 50000} {
		r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: []string{"private_key"}, Live: true})
		var chunks [][]byte
		for i := 0; i < len(text); i += size {
			chunks = append(chunks, []byte(text[i:min(i+size, len(text))]))
		}
		client, recorded := r.run(chunks...)
		if want := "before\n[REDACTED private_key]\nafter\n"; client != want || recorded != want {
			t.Fatalf("reads of %d: client %q", size, client)
		}
		ev := r.evidence()["private_key"]
		if ev.Count != 1 || !bytes.Equal(ev.Hashes, r.masker.Hash([]byte(key))) {
			t.Fatalf("reads of %d: evidence count %d", size, ev.Count)
		}
	}
}

// waitSends waits for the stream's nth send.
func (o *outputs) waitSends(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		o.mu.Lock()
		got := o.sends
		o.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sends after %v, want %d", got, within, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHeldBytesAreReleasedByTheTimer: a prompt without a newline reaches
// the client and the journal within releaseAfter, not at the next read.
func TestHeldBytesAreReleasedByTheTimer(t *testing.T) {
	r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: policy.MaskDetectorNames(), Live: true})
	r.om.delay = releaseAfter
	var o outputs
	mo := o.stream(r.om)
	start := time.Now()
	mo.write([]byte("total 0\r\nalice@web-1:~$ "))
	client, _ := o.get()
	if client != "total 0\r\n" {
		t.Fatalf("at once the client got %q", client)
	}
	o.waitSends(t, 2, 5*time.Second)
	o.mu.Lock()
	took := o.times[1].Sub(start)
	o.mu.Unlock()
	client, recorded := o.get()
	if client != "total 0\r\nalice@web-1:~$ " || recorded != client {
		t.Fatalf("client %q recorded %q", client, recorded)
	}
	if took < releaseAfter || took > releaseAfter+500*time.Millisecond {
		t.Errorf("the prompt came after %v; the bound is %v", took, releaseAfter)
	}
	// Keystrokes' echoes arriving faster than the timer are each
	// delivered within the bound too: the timer runs from the oldest
	// held byte.
	for _, k := range "ls -l /var/log" {
		mo.write([]byte(string(k)))
		time.Sleep(releaseAfter / 5)
	}
	mo.close()
	client, _ = o.get()
	if !strings.HasSuffix(client, "$ ls -l /var/log") {
		t.Errorf("client %q", client)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sends < 4 {
		t.Errorf("%d sends: the echoes waited for the end", o.sends)
	}
}

// TestTimerReleaseInsideAKey: a key block whose END line comes after the
// timer released its start is masked all the way.
func TestTimerReleaseInsideAKey(t *testing.T) {
	r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: policy.MaskDetectorNames(), Live: true})
	r.om.delay = 10 * time.Millisecond
	key := rsaLikePEM(900)
	i := strings.Index(key, "\r\n") + 200
	var o outputs
	mo := o.stream(r.om)
	mo.write([]byte("$ cat key\r\n" + key[:i]))
	o.waitSends(t, 2, 5*time.Second)
	mo.write([]byte(key[i:] + "\r\n$ "))
	mo.close()
	r.om.finish()
	client, recorded := o.get()
	want := "$ cat key\r\n[REDACTED private_key]\r\n$ "
	if client != want || recorded != want {
		t.Fatalf("client %q recorded %q", client, recorded)
	}
	ev := r.evidence()["private_key"]
	if ev.Count != 1 || !bytes.Equal(ev.Hashes, r.masker.Hash([]byte(key))) {
		t.Fatalf("evidence %+v", ev)
	}
}

// TestMaskEvidenceIsSplit: hashes beyond one entry's share go to further
// ssh.mask entries, none is dropped.
func TestMaskEvidenceIsSplit(t *testing.T) {
	r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: []string{"email", "national_id"}})
	r.om.perRecord = 3
	var text strings.Builder
	var want []byte
	for i := range 7 {
		e := fmt.Sprintf("u%d@example.com", i)
		text.WriteString(e + " 123-45-6789\n")
		want = append(want, r.masker.Hash([]byte(e))...)
	}
	r.run([]byte(text.String()))
	var counts []int
	var hashes []byte
	for _, d := range r.posted {
		if d.Detector != "email" {
			if d.Count != 7 && d.Count != 3 && d.Count != 1 {
				t.Errorf("national_id entry %+v", d)
			}
			continue
		}
		if d.Rule != "m" || len(d.Hashes) != 16*d.Count {
			t.Errorf("entry %+v", d)
		}
		counts = append(counts, d.Count)
		hashes = append(hashes, d.Hashes...)
	}
	if fmt.Sprint(counts) != "[3 3 1]" || !bytes.Equal(hashes, want) {
		t.Errorf("email entries: counts %v, hashes equal %v", counts, bytes.Equal(hashes, want))
	}
	if n := r.evidence()["national_id"].Count; n != 7 {
		t.Errorf("national_id count %d", n)
	}
}

// TestMarkers: the markers are those of masked text values
// (docs/policy.md).
func TestMarkers(t *testing.T) {
	for _, c := range []struct{ det, orig, want string }{
		{"email", "bob@example.org", "***@***"},
		{"card", "4111 1111 1111 1111", "****-****-****-1111"},
		{"card", "378282246310005", "****-****-****-0005"},
		{"card", "4111111111111111@example.com", "****-****-****-****"}, // took in an email
		{"national_id", "123-45-6789", "***-**-****"},
		{"token", "ghp_x", "[REDACTED token]"},
		{"private_key", "-----BEGIN", "[REDACTED private_key]"},
	} {
		if got := marker(c.det, []byte(c.orig)); got != c.want {
			t.Errorf("marker(%s, %q) = %q, want %q", c.det, c.orig, got, c.want)
		}
	}
}

// TestSecretSplitByAPause documents the limit of the window: a secret
// whose parts come more than releaseAfter apart has its first part
// released as it was; what comes after the pause is still masked, since
// the released part is kept as context.
func TestSecretSplitByAPause(t *testing.T) {
	r := newMaskRig(t, model.MaskRule{Rule: "m", Detectors: policy.MaskDetectorNames(), Live: true})
	r.om.delay = 5 * time.Millisecond
	token := "ghp_" + strings.Repeat("a", 36)
	var o outputs
	mo := o.stream(r.om)
	mo.write([]byte("token " + token[:14]))
	o.waitSends(t, 1, 5*time.Second)
	mo.write([]byte(token[14:] + " end\n"))
	mo.close()
	r.om.finish()
	client, recorded := o.get()
	if want := "token " + token[:14] + "[REDACTED token] end\n"; client != want || recorded != want {
		t.Errorf("client %q recorded %q", client, recorded)
	}
	if ev := r.evidence()["token"]; ev.Count != 1 || !bytes.Equal(ev.Hashes, r.masker.Hash([]byte(token))) {
		t.Errorf("evidence %+v", ev)
	}
}
