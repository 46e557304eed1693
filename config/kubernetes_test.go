package config

import (
	"strings"
	"testing"
)

// TestKubernetesRecordResponses: record_response_max is read with its
// default, and refused out of range or without record_responses.
func TestKubernetesRecordResponses(t *testing.T) {
	target := func(extra string) string {
		return "targets:\n  - name: k\n    protocol: kubernetes\n    address: 127.0.0.1:6443\n    kubernetes:\n" +
			"      ca_file: /etc/hostname\n      token_file: /etc/hostname\n" + extra
	}
	cfg, err := Parse("k.yaml", []byte(target("      pass_bearer: true\n      record_responses: true\n")))
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Targets[0].Kubernetes
	if !k.PassBearer || !k.RecordResponses || k.ResponseMax() != 64<<10 {
		t.Errorf("parsed %+v, response max %d", k, k.ResponseMax())
	}
	for extra, want := range map[string]string{
		"      record_responses: true\n      record_response_max: -1\n":       "record_response_max: is out of range",
		"      record_responses: true\n      record_response_max: 16777217\n": "record_response_max: is out of range",
		"      record_response_max: 100\n":                                    "applies with record_responses: true only",
	} {
		if _, err := Parse("k.yaml", []byte(target(extra))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", extra, err)
		}
	}
}

// TestKubernetesServingCA: serving_ca_file and serving_ca_key_file are
// read together, and refused alone or relative.
func TestKubernetesServingCA(t *testing.T) {
	target := func(extra string) string {
		return "targets:\n  - name: k\n    protocol: kubernetes\n    address: 127.0.0.1:6443\n    kubernetes:\n" +
			"      ca_file: /etc/hostname\n      token_file: /etc/hostname\n" + extra
	}
	cfg, err := Parse("k.yaml", []byte(target("      serving_ca_file: /etc/hostname\n      serving_ca_key_file: /etc/hostname\n")))
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Targets[0].Kubernetes; k.ServingCAFile != "/etc/hostname" || k.ServingCAKeyFile != "/etc/hostname" {
		t.Errorf("parsed %+v", k)
	}
	for extra, want := range map[string]string{
		"      serving_ca_file: /etc/hostname\n":                                    "go together",
		"      serving_ca_key_file: /etc/hostname\n":                                "go together",
		"      serving_ca_file: ca.crt\n      serving_ca_key_file: /etc/hostname\n": "serving_ca_file",
	} {
		if _, err := Parse("k.yaml", []byte(target(extra))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", extra, err)
		}
	}
}
