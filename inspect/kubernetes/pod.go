package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/interlock/interlock/model"
)

// podFacts reads what policy may judge of the pod a stream opens into,
// as the request's caller (who may exec into a pod may read it; one who
// may not is refused by the API server either way).
func (x *session) podFacts(ctx context.Context, ns, name string) (*model.K8sPod, error) {
	u := x.t.upstream
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p := u.base.JoinPath("api", "v1", "namespaces", url.PathEscape(ns), "pods", url.PathEscape(name))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	who := x.callerOf(ctx)
	authorize(req.Header, who)
	tr, _ := u.transports(who)
	res, err := tr.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: read pod %s/%s: %w", ns, name, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubernetes: read pod %s/%s: %s", ns, name, res.Status)
	}
	var pod corev1.Pod
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<20)).Decode(&pod); err != nil {
		return nil, fmt.Errorf("kubernetes: read pod %s/%s: %w", ns, name, err)
	}
	return factsOf(&pod), nil
}

// recheckPod reads the pod again just before interlock opens its own
// stream into it, and refuses when it is not the pod policy judged: the
// decision may have been held for review for minutes, and the pod
// deleted and made again under the same name (privileged, say) or given
// a new ephemeral container meanwhile. The API cannot name a pod's UID
// in an exec, attach or port-forward, so the API server resolves the
// name again when the stream is opened; this makes the window between
// the two one round trip. Facts that were unknown when judged were
// judged as unknown and are not read again.
func (x *session) recheckPod(ctx context.Context, ns, name string, judged *model.K8sPod) error {
	if judged == nil {
		return nil
	}
	now, err := x.podFacts(ctx, ns, name)
	if err != nil {
		return fmt.Errorf("interlock: pod %s/%s could not be read again before the stream was opened: %w", ns, name, err)
	}
	if *now != *judged {
		return fmt.Errorf("interlock: pod %s/%s changed after policy judged it (uid %s, %s; now uid %s, %s): the stream is not opened",
			ns, name, judged.UID, describePod(judged), now.UID, describePod(now))
	}
	return nil
}

func describePod(p *model.K8sPod) string {
	s := "service account " + p.ServiceAccount
	for _, f := range []struct {
		on   bool
		name string
	}{{p.Privileged, "privileged"}, {p.HostPID, "host PID"}, {p.HostNetwork, "host network"}, {p.HostIPC, "host IPC"}} {
		if f.on {
			s += ", " + f.name
		}
	}
	return s
}

func factsOf(pod *corev1.Pod) *model.K8sPod {
	f := &model.K8sPod{HostPID: pod.Spec.HostPID, HostNetwork: pod.Spec.HostNetwork, HostIPC: pod.Spec.HostIPC,
		ServiceAccount: pod.Spec.ServiceAccountName, UID: string(pod.UID)}
	if f.ServiceAccount == "" {
		f.ServiceAccount = "default"
	}
	privileged := func(sc *corev1.SecurityContext) bool { return sc != nil && sc.Privileged != nil && *sc.Privileged }
	for _, c := range append(append([]corev1.Container{}, pod.Spec.Containers...), pod.Spec.InitContainers...) {
		f.Privileged = f.Privileged || privileged(c.SecurityContext)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		f.Privileged = f.Privileged || privileged(c.SecurityContext)
	}
	return f
}
