// Command client is ctrbench's client: it makes -n connections to -addr,
// each a connect, a line out and a line back, and prints the connect
// latencies' percentiles as one JSON line. It is built without cgo so
// that it runs in a container's root filesystem.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

type result struct {
	N      int     `json:"n"`
	Errors int     `json:"errors"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	MeanUS float64 `json:"mean_us"`
	// Refused counts the namespace's first connects refused (EPERM)
	// while interlock started serving it (-warm).
	Refused int    `json:"refused,omitempty"`
	Error   string `json:"error,omitempty"`
}

func main() {
	addr := flag.String("addr", "", "host:port")
	n := flag.Int("n", 1000, "connections")
	warm := flag.Bool("warm", false, "first retry until a connect goes through (the namespace is served)")
	flag.Parse()
	var r result
	if *warm {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := once(*addr)
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "operation not permitted") || time.Now().After(deadline) {
				r.Error = err.Error()
				json.NewEncoder(os.Stdout).Encode(r)
				os.Exit(1)
			}
			r.Refused++
			time.Sleep(5 * time.Millisecond)
		}
	}
	lat := make([]time.Duration, 0, *n)
	var sum time.Duration
	for i := 0; i < *n; i++ {
		d, err := once(*addr)
		if err != nil {
			r.Errors++
			r.Error = err.Error()
			continue
		}
		lat = append(lat, d)
		sum += d
	}
	r.N = len(lat)
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
		r.P50US, r.P90US, r.P99US = pct(0.5), pct(0.9), pct(0.99)
		r.MeanUS = float64(sum.Nanoseconds()) / float64(len(lat)) / 1e3
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

// once is one connection: connect, a line each way, close. Its time runs
// to the reply, which through interlock includes the session's journal
// record.
func once(addr string) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "ping\n"); err != nil {
		return 0, err
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}
