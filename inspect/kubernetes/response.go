package kubernetes

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/interlock/interlock/model"
)

// With record_responses a target journals the body of every answer that
// is not a stream, as the client got it: a Secret's values are masked
// before the copy is taken (maskResponse), and an answer that carries a
// credential of another kind has it masked in the copy, or is not kept.

// recordable says whether r's answer is one body: not a watch, a
// followed log, or a stream the connection is upgraded to.
func recordable(r *http.Request, ri reqInfo) bool {
	if isUpgrade(r) || ri.verb == "watch" || queryBool(r.URL.Query(), "follow") {
		return false
	}
	switch ri.verb {
	case "exec", "attach", "portforward":
		return false
	}
	return true
}

// credentialPaths are the fields of a request's or answer's JSON that
// hold a bearer token in clear, for requests that have one: a
// TokenRequest's answer, and a TokenReview (its answer repeats the
// token). nil for any other request.
func credentialPaths(ri reqInfo) [][]string {
	switch {
	case !ri.resourceReq:
		return nil
	case ri.apiGroup == "" && ri.resource == "serviceaccounts" && ri.subresource == "token":
		return [][]string{{"status", "token"}}
	case ri.apiGroup == "authentication.k8s.io" && ri.resource == "tokenreviews":
		return [][]string{{"spec", "token"}}
	}
	return nil
}

// maskPaths replaces the string at each path of doc with MaskedValue.
// ok is false when doc is not one JSON object.
func maskPaths(doc []byte, paths [][]string) (out []byte, ok bool) {
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	for _, p := range paths {
		m := v
		for i, k := range p {
			if i == len(p)-1 {
				if _, has := m[k]; has {
					m[k] = MaskedValue
				}
				break
			}
			next, isMap := m[k].(map[string]any)
			if !isMap {
				break
			}
			m = next
		}
	}
	out, err := json.Marshal(v)
	return out, err == nil
}

// recordResponse fills resp's body fields from what cw kept of the answer
// and returns the payload to journal.
func recordResponse(ri reqInfo, cw *countWriter, resp *model.K8sResponse) []byte {
	body := cw.head
	resp.BodyTruncated = cw.n > int64(len(body))
	if paths := credentialPaths(ri); paths != nil {
		// A cut document cannot be parsed, so its token cannot be found.
		masked, ok := maskPaths(body, paths)
		if !ok || resp.BodyTruncated {
			resp.BodyWithheld = "it holds a token that could not be masked"
			resp.BodyTruncated = false
			return nil
		}
		body = masked
	}
	resp.BodyRecorded = true
	if body == nil {
		body = []byte{}
	}
	return body
}
