package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// capability is one Linux capability interlock needs.
type capability struct {
	bit  uint
	name string
	why  string
}

var neededCaps = []capability{
	{39, "CAP_BPF", "load the BPF programs and maps"},
	{12, "CAP_NET_ADMIN", "attach cgroup socket programs"},
	{21, "CAP_SYS_ADMIN", "create cgroups, mount the BPF filesystem and read other processes' /proc"},
}

// missingCaps lists the needed capabilities the process does not have in
// its effective set.
func missingCaps() ([]capability, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse CapEff: %w", err)
		}
		var missing []capability
		for _, c := range neededCaps {
			if eff&(1<<c.bit) == 0 {
				missing = append(missing, c)
			}
		}
		return missing, nil
	}
	return nil, errors.New("no CapEff line in /proc/self/status")
}

// requireCaps fails with exitNoPerm and names each missing capability and
// what it is for.
func requireCaps() error {
	missing, err := missingCaps()
	if err != nil {
		return exitWith(exitSoftware, err)
	}
	if len(missing) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("missing privileges:")
	for _, c := range missing {
		fmt.Fprintf(&b, "\n  %s, to %s", c.name, c.why)
	}
	b.WriteString("\nrun it as root (sudo interlock ...), or grant the capabilities: " +
		"setcap cap_bpf,cap_net_admin,cap_sys_admin+ep $(command -v interlock)")
	return exitWith(exitNoPerm, errors.New(b.String()))
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitWith(exitIOErr, err)
	}
	return nil
}
