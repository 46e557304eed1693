// Package s3test starts a real S3-compatible server with object lock for
// tests: versitygw with its POSIX backend and versioning, on a loopback
// address, in a directory of its own. make test installs the versitygw
// binary once into a cache directory (the Makefile's VERSITYGW) and
// exports its path as INTERLOCK_VERSITYGW.
package s3test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/interlock/interlock/internal/testkit"
)

// Fixed root credentials of every server. They are test values.
const (
	AccessKey = "interlock-test-access"
	SecretKey = "interlock-test-secret-8d1f"
	Region    = "us-east-1"
)

// EnvBinary names the variable that gives the versitygw binary's path.
const EnvBinary = "INTERLOCK_VERSITYGW"

// Binary finds versitygw: INTERLOCK_VERSITYGW, then the Makefile's cache
// directory, then PATH.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (run make deps to install it)", EnvBinary, p, err)
		}
		return p, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		matches, _ := filepath.Glob(filepath.Join(home, ".cache", "interlock", "versitygw-*", "versitygw"))
		if len(matches) > 0 {
			return matches[len(matches)-1], nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", errors.New("versitygw not found (make deps installs it into ~/.cache/interlock; or set " + EnvBinary + ")")
}

// Server is a running versitygw.
type Server struct {
	// Dir holds the buckets (Dir/gw) and, with Versioning, the object
	// versions (Dir/versions).
	Dir  string
	Host string
	Port int
	cmd  *exec.Cmd
	log  string
}

// Options shape a server.
type Options struct {
	// Versioning keeps object versions (Dir/versions), as AWS S3 does in
	// every bucket with object lock: a PUT over a locked object then adds
	// a version instead of being refused. Without it, versitygw refuses
	// the PUT.
	Versioning bool
}

// Start starts versitygw on 127.0.0.1 with its data in dir. Stop it with
// Stop.
func Start(dir string, opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Host: "127.0.0.1", log: filepath.Join(dir, "versitygw.log")}
	for _, d := range []string{"gw", "versions"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("s3test: %w", err)
		}
	}
	if s.Port, err = testkit.PickPort(s.Host); err != nil {
		return nil, err
	}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	defer logf.Close()
	args := []string{"--access", AccessKey, "--secret", SecretKey, "--region", Region, "--port", s.Addr(), "--quiet", "posix"}
	if opts.Versioning {
		args = append(args, "--versioning-dir", filepath.Join(dir, "versions"))
	}
	s.cmd = exec.Command(bin, append(args, filepath.Join(dir, "gw"))...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("s3test: start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			go func() { <-exited }()
			return s, nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(s.log)
			return nil, fmt.Errorf("s3test: versitygw exited (%v):\n%s", err, testkit.Tail(string(b), 2000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("s3test: versitygw did not listen on %s within 15s", s.Addr())
		}
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Log returns the end of the server's log, for a failing test.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return testkit.Tail(string(b), 4000)
}

// Stop kills the server.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
	}
}
