// Command sshbench measures what interlock's SSH proxy (issue 5) costs a
// client, directly and through `interlock run` side by side in one run,
// against one real OpenSSH sshd on 127.0.0.3:
//
//   - scp upload of a 512 MiB file (scp speaks sftp: interlock parses every
//     packet and journals the operations);
//   - scp download of the same file, and `ssh host cat FILE`: 512 MiB over
//     sftp and over an exec channel (every chunk of it recorded in the
//     journal), each also through interlock with a live mask rule running
//     every content detector over the file (issue 13: masking on and off
//     side by side);
//   - `ssh host true` connection setup, p50 and p99 over 200 runs, once with
//     the clients' defaults and once like-for-like (the direct client with
//     the key exchange interlock uses).
//
// It is a benchmark, not a test: it prints numbers, ratios and the aims
// next to them, and fails only when it cannot measure.
//
//	go run ./test/bench/sshbench -interlock ./bin/interlock
//
// The timing client is this binary re-executed as `sshbench client -n N --
// ARGV...`: it runs ARGV N times and prints each run's wall time. For
// "interlock" it runs under `interlock run -c CONFIG --engine embedded`,
// so the ssh and scp it starts go through the BPF redirect, the proxy and
// the journal, while interlock's own start is not timed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/bench/benchutil"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "client" {
		os.Exit(clientMain(os.Args[2:]))
	}
	o, err := parseFlags(os.Args[1:])
	os.Exit(benchutil.Main("sshbench", err, func(ctx context.Context) error { return run(ctx, o) }))
}

type options struct {
	interlock  string
	mib        int
	runs       int
	rounds     int
	only       string
	journalDir string
	dataDir    string
	jsonOut    bool
	keep       bool
	quick      bool
	profile    string
	baseline   string
	masked     bool
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("sshbench", flag.ContinueOnError)
	fs.StringVar(&o.interlock, "interlock", "", "path of the interlock binary (required; `make build` makes ./bin/interlock)")
	fs.IntVar(&o.mib, "mib", 512, "MiB per transfer")
	fs.IntVar(&o.runs, "runs", 200, "`ssh host true` runs per setup round")
	fs.IntVar(&o.rounds, "rounds", 2, "rounds per metric and side (direct, interlock, direct, interlock, …)")
	fs.StringVar(&o.only, "only", "", "comma-separated subset of scp,cat,setup")
	fs.StringVar(&o.journalDir, "journal-dir", "", "directory for the journal (default: the bench's temp dir)")
	fs.StringVar(&o.dataDir, "data-dir", "/dev/shm", "directory for the transferred files (tmpfs keeps the disk out of the throughput)")
	fs.BoolVar(&o.jsonOut, "json", false, "also print the results as JSON")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, journal, sshd log)")
	fs.BoolVar(&o.quick, "quick", false, "smoke-run sizes (64 MiB, 30 setup runs, 1 round)")
	fs.StringVar(&o.profile, "profile", "", "write a CPU profile of interlock during the first interlock round of cat over exec to this `file`")
	fs.BoolVar(&o.masked, "masked", true, "also measure the downloads under a live mask rule")
	fs.StringVar(&o.baseline, "baseline", "", "another interlock `binary` measured in the same rounds of the transfers (before/after), with a journal of its own")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["mib"] {
			o.mib = 64
		}
		if !set["runs"] {
			o.runs = 30
		}
		if !set["rounds"] {
			o.rounds = 1
		}
	}
	if o.interlock == "" {
		return o, errors.New("-interlock PATH is required (build it with `make build`: ./bin/interlock)")
	}
	if o.mib <= 0 || o.runs <= 0 || o.rounds <= 0 {
		return o, errors.New("-mib, -runs and -rounds must be positive")
	}
	if o.profile != "" {
		abs, err := filepath.Abs(o.profile)
		if err != nil {
			return o, err
		}
		o.profile = abs
	}
	return o, nil
}

// metric is one measured thing, per side and round.
type metric struct {
	Name   string      `json:"name"`
	Direct [][]float64 `json:"direct"` // per round: seconds of each run
	Inter  [][]float64 `json:"interlock"`
	// Masked is through interlock under a live mask rule (transfers).
	Masked [][]float64 `json:"interlock_masked,omitempty"`
	// Baseline is through the -baseline binary (transfers).
	Baseline [][]float64 `json:"baseline,omitempty"`
	// CPU is the CPU seconds interlock used in each round, by side
	// (interlock, masked, baseline): its own cost, apart from the load.
	CPU map[string][]float64 `json:"interlock_cpu_s,omitempty"`
	// Ends is the CPU seconds of the two ends in each round, by side: the
	// client (ssh or scp) and the target (sshd and what it ran).
	Ends map[string][]float64 `json:"ends_cpu_s,omitempty"`
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: `interlock run` loads BPF programs and sshd runs as root (sudo make bench-ssh)")
	}
	bin, err := benchutil.Interlock(o.interlock)
	if err != nil {
		return err
	}
	baseBin := ""
	if o.baseline != "" {
		if baseBin, err = benchutil.Interlock(o.baseline); err != nil {
			return err
		}
	}
	for _, tool := range []string{sshdBin, "ssh", "scp"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing (apt-get install openssh-server openssh-client): %w", tool, err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sshbench-")
	if err != nil {
		return err
	}
	os.Chmod(dir, 0o755)
	if o.keep {
		fmt.Printf("keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	data, err := os.MkdirTemp(o.dataDir, "sshbench-data-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(data)

	sd, err := startSSHD(ctx, dir)
	if err != nil {
		return err
	}
	defer sd.stop()
	cfgs := map[string]config{}
	for _, name := range []string{"interlock", "baseline"} {
		if name == "baseline" && baseBin == "" {
			continue
		}
		c, err := writeConfig(dir, o.journalDir, name, sd)
		if err != nil {
			return err
		}
		cfgs[name] = c
		defer func() {
			if err := benchutil.RemovePins(c.pin); err != nil {
				fmt.Fprintln(os.Stderr, "sshbench:", err)
			}
		}()
		if !o.keep {
			defer os.RemoveAll(filepath.Dir(c.journal))
		}
	}

	// The journal's commits wait for this disk: its fdatasync latency
	// before and after the measurements goes beside the numbers.
	jdir := filepath.Dir(cfgs["interlock"].journal)
	syncBefore := syncLatency(jdir)
	src := filepath.Join(data, "src.bin")
	fmt.Printf("writing a %d MiB test file in %s\n", o.mib, data)
	if err := randomFile(src, int64(o.mib)<<20); err != nil {
		return err
	}
	only := map[string]bool{}
	for _, m := range strings.Split(o.only, ",") {
		if m != "" {
			only[m] = true
		}
	}
	want := func(m string) bool { return len(only) == 0 || only[m] }

	// The direct client uses the key the target authorizes; through
	// interlock the client uses its own key, which the target does not
	// know: interlock logs in with the authorized one.
	direct := func(argv ...string) []string { return sd.argv(sd.credKey, argv...) }
	viaIL := func(argv ...string) []string { return sd.argv(sd.clientKey, argv...) }
	port := strconv.Itoa(sd.port)
	var metrics []*metric
	sessions := map[string]int{}
	// measure runs each side in turn, round after round; a transfer adds
	// the -baseline binary, and masked adds interlock under the live mask
	// rule.
	measure := func(name string, n int, masked bool, argv func(side string) []string) error {
		m := &metric{Name: name, CPU: map[string][]float64{}, Ends: map[string][]float64{}}
		sides := []string{"direct", "interlock"}
		if baseBin != "" && n == 1 {
			sides = append(sides, "baseline")
		}
		if masked && o.masked {
			sides = append(sides, "masked")
		}
		for r := 0; r < o.rounds; r++ {
			for _, side := range sides {
				fmt.Printf("  %-26s %-9s round %d/%d ... ", name, side, r+1, o.rounds)
				cl := client{self: self, n: n, argv: argv(side)}
				switch side {
				case "interlock":
					cl.bin, cl.cfg = bin, cfgs["interlock"].plain
				case "masked":
					cl.bin, cl.cfg = bin, cfgs["interlock"].masked
				case "baseline":
					cl.bin, cl.cfg = baseBin, cfgs["baseline"].plain
				}
				if side == "interlock" && r == 0 && o.profile != "" && strings.HasPrefix(name, "cat") {
					// Long enough for the whole transfer at a fifth of
					// direct's rate; the client waits for the profile,
					// the timed run does not.
					cl.profile, cl.profileSecs = o.profile, 5*int(m.Direct[0][0])+20
				}
				target := sd.cpu()
				res, err := cl.run(ctx)
				if err != nil {
					fmt.Println("failed")
					return fmt.Errorf("%s (%s): %w", name, side, err)
				}
				m.Ends[side] = append(m.Ends[side], res.clientCPU+sd.cpu()-target)
				fmt.Printf("median %.3fs (load %s)", benchutil.Median(res.secs), loadavg())
				if side != "direct" {
					fmt.Printf(", interlock CPU %.2fs", res.cpu)
					m.CPU[side] = append(m.CPU[side], res.cpu)
					if side == "baseline" {
						sessions["baseline"] += n
					} else {
						sessions["interlock"] += n
					}
				}
				fmt.Println()
				switch side {
				case "interlock":
					m.Inter = append(m.Inter, res.secs)
				case "masked":
					m.Masked = append(m.Masked, res.secs)
				case "baseline":
					m.Baseline = append(m.Baseline, res.secs)
				default:
					m.Direct = append(m.Direct, res.secs)
				}
			}
		}
		metrics = append(metrics, m)
		return nil
	}
	if want("scp") {
		err := measure("scp upload", 1, false, func(side string) []string {
			k := sd.credKey
			if side == "interlock" {
				k = sd.clientKey
			}
			return append(append([]string{"scp"}, sd.opts(k)...), "-P", port, src, "root@127.0.0.3:"+filepath.Join(data, "dst-"+side+".bin"))
		})
		if err != nil {
			return err
		}
		err = measure("scp download", 1, true, func(side string) []string {
			k := sd.credKey
			if side != "direct" {
				k = sd.clientKey
			}
			return append(append([]string{"scp"}, sd.opts(k)...), "-P", port, "root@127.0.0.3:"+src, filepath.Join(data, "down-"+side+".bin"))
		})
		if err != nil {
			return err
		}
	}
	if want("cat") {
		err := measure("cat over exec (download)", 1, true, func(side string) []string {
			if side != "direct" {
				return viaIL("cat " + src)
			}
			return direct("cat " + src)
		})
		if err != nil {
			return err
		}
	}
	if want("setup") {
		err := measure("ssh host true", o.runs, false, func(side string) []string {
			if side == "interlock" {
				return viaIL("true")
			}
			return direct("true")
		})
		if err != nil {
			return err
		}
		// Through interlock neither leg runs OpenSSH 9.2's default
		// sntrup761x25519 key exchange (Go has curve25519 and ML-KEM),
		// and the target's hostkeys-00 announcement stops at interlock. The
		// like-for-like row gives the direct client the same key exchange
		// and no host key update, so the difference is interlock's own.
		same := []string{"-o", "KexAlgorithms=curve25519-sha256", "-o", "UpdateHostKeys=no"}
		err = measure("ssh host true, same kex", o.runs, false, func(side string) []string {
			k := sd.credKey
			if side == "interlock" {
				k = sd.clientKey
			}
			argv := sd.argv(k, "true")
			return append(append([]string{argv[0]}, same...), argv[1:]...)
		})
		if err != nil {
			return err
		}
	}
	// Proof of interception: one ssh session journaled per measured run.
	fmt.Println()
	for _, name := range []string{"interlock", "baseline"} {
		c, ok := cfgs[name]
		if !ok || name == "baseline" && sessions[name] == 0 {
			// The baseline runs in the transfers only.
			continue
		}
		opens, err := countOpens(ctx, c.journal)
		if err != nil {
			return err
		}
		if opens != sessions[name] {
			return fmt.Errorf("the %s journal holds %d ssh sessions, its side ran %d: not everything went through interlock", name, opens, sessions[name])
		}
		fmt.Printf("interception checked: %d ssh sessions in the %s journal, one per run\n", opens, name)
	}
	if o.profile != "" && want("cat") {
		fmt.Printf("CPU profile of interlock (first interlock round of cat over exec): %s\n", o.profile)
	}
	report(bin, o, metrics, fmt.Sprintf("fdatasync on the journal's disk (%s): %s before, %s after", jdir, syncBefore, syncLatency(jdir)))
	if o.jsonOut {
		b, _ := json.MarshalIndent(metrics, "", "  ")
		fmt.Println(string(b))
	}
	return nil
}

// syncLatency is p50 and p99 of 200 fdatasyncs of 4 KiB appends in dir.
func syncLatency(dir string) string {
	lat, err := benchutil.SyncLatencies(dir, 200, syscall.Fdatasync)
	if err != nil {
		return "unmeasured (" + err.Error() + ")"
	}
	return fmt.Sprintf("p50 %d µs, p99 %d µs", lat[len(lat)/2].Microseconds(), lat[len(lat)*99/100].Microseconds())
}

// loadavg is the 1-minute load average, to show how busy the machine was.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// client is one `sshbench client -n N -- argv`: direct, or under
// `interlock run` of bin with cfg.
type client struct {
	self, bin, cfg string
	n              int
	argv           []string
	// profile, when set, is where the client writes a CPU profile of
	// interlock of profileSecs seconds.
	profile     string
	profileSecs int
}

// clientRun is the seconds of each run, the CPU seconds they used and,
// through interlock, the CPU seconds interlock used over them.
type clientRun struct {
	secs []float64
	cpu  float64
	// clientCPU is the CPU seconds of the runs (ssh or scp).
	clientCPU float64
}

// pprofAddr is where interlock serves pprof for -profile.
const pprofAddr = "127.0.0.1:6064"

func (cl client) run(ctx context.Context) (clientRun, error) {
	cmdline := []string{cl.self, "client", "-n", strconv.Itoa(cl.n)}
	if cl.profile != "" {
		cmdline = append(cmdline, "-profile", cl.profile, "-profile-secs", strconv.Itoa(cl.profileSecs))
	}
	cmdline = append(append(cmdline, "--"), cl.argv...)
	if cl.bin != "" {
		cmdline = append([]string{cl.bin, "run", "-c", cl.cfg, "--engine", "embedded", "-q", "--"}, cmdline...)
	}
	cmd := exec.CommandContext(ctx, cmdline[0], cmdline[1:]...)
	if cl.profile != "" {
		cmd.Env = append(os.Environ(), "INTERLOCK_PPROF="+pprofAddr)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return clientRun{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var res clientResult
	if err := json.Unmarshal(out, &res); err != nil || len(res.NS) != cl.n {
		return clientRun{}, fmt.Errorf("client said %q: %v", out, err)
	}
	r := clientRun{secs: make([]float64, cl.n), cpu: res.ParentCPUMS / 1e3, clientCPU: res.ClientCPUMS / 1e3}
	for i, ns := range res.NS {
		r.secs[i] = float64(ns) / 1e9
	}
	return r, nil
}

var sshSessionRE = regexp.MustCompile(`"protocol":"ssh"`)

func countOpens(ctx context.Context, path string) (int, error) {
	n := 0
	err := journal.Entries(ctx, path, 1, func(e journal.Entry) error {
		if e.Kind == model.KindSessionOpen && sshSessionRE.Match(e.Body) {
			n++
		}
		return nil
	})
	return n, err
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}
