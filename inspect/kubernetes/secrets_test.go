package kubernetes

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestSecretsMaskedWhateverTheClientAsks asks the real API server, through
// the handler, for a Secret in every form a client can request (protobuf,
// a Table with whole objects, YAML, gzip): the value never comes back.
func TestSecretsMaskedWhateverTheClientAsks(t *testing.T) {
	s := serve(t)
	ctx := context.Background()
	if _, err := s.c.Client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Data: map[string][]byte{"password": []byte("hunter2-accept")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, accept, encoding string }{
		{"/api/v1/namespaces/default/secrets/db", "application/vnd.kubernetes.protobuf", ""},
		{"/api/v1/namespaces/default/secrets", "application/vnd.kubernetes.protobuf, application/json;q=0.1", ""},
		{"/api/v1/namespaces/default/secrets?includeObject=Object", "application/json;as=Table;v=v1;g=meta.k8s.io", ""},
		{"/api/v1/namespaces/default/secrets/db", "application/yaml", ""},
		{"/api/v1/namespaces/default/secrets/db", "application/json;q=0, application/vnd.kubernetes.protobuf", ""},
		{"/api/v1/namespaces/default/secrets/db", "application/json", "gzip"},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.Host+c.path, nil)
		req.Header.Set("Accept", c.accept)
		if c.encoding != "" {
			req.Header.Set("Accept-Encoding", c.encoding)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.path, c.accept, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.Header.Get("Content-Encoding") == "gzip" {
			if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
				body, _ = io.ReadAll(zr)
			}
		}
		for _, v := range []string{"hunter2-accept", "aHVudGVyMi1hY2NlcHQ"} {
			if bytes.Contains(body, []byte(v)) {
				t.Errorf("%s Accept %q Accept-Encoding %q: the value came back (%d):\n%s", c.path, c.accept, c.encoding, res.StatusCode, body)
			}
		}
		// A refusal would pass the check above without masking anything.
		if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(maskedB64)) {
			t.Errorf("%s Accept %q: %d without the masked value:\n%s", c.path, c.accept, res.StatusCode, body)
		}
		t.Logf("%s %q: %d %s %d bytes", c.path, c.accept, res.StatusCode, res.Header.Get("Content-Type"), len(body))
	}
}
