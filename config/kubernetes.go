package config

import "strconv"

// KubernetesConfig is a kubernetes target's kubernetes section.
type KubernetesConfig struct {
	// CAFile is the cluster CA: it verifies the API server.
	CAFile string `yaml:"ca_file"`
	// ClientCAFile verifies the client certificates clients present (the
	// cluster's client CA, the API server's --client-ca-file). Without
	// it a client that presents a certificate is refused.
	ClientCAFile string `yaml:"client_ca_file,omitempty"`
	// ClientCertificateFile and ClientKeyFile, or TokenFile, are what
	// interlock calls the API server with. The account needs the
	// impersonate verb on users and groups (docs/kubernetes.md).
	ClientCertificateFile string `yaml:"client_certificate_file,omitempty"`
	ClientKeyFile         string `yaml:"client_key_file,omitempty"`
	TokenFile             string `yaml:"token_file,omitempty"`
	// ServingCAFile and ServingCAKeyFile are a CA interlock issues the
	// certificate it presents to clients from, instead of its own: the
	// cluster CA (kubeadm's /etc/kubernetes/pki/ca.crt and ca.key, k3s's
	// and kind's), so that kubeconfigs need no change. The key must be
	// readable by root only; interlock holds it only while it signs.
	ServingCAFile    string `yaml:"serving_ca_file,omitempty"`
	ServingCAKeyFile string `yaml:"serving_ca_key_file,omitempty"`
	// ServerNames are the names and addresses the certificate interlock
	// presents to clients covers, besides the address's host: the names
	// the kubeconfig's server URL may use.
	ServerNames []string `yaml:"server_names,omitempty"`
	// RecordBodyMax caps the bytes of a write's request body kept in
	// the journal (default 64 KiB).
	RecordBodyMax int `yaml:"record_body_max,omitempty"`
	// PassBearer lets a client's own bearer token through: the request
	// goes upstream with it instead of interlock's credential and
	// impersonation, after a SelfSubjectReview made with it told
	// interlock whose it is (docs/kubernetes.md). Default false: a
	// client's Authorization header is refused.
	PassBearer bool `yaml:"pass_bearer,omitempty"`
	// RecordResponses journals the body of every answer that is not a
	// stream (a watch, an exec, a port-forward), as the client got it
	// (a Secret's values masked), up to RecordResponseMax bytes.
	RecordResponses   bool `yaml:"record_responses,omitempty"`
	RecordResponseMax int  `yaml:"record_response_max,omitempty"`
}

// DefaultRecordBodyMax is record_body_max's default.
const DefaultRecordBodyMax = 64 << 10

// BodyMax is record_body_max, with its default.
func (k *KubernetesConfig) BodyMax() int {
	if k == nil || k.RecordBodyMax == 0 {
		return DefaultRecordBodyMax
	}
	return k.RecordBodyMax
}

// ResponseMax is record_response_max, with its default.
func (k *KubernetesConfig) ResponseMax() int {
	if k == nil || k.RecordResponseMax == 0 {
		return DefaultRecordBodyMax
	}
	return k.RecordResponseMax
}

func validateKubernetes(l *errorList, key string, k *KubernetesConfig) {
	key += ".kubernetes"
	if k == nil {
		l.add(key, "is required for a kubernetes target: ca_file, and client_certificate_file and client_key_file or token_file")
		return
	}
	if k.CAFile == "" {
		l.add(key+".ca_file", "is required: interlock always verifies the API server against the cluster CA")
	} else {
		absPath(l, key+".ca_file", k.CAFile, true)
	}
	if k.ClientCAFile != "" {
		absPath(l, key+".client_ca_file", k.ClientCAFile, true)
	}
	cert, tok := k.ClientCertificateFile != "" || k.ClientKeyFile != "", k.TokenFile != ""
	switch {
	case cert && tok:
		l.add(key+".token_file", "give a client certificate or token_file, not both")
	case !cert && !tok:
		l.add(key+".client_certificate_file", "is required (or token_file): interlock calls the API server with a credential it holds")
	case cert:
		if k.ClientCertificateFile == "" {
			l.add(key+".client_certificate_file", "is required with client_key_file")
		} else {
			absPath(l, key+".client_certificate_file", k.ClientCertificateFile, true)
		}
		if k.ClientKeyFile == "" {
			l.add(key+".client_key_file", "is required with client_certificate_file")
		} else {
			absPath(l, key+".client_key_file", k.ClientKeyFile, true)
		}
	default:
		absPath(l, key+".token_file", k.TokenFile, true)
	}
	switch {
	case (k.ServingCAFile == "") != (k.ServingCAKeyFile == ""):
		l.add(key+".serving_ca_key_file", "serving_ca_file and serving_ca_key_file go together (the cluster CA's certificate and key)")
	case k.ServingCAFile != "":
		absPath(l, key+".serving_ca_file", k.ServingCAFile, true)
		absPath(l, key+".serving_ca_key_file", k.ServingCAKeyFile, true)
	}
	for j, n := range k.ServerNames {
		if n == "" {
			l.add(key+".server_names["+strconv.Itoa(j)+"]", "is empty")
		}
	}
	if k.RecordBodyMax < 0 || k.RecordBodyMax > 16<<20 {
		l.add(key+".record_body_max", "is out of range; write 1 to 16777216")
	}
	if k.RecordResponseMax < 0 || k.RecordResponseMax > 16<<20 {
		l.add(key+".record_response_max", "is out of range; write 1 to 16777216")
	}
	if k.RecordResponseMax != 0 && !k.RecordResponses {
		l.add(key+".record_response_max", "applies with record_responses: true only")
	}
}
