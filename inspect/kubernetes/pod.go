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

func factsOf(pod *corev1.Pod) *model.K8sPod {
	f := &model.K8sPod{HostPID: pod.Spec.HostPID, HostNetwork: pod.Spec.HostNetwork, HostIPC: pod.Spec.HostIPC,
		ServiceAccount: pod.Spec.ServiceAccountName}
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
