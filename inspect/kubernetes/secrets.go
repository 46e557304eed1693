package kubernetes

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// MaskedValue is what every value of a Secret's data becomes in what the
// client receives and the journal keeps (base64 in data, as the API has
// it; plain in stringData).
const MaskedValue = "interlock:masked"

var maskedB64 = base64.StdEncoding.EncodeToString([]byte(MaskedValue))

// maxSecretResponse bounds a secrets answer interlock reads whole to mask
// it; a larger one is refused rather than sent unmasked.
const maxSecretResponse = 64 << 20

// jsonOnly keeps the JSON media types of an Accept header (a Table is
// JSON too), so that the API server answers in a form interlock can mask.
func jsonOnly(accept string) string {
	var keep []string
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == "application/json" {
			keep = append(keep, strings.TrimSpace(part))
		}
	}
	if len(keep) == 0 {
		return "application/json"
	}
	return strings.Join(keep, ",")
}

// maskResponse masks every Secret value in a secrets answer. Anything it
// cannot read as JSON is refused: the client gets an error, never the
// values.
func maskResponse(res *http.Response) (int, error) {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return 0, errors.New("interlock: a secrets request may not switch protocols")
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxSecretResponse+1))
	res.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("interlock: reading a secrets answer: %w", err)
	}
	if len(body) > maxSecretResponse {
		return 0, errors.New("interlock: a secrets answer too large to mask")
	}
	if len(body) == 0 {
		res.Body = io.NopCloser(bytes.NewReader(body))
		return 0, nil
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "application/json" {
		return 0, fmt.Errorf("interlock: a secrets answer of type %q cannot be masked", res.Header.Get("Content-Type"))
	}
	masked, n, ok := maskSecretJSON(body)
	if !ok {
		return 0, errors.New("interlock: a secrets answer that is not JSON cannot be masked")
	}
	res.Body = io.NopCloser(bytes.NewReader(masked))
	res.ContentLength = int64(len(masked))
	res.Header.Set("Content-Length", strconv.Itoa(len(masked)))
	res.Header.Del("Content-Encoding")
	return n, nil
}

// maskSecretJSON replaces the values of every data and stringData map in
// a JSON document: a Secret, a SecretList's items, a Table's row objects,
// whatever nesting. A map is masked wherever it is (it may be a Status,
// which has neither), so no shape of answer slips through. ok is false
// when doc is not JSON.
func maskSecretJSON(doc []byte) (out []byte, n int, ok bool) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, 0, false
	}
	if dec.More() {
		return nil, 0, false
	}
	n = maskWalk(v)
	out, err := json.Marshal(v)
	if err != nil {
		return nil, 0, false
	}
	return out, n, true
}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func maskWalk(v any) int {
	n := 0
	switch t := v.(type) {
	case map[string]any:
		for k, sub := range t {
			if m, isMap := sub.(map[string]any); isMap && (k == "data" || k == "stringData") {
				for key := range m {
					if k == "data" {
						m[key] = maskedB64
					} else {
						m[key] = MaskedValue
					}
					n++
				}
				continue
			}
			if str, isStr := sub.(string); isStr && k == lastApplied {
				// kubectl apply keeps the whole object it applied, values
				// and all, in this annotation.
				if masked, m, ok := maskSecretJSON([]byte(str)); ok {
					t[k], n = string(masked), n+m
				} else {
					t[k], n = MaskedValue, n+1
				}
				continue
			}
			n += maskWalk(sub)
		}
	case []any:
		for _, sub := range t {
			n += maskWalk(sub)
		}
	}
	return n
}
