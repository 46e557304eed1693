package kubetest

import (
	"encoding/base64"
	"fmt"
	"os"
)

// WriteKubeconfig writes a kubeconfig for server (https://host:port) that
// trusts caPEM and logs in with pair (none when pair is nil).
func WriteKubeconfig(path, server string, caPEM []byte, pair *Pair) error {
	b64 := base64.StdEncoding.EncodeToString
	user := "  user: {}\n"
	if pair != nil {
		user = fmt.Sprintf("  user:\n    client-certificate-data: %s\n    client-key-data: %s\n", b64(pair.CertPEM), b64(pair.KeyPEM))
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: test
%scontexts:
- name: test
  context: {cluster: test, user: test, namespace: default}
current-context: test
`, server, b64(caPEM), user)
	return os.WriteFile(path, []byte(cfg), 0o600)
}
