// Command kubebench measures what a kubernetes target costs kubectl (issue
// 20): the latency of `kubectl get pods` and the throughput of a 100 MiB
// `cat` through `kubectl exec`, directly against a real kube-apiserver
// and through `interlock run`, side by side in one run, alternating.
//
// It is a benchmark, not a test: it prints numbers and ratios, and fails
// only when it cannot measure (not root, no kube-apiserver, a kubectl run
// that failed), never on the numbers.
//
//	go run ./test/bench/kubebench -interlock ./bin/interlock
//
// Each side runs one shell that calls kubectl in a loop and times each
// call, so interlock's own start (`interlock run` sets up its cgroup and
// engine) is outside what is measured.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/inspect/tlsca"
	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/test/bench/benchutil"
)

type options struct {
	interlock string
	gets      int
	rounds    int
	catMiB    int
}

func main() {
	var o options
	fs := flag.NewFlagSet("kubebench", flag.ContinueOnError)
	fs.StringVar(&o.interlock, "interlock", "./bin/interlock", "the interlock binary")
	fs.IntVar(&o.gets, "gets", 20, "kubectl get pods calls per round")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds, each direct then through interlock")
	fs.IntVar(&o.catMiB, "cat-mib", 100, "MiB the exec's cat sends")
	err := fs.Parse(os.Args[1:])
	os.Exit(benchutil.Main("kubebench", err, func(ctx context.Context) error { return run(ctx, o) }))
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (interlock run attaches BPF programs)")
	}
	bin, err := benchutil.Interlock(o.interlock)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kubebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := kubetest.Start(ctx, dir)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := c.Grant(ctx, "interlock"); err != nil {
		return err
	}
	self, err := c.CA.Issue("interlock", nil)
	if err != nil {
		return err
	}
	user, err := c.CA.Issue("bench", []string{kubetest.DevGroup})
	if err != nil {
		return err
	}
	pin := benchutil.PinPath("interlock-kubebench")
	defer benchutil.RemovePins(pin)
	cfg := filepath.Join(dir, "interlock.yaml")
	body := benchutil.ConfigHead(dir, filepath.Join(dir, "journal.db"), pin) + fmt.Sprintf(`targets:
  - name: k8s
    protocol: kubernetes
    address: %q
    kubernetes:
      ca_file: %s
      client_ca_file: %s
      client_certificate_file: %s
      client_key_file: %s
`, c.Host, c.CA.CertFile, c.CA.CertFile, self.CertFile, self.KeyFile)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return err
	}
	if _, err := tlsca.ServerCert(filepath.Join(dir, "state"), "probe", "probe", []string{"localhost"}); err != nil {
		return err
	}
	ilCA, err := os.ReadFile(tlsca.CAPath(filepath.Join(dir, "state")))
	if err != nil {
		return err
	}
	clusterCA, _ := os.ReadFile(c.CA.CertFile)
	kc := filepath.Join(dir, "kubeconfig")
	if err := kubetest.WriteKubeconfig(kc, "https://"+c.Host, append(clusterCA, ilCA...), &user); err != nil {
		return err
	}
	side := func(through bool, script string) ([]time.Duration, error) {
		argv := []string{"sh", "-c", script}
		if through {
			argv = append([]string{bin, "run", "-c", cfg, "--"}, argv...)
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kc)
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			return nil, fmt.Errorf("%v: %v: %s", argv, err, stderr)
		}
		return parseTimes(string(out))
	}
	// Each call's time in nanoseconds from the shell's own clock.
	gets := fmt.Sprintf(`for i in $(seq %d); do s=$(date +%%s%%N); kubectl get pods >/dev/null || exit 1; e=$(date +%%s%%N); echo $((e-s)); done`, o.gets)
	cat := fmt.Sprintf(`s=$(date +%%s%%N); kubectl exec %s -- head -c %d /dev/zero | wc -c >/dev/null || exit 1; e=$(date +%%s%%N); echo $((e-s))`,
		kubetest.PodName, o.catMiB<<20)
	var getD, getI, catD, catI []time.Duration
	for r := 0; r < o.rounds; r++ {
		for _, m := range []struct {
			through bool
			script  string
			into    *[]time.Duration
		}{{false, gets, &getD}, {true, gets, &getI}, {false, cat, &catD}, {true, cat, &catI}} {
			ds, err := side(m.through, m.script)
			if err != nil {
				return err
			}
			*m.into = append(*m.into, ds...)
		}
	}
	fmt.Printf("kubebench: kube-apiserver %s, kubectl under `interlock run`, %d rounds\n", c.Host, o.rounds)
	fmt.Printf("%-34s %12s %12s %8s\n", "", "direct", "interlock", "ratio")
	md, mi := median(getD), median(getI)
	fmt.Printf("%-34s %10.1fms %10.1fms %7.2fx\n", "kubectl get pods, median", ms(md), ms(mi), float64(mi)/float64(md))
	cd, ci := median(catD), median(catI)
	mib := float64(o.catMiB)
	fmt.Printf("%-34s %8.1fMiB/s %8.1fMiB/s %7.2fx\n", fmt.Sprintf("exec cat %d MiB, median", o.catMiB), mib/cd.Seconds(), mib/ci.Seconds(), cd.Seconds()/ci.Seconds())
	return nil
}

func parseTimes(out string) ([]time.Duration, error) {
	var ds []time.Duration
	for _, f := range strings.Fields(out) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("a time %q: %w", f, err)
		}
		ds = append(ds, time.Duration(n))
	}
	if len(ds) == 0 {
		return nil, errors.New("no times")
	}
	return ds, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
