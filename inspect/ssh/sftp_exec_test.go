package ssh

import "testing"

func TestSFTPServerCommand(t *testing.T) {
	for cmd, want := range map[string]bool{
		"/usr/lib/openssh/sftp-server":             true,
		"/usr/libexec/openssh/sftp-server -l INFO": true,
		"sftp-server -d /srv -u 022":               true,
		"internal-sftp":                            true,
		"  /usr/lib/openssh/sftp-server ":          true,
		"/usr/lib/openssh/sftp-server; rm -rf /":   false,
		"/usr/lib/openssh/sftp-server -d ~/x":      false,
		"/usr/lib/openssh/sftp-server $(id)":       false,
		"/usr/lib/openssh/sftp-server\nrm x":       false,
		"'/usr/lib/openssh/sftp-server'":           false,
		"sh -c /usr/lib/openssh/sftp-server":       false,
		"/usr/lib/openssh/sftp-server-not":         false,
		"/usr/lib/openssh/sftp-server|tee /tmp/x":  false,
		"": false,
		"/usr/lib/openssh/sftp-server > /tmp/x 2>&1": false,
	} {
		if got := sftpServerCommand(cmd); got != want {
			t.Errorf("sftpServerCommand(%q) = %v, want %v", cmd, got, want)
		}
	}
}
