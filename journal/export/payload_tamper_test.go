package export

import (
	"context"
	"encoding/base64"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
)

// A forger who rewrites payloads.jsonl, with the manifest's hashes made to
// agree, is caught by the payload's commitment or by the line's canonical
// form, before the seal: the verifier reads the exporter's own form fast
// and everything else through encoding/json, and both must refuse.
func TestBundlePayloadTampering(t *testing.T) {
	f := newFixture(t, 2)
	out, _ := f.export(t, journal.Selection{})
	files := testkit.ReadTarGz(t, out)
	lines := strings.SplitAfter(string(files[evidence.FilePayloads]), "\n")
	lines = lines[:len(lines)-1]
	if len(lines) < 2 {
		t.Fatalf("the fixture's bundle has %d payloads; the test needs two", len(lines))
	}
	first := strings.TrimSuffix(lines[0], "\n")
	salt := regexp.MustCompile(`"salt":"([0-9a-f]{64})"`).FindStringSubmatch(first)
	data := regexp.MustCompile(`"data":"([^"]*)"`).FindStringSubmatch(first)
	seq := regexp.MustCompile(`^\{"seq":([0-9]+),`).FindStringSubmatch(first)
	if salt == nil || data == nil || seq == nil {
		t.Fatalf("payload line not in the exporter's form: %s", first)
	}
	raw, err := base64.StdEncoding.DecodeString(data[1])
	if err != nil || len(raw) == 0 {
		t.Fatalf("payload data %q: %v", data[1], err)
	}
	other := append([]byte(nil), raw...)
	other[0] ^= 1
	unpadded := base64.RawStdEncoding.EncodeToString(raw)
	if unpadded == data[1] { // no padding to drop: cut a character instead
		unpadded = data[1][:len(data[1])-1]
	}
	otherSalt := "0" + salt[1][1:]
	if salt[1][0] == '0' {
		otherSalt = "1" + salt[1][1:]
	}
	forger, _ := journal.LoadOrCreateKey(t.TempDir())
	for name, tc := range map[string]struct{ line, want string }{
		"other data":       {strings.Replace(first, data[1], base64.StdEncoding.EncodeToString(other), 1), "does not match the commitment"},
		"other salt":       {strings.Replace(first, salt[1], otherSalt, 1), "does not match the commitment"},
		"uppercase salt":   {strings.Replace(first, salt[1], strings.ToUpper(salt[1]), 1), "malformed"},
		"short salt":       {strings.Replace(first, salt[1], salt[1][2:], 1), "malformed"},
		"unpadded data":    {strings.Replace(first, data[1], unpadded, 1), "malformed"},
		"escaped data":     {strings.Replace(first, `"data":"`+data[1][:1], `"data":"\u00`+hexByte(data[1][0]), 1), "canonical form"},
		"space":            {strings.Replace(first, `"seq":`, `"seq": `, 1), "canonical form"},
		"fields reordered": {`{"salt":"` + salt[1] + `","seq":` + seq[1] + `,"data":"` + data[1] + `"}`, "canonical form"},
		"extra field":      {strings.TrimSuffix(first, "}") + `,"x":1}`, "canonical form"},
		"leading zero":     {strings.Replace(first, `"seq":`, `"seq":0`, 1), "parse"},
		"no such entry":    {strings.Replace(first, `"seq":`+seq[1], `"seq":1`, 1), "commits to no payload"},
		"repeated":         {first + "\n" + first, "out of order"},
	} {
		t.Run(name, func(t *testing.T) {
			payloads := strings.Join(append([]string{tc.line + "\n"}, lines[1:]...), "")
			forged := rewriteBundle(t, files, func(_ *evidence.Manifest, files map[string][]byte) {
				files[evidence.FilePayloads] = []byte(payloads)
			}, func(sw *evidence.SealWriter, of *os.File) error { return sw.Finish(of, forger) })
			rep, err := evidence.VerifyBundle(context.Background(), forged, evidence.BundleOptions{PublicKey: f.signer.Verifier()})
			if err != nil || rep.OK {
				t.Fatalf("not detected: %+v %v", rep, err)
			}
			if rep.File != evidence.FilePayloads || !strings.Contains(rep.Reason, tc.want) {
				t.Fatalf("caught as %s: %q, want in %s: %q", rep.File, rep.Reason, evidence.FilePayloads, tc.want)
			}
		})
	}
}

func hexByte(c byte) string {
	return strings.ToLower(string("0123456789ABCDEF"[c>>4]) + string("0123456789ABCDEF"[c&15]))
}

// Payloads left out of payloads.jsonl read as deleted (as retention
// deletes them), and the manifest must count them so: an unsealed bundle,
// which its signed checkpoints vouch for, shows the count is checked
// against the entries' commitments and not taken from the manifest.
func TestBundleDeletedPayloadsCounted(t *testing.T) {
	f := newFixture(t, 2)
	out, _ := f.export(t, journal.Selection{})
	files := testkit.ReadTarGz(t, out)
	lines := strings.SplitAfter(string(files[evidence.FilePayloads]), "\n")
	lines = lines[:len(lines)-1]
	if len(lines) < 3 {
		t.Fatalf("the fixture's bundle has %d payloads; the test needs three", len(lines))
	}
	kept := append([]string{lines[1]}, lines[3:]...) // the first and the third deleted
	for _, tc := range []struct {
		name             string
		payloads, delete uint64
		ok               bool
	}{
		{"counted", uint64(len(kept)), 2, true},
		{"miscounted", uint64(len(kept)), 1, false},
		{"one more kept", uint64(len(kept)) + 1, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := rewriteBundle(t, files, func(m *evidence.Manifest, files map[string][]byte) {
				files[evidence.FilePayloads] = []byte(strings.Join(kept, ""))
				m.Counts.Payloads, m.Counts.PayloadsDeleted = tc.payloads, tc.delete
			}, func(sw *evidence.SealWriter, of *os.File) error { return sw.FinishUnsealed(of) })
			rep, err := evidence.VerifyBundle(context.Background(), b, evidence.BundleOptions{PublicKey: f.signer.Verifier(), AllowUnsealed: true})
			if err != nil || rep.OK != tc.ok {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			if !tc.ok && !strings.Contains(rep.Reason, "manifest counts") {
				t.Fatalf("caught as %q, want the manifest's counts", rep.Reason)
			}
		})
	}
}
