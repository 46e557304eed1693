package evidence

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// LoadVerifier reads a public key file (journal.pub, or one an auditor
// was handed) and returns its verifier and the key string.
func LoadVerifier(path string) (note.Verifier, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("journal: public key: %w", err)
	}
	vkey := strings.TrimSpace(string(b))
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("journal: public key %s does not parse (want one line name+hash+key): %w", path, err)
	}
	return v, vkey, nil
}
