package export

import (
	"encoding/json"
	"strconv"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// API Activity (6003) activities.
const (
	apiUnknown = 0
	apiCreate  = 1
	apiRead    = 2
	apiUpdate  = 3
	apiDelete  = 4
	apiOther   = 99
)

// apiActivity is the activity of a Kubernetes verb: exec, attach,
// port-forward and proxy are Other.
func apiActivity(verb string) (int, string) {
	switch verb {
	case "create":
		return apiCreate, "Create"
	case "get", "list", "watch":
		return apiRead, "Read"
	case "update", "patch":
		return apiUpdate, "Update"
	case "delete", "deletecollection":
		return apiDelete, "Delete"
	case "":
		return apiUnknown, "Unknown"
	}
	return apiOther, "Other"
}

// k8sEvent maps a kubernetes request or its response to API Activity:
// api.operation is the verb, resources the object (type resource or
// resource/subresource, name, and the namespace in data), api.group and
// api.version the API group and version, http_request the method and
// path; a response adds api.response.code (and http_response.code) and
// fails the event at 400 and above. actor.user is who the API server was
// called as: the identity interlock impersonated, or the owner of the
// client's bearer token (credential_uid names the token, never is one);
// the process and its user stay actor.process. message is the request
// as `interlock sessions show` prints it, escaped for a person; the
// fields are the exact names.
func k8sEvent(p evidence.Body, st *ocsfState, ev obj, decided func(obj, model.Decision)) obj {
	var rq *model.K8sRequest
	var resp *model.K8sResponse
	switch p.Kind {
	case model.KindK8sRequest:
		var m model.K8sRequest
		if json.Unmarshal(p.Data, &m) != nil {
			return nil
		}
		rq = &m
		if st.k8s[p.Session] == nil {
			st.k8s[p.Session] = map[uint64]*model.K8sRequest{}
		}
		st.k8s[p.Session][m.Seq] = rq
	case model.KindK8sResponse:
		var m model.K8sResponse
		if json.Unmarshal(p.Data, &m) != nil {
			return nil
		}
		resp = &m
		// A response outside the selection's requests is still reported,
		// as an operation that is not known.
		rq = st.k8s[p.Session][m.Seq]
		delete(st.k8s[p.Session], m.Seq)
	}
	reqSeq := uint64(0)
	if rq != nil {
		reqSeq = rq.Seq
	} else {
		reqSeq = resp.Seq
	}
	// The request's uid is the session's and the request's seq: its
	// response carries the same.
	api := obj{"operation": "unknown", "request": obj{"uid": p.Session + ":" + strconv.FormatUint(reqSeq, 10)}}
	il := ev["unmapped"].(obj)["interlock"].(obj)
	k := obj{}
	il["kubernetes"] = k
	if rq != nil {
		id, name := apiActivity(rq.Verb)
		ev["activity_id"], ev["activity_name"], ev["type_uid"] = id, name, classAPI*100+id
		api["operation"] = rq.Verb
		if rq.APIGroup != "" {
			api["group"] = obj{"name": rq.APIGroup}
		}
		if rq.APIVersion != "" {
			api["version"] = rq.APIVersion
		}
		if rq.Resource != "" {
			res := obj{"type": rq.Resource}
			if rq.Subresource != "" {
				res["type"] = rq.Resource + "/" + rq.Subresource
			}
			if rq.Name != "" {
				res["name"] = rq.Name
			}
			if rq.Namespace != "" {
				res["data"] = obj{"namespace": rq.Namespace}
			}
			ev["resources"] = []obj{res}
		}
		url := obj{"path": rq.Path}
		if rq.Query != "" {
			url["query_string"] = rq.Query
		}
		ev["http_request"] = obj{"http_method": rq.Method, "url": url}
		user := obj{"name": rq.User}
		if rq.UID != "" {
			user["uid"] = rq.UID
		}
		if len(rq.Groups) > 0 {
			groups := make([]obj, len(rq.Groups))
			for i, g := range rq.Groups {
				groups[i] = obj{"name": g}
			}
			user["groups"] = groups
		}
		if rq.TokenID != "" {
			user["credential_uid"] = rq.TokenID
		}
		if a, ok := ev["actor"].(obj); ok {
			a["user"] = user
		} else {
			ev["actor"] = obj{"user": user}
		}
		k["source"] = rq.Source
		if len(rq.Command) > 0 {
			k["command"] = rq.Command
		}
		if rq.Pod != nil {
			k["pod"] = rq.Pod
		}
		ev["message"] = sessionview.K8sRequestText(*rq)
	}
	if resp == nil {
		ev["message"] = ev["message"].(string) + ": " + sessionview.DecisionText(rq.Decision)
		decided(ev, rq.Decision)
		ev["api"] = api
		return ev
	}
	r := obj{"code": resp.Code}
	ev["http_response"] = obj{"code": resp.Code}
	ev["status_code"] = strconv.Itoa(resp.Code)
	k["response_bytes"], k["masked"] = resp.Bytes, resp.Masked
	ev["duration"] = resp.DurationNS / 1e6
	msg := "response " + sessionview.K8sResponseText(*resp)
	if rq != nil {
		msg = ev["message"].(string) + ": " + msg
	}
	ev["message"] = msg
	if resp.Code >= 400 || resp.Error != "" {
		ev["status_id"] = statusFailure
		detail := strconv.Itoa(resp.Code)
		if resp.Error != "" {
			r["error_message"] = resp.Error
			detail += ": " + resp.Error
		}
		ev["status_detail"] = detail
	}
	api["response"] = r
	ev["api"] = api
	return ev
}
