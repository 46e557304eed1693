package kubernetes

import (
	"strconv"
	"sync"
	"time"

	"github.com/interlock/interlock/model"
)

// kubectl opens an exec (attach, port-forward) over websockets first and,
// when that upgrade is answered with anything but 101 (a 403 of a denial
// included), opens the same request again over SPDY. The retry must not
// be judged anew: a review would ask the approvers a second time for one
// command. So the decision on a stream request that did not become a
// stream is kept for the same process's identical request, once, for
// retryWindow.
const retryWindow = 30 * time.Second

type retryKey struct {
	target string
	// The process: its tgid and start time (a reused pid is another).
	tgid  uint32
	start uint64
	user  string
	path  string
	query string
}

type retryEntry struct {
	d model.Decision
	// pod is the facts d was taken on: a pod deleted and made again
	// under the same name (privileged, say) between the two requests is
	// another pod, judged anew.
	pod     *model.K8sPod
	expires time.Time
}

type retries struct {
	mu sync.Mutex
	m  map[retryKey]retryEntry
}

func newRetryKey(o model.Origin, user, path, query string) retryKey {
	return retryKey{target: o.Target.Name, tgid: o.Identity.Kernel.TGID, start: o.Identity.Kernel.ProcStartNS,
		user: user, path: path, query: query}
}

// take returns the decision kept for k, if it was taken on the pod facts
// pod, and forgets it.
func (r *retries) take(k retryKey, pod *model.K8sPod, now time.Time) (model.Decision, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[k]
	if !ok {
		return model.Decision{}, false
	}
	delete(r.m, k)
	samePod := (e.pod == nil && pod == nil) || (e.pod != nil && pod != nil && *e.pod == *pod)
	return e.d, samePod && now.Before(e.expires)
}

// keep remembers d, taken on pod, for k's retry.
func (r *retries) keep(k retryKey, d model.Decision, pod *model.K8sPod, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[retryKey]retryEntry{}
	}
	for key, e := range r.m {
		if now.After(e.expires) {
			delete(r.m, key)
		}
	}
	r.m[k] = retryEntry{d: d, pod: pod, expires: now.Add(retryWindow)}
}

// forget drops k once its stream is up: a later identical request is a
// new operation.
func (r *retries) forget(k retryKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, k)
}

// retried marks a decision reused for a fallback retry.
func retried(d model.Decision) model.Decision {
	d.Reason = "retry of the same process's stream request within " + strconv.Itoa(int(retryWindow.Seconds())) + "s (kubectl's fallback from websockets to SPDY): " + d.Reason
	return d
}
