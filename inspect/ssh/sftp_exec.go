package ssh

import (
	"path"
	"strings"
)

// sftpServerCommand says whether an exec command starts an sftp server
// (`sftp -s /usr/lib/openssh/sftp-server` asks for one so), which is
// relayed and judged as the sftp subsystem, packet by packet: recorded
// as raw bytes, its operations would escape every sftp rule.
//
// Only a command the target's shell cannot make into anything else is
// recognised: a path whose last element is sftp-server, or internal-sftp,
// followed by options, with no character a shell gives a meaning (no
// ";", "|", "$", quotes, globs, "~", newlines ...). Anything else stays
// an exec, relayed and recorded byte for byte, judged by exec rules.
func sftpServerCommand(cmd string) bool {
	for _, c := range cmd {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(" /._-+,:=@%", c)) {
			return false
		}
	}
	argv := strings.Fields(cmd)
	if len(argv) == 0 {
		return false
	}
	return argv[0] == "internal-sftp" || path.Base(argv[0]) == "sftp-server"
}
