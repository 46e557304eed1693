package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/inspect/kubernetes"
	"github.com/interlock/interlock/model"
)

// TestKubeRecordResponses: with record_responses kubectl's answers are
// journaled as it got them: a Secret's values masked (in what kubectl
// prints and in the journal, where the value is in no file), a large
// answer cut at record_response_max with its whole size noted.
func TestKubeRecordResponses(t *testing.T) {
	k := newKubeEnvWith(t, "", "\n      record_responses: true\n      record_response_max: 4096")
	const value = "hunter2-e2e-response"
	// The value comes from a file: command lines are journaled.
	valueFile := filepath.Join(k.dir, "password")
	if err := os.WriteFile(valueFile, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := k.kubectl("alice", nil, "create", "secret", "generic", "db", "--from-file=password="+valueFile); code != 0 {
		t.Fatalf("create secret: %s %s", out, stderr)
	}
	out, stderr, code := k.kubectl("alice", nil, "get", "secret", "db", "-o", "yaml")
	masked := base64.StdEncoding.EncodeToString([]byte(kubernetes.MaskedValue))
	if code != 0 || !strings.Contains(out, masked) || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(value))) {
		t.Fatalf("get secret: exit %d %s %s", code, out, stderr)
	}
	big := strings.Repeat("x", 20000)
	if out, stderr, code := k.kubectl("alice", nil, "create", "configmap", "big", "--from-literal=k="+big); code != 0 {
		t.Fatalf("create configmap: %s %s", out, stderr)
	}
	if out, _, code := k.kubectl("alice", nil, "get", "configmap", "big", "-o", "json"); code != 0 || !strings.Contains(out, big) {
		t.Fatalf("get configmap: exit %d", code)
	}

	// Requests by session and seq, to find each answer's request.
	type key struct {
		session string
		seq     uint64
	}
	reqs := map[key]model.K8sRequest{}
	var secretGet, bigGet bool
	for _, en := range k.entries() {
		switch en.Kind {
		case model.KindK8sRequest:
			var r model.K8sRequest
			if err := json.Unmarshal(en.Data, &r); err != nil {
				t.Fatal(err)
			}
			reqs[key{en.Session, r.Seq}] = r
		case model.KindK8sResponse:
			var r model.K8sResponse
			if err := json.Unmarshal(en.Data, &r); err != nil {
				t.Fatal(err)
			}
			q := reqs[key{en.Session, r.Seq}]
			if q.Verb != "get" || q.Name == "" {
				continue
			}
			p := payload(k.env, en.Seq)
			switch q.Resource {
			case "secrets":
				secretGet = true
				if !r.BodyRecorded || !bytes.Contains(p, []byte(masked)) || r.Masked == 0 {
					t.Errorf("the secret's answer: %+v %s", r, p)
				}
			case "configmaps":
				bigGet = true
				if !r.BodyRecorded || !r.BodyTruncated || len(p) != 4096 || r.Bytes < 20000 {
					t.Errorf("the large answer: %+v, %d bytes recorded", r, len(p))
				}
			}
		}
	}
	if !secretGet || !bigGet {
		t.Errorf("answers journaled: secret %v, configmap %v", secretGet, bigGet)
	}
	for _, f := range []string{k.journal, k.journal + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, v := range []string{value, base64.StdEncoding.EncodeToString([]byte(value))} {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("the secret's value is in %s", f)
			}
		}
	}
}
