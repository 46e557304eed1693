package kubernetes

import (
	"net/http"
	"net/url"
	"strings"
)

// reqInfo is what an API request asks, read from its method, path and
// query as the API server reads them.
type reqInfo struct {
	resourceReq bool
	verb        string
	apiGroup    string
	apiVersion  string
	resource    string
	subresource string
	namespace   string
	name        string
}

// policyResource is the resource as rules name it: resource or
// resource.group, with /subresource.
func (ri reqInfo) policyResource() string {
	if !ri.resourceReq {
		return ""
	}
	r := ri.resource
	if ri.apiGroup != "" {
		r += "." + ri.apiGroup
	}
	if ri.subresource != "" {
		r += "/" + ri.subresource
	}
	return r
}

// isSecrets says whether the request reads or writes core Secrets,
// whose values interlock masks.
func (ri reqInfo) isSecrets() bool {
	return ri.resourceReq && ri.apiGroup == "" && ri.resource == "secrets"
}

// isWrite says whether the request may change the cluster.
func (ri reqInfo) isWrite() bool {
	switch ri.verb {
	case "get", "list", "watch":
		return false
	}
	return true
}

// parseRequest reads r as the API server's request-info resolver does:
// /api/v1/... for the core group, /apis/GROUP/VERSION/... otherwise,
// then [namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]]. Any other path is
// a non-resource request whose verb is the method's.
func parseRequest(r *http.Request) reqInfo {
	ri := reqInfo{verb: strings.ToLower(r.Method)}
	parts := splitPath(r.URL.Path)
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		ri.apiVersion, parts = parts[1], parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		ri.apiGroup, ri.apiVersion, parts = parts[1], parts[2], parts[3:]
	default:
		// /version, /apis, /openapi/v3, /healthz...: discovery and
		// health, with the method's verb (get, post...).
		return ri
	}
	ri.resourceReq = true
	// The deprecated /watch/ prefix.
	watchPrefix := false
	if len(parts) > 0 && parts[0] == "watch" {
		watchPrefix, parts = true, parts[1:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		if len(parts) == 2 {
			// The namespace object itself.
			ri.resource, ri.name = "namespaces", parts[1]
			parts = nil
		} else {
			ri.namespace, parts = parts[1], parts[2:]
		}
	}
	if len(parts) > 0 {
		ri.resource = parts[0]
	}
	if len(parts) > 1 {
		ri.name = parts[1]
	}
	if len(parts) > 2 {
		ri.subresource = strings.Join(parts[2:], "/")
	}
	if ri.resource == "namespaces" && ri.namespace != "" && ri.name == "" {
		// namespaces/NS/status and /finalize
		ri.name = ri.namespace
	}
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPrefix || queryBool(q, "watch"):
			ri.verb = "watch"
		case ri.name == "":
			ri.verb = "list"
		default:
			ri.verb = "get"
		}
	case http.MethodPost:
		ri.verb = "create"
	case http.MethodPut:
		ri.verb = "update"
	case http.MethodPatch:
		ri.verb = "patch"
	case http.MethodDelete:
		ri.verb = "delete"
		if ri.name == "" {
			ri.verb = "deletecollection"
		}
	}
	if ri.apiGroup == "" && ri.resource == "pods" && ri.name != "" {
		switch ri.subresource {
		case "exec", "attach", "portforward":
			// Opened with GET (websocket) or POST (SPDY): the stream is
			// the operation, whatever the method.
			ri.verb = ri.subresource
		}
	}
	return ri
}

// queryBool reads a boolean query parameter as the API server converts
// it: present with any value but "0" or "false" (any case) is true, so
// ?watch and ?watch=yes are watches as far as the server is concerned.
func queryBool(q url.Values, key string) bool {
	v, ok := q[key]
	if !ok || len(v) == 0 {
		return false
	}
	return v[0] != "0" && !strings.EqualFold(v[0], "false")
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
