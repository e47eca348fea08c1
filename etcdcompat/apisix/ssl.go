package apisix

import (
	"crypto/tls"
	"crypto/x509"
	"regexp"
	"strconv"
	"strings"
)

// Certificate rules of schema_def.lua (certificate_scheme 128..64KiB,
// private_key_schema 64..64KiB) and apisix/ssl.lua validate. Values that
// are secret references ($secret://, $env://) are not parsed, as in
// APISIX. Keys encrypted by APISIX's Admin API are decrypted with the
// default keyring for the check (see DecryptPrivateKey). Unlike APISIX,
// the certificate and key must match (tls.X509KeyPair). Error messages
// never quote certificate or key material.

func isSecretRef(s string) bool {
	return strings.HasPrefix(s, "$secret://") || strings.HasPrefix(s, "$env://")
}

// checkCertKey checks lengths and that cert and key parse as a matching
// PEM pair.
func checkCertKey(path, certField, keyField, cert, key string) error {
	if err := checkStrLen(joinPath(path, certField), cert, 128, 64*1024); err != nil {
		return err
	}
	if err := checkStrLen(joinPath(path, keyField), key, 64, 64*1024); err != nil {
		return err
	}
	if isSecretRef(cert) || isSecretRef(key) {
		return nil
	}
	if !strings.HasPrefix(key, "---") {
		plain, err := DecryptPrivateKey(key, DefaultKeyring())
		if err != nil {
			// Encrypted with a keyring other than APISIX's default: it
			// cannot be checked here; the data plane decrypts it with the
			// configured keyring (DecryptPrivateKey) when it loads it.
			if looksEncrypted(key) && parsesAsCertPEM(cert) {
				return nil
			}
			if !parsesAsCertPEM(cert) {
				return fieldErr(path, certField, "must be a PEM encoded X.509 certificate")
			}
			return fieldErr(path, keyField, "must be a PEM encoded private key (or one encrypted with the data_encryption keyring)")
		}
		key = plain
	}
	if _, err := tls.X509KeyPair([]byte(cert), []byte(key)); err != nil {
		// Say which half is bad without echoing either.
		if !parsesAsCertPEM(cert) {
			return fieldErr(path, certField, "must be a PEM encoded X.509 certificate")
		}
		return fieldErr(path, keyField, "must be a PEM encoded private key matching "+certField)
	}
	return nil
}

func parsesAsCertPEM(s string) bool {
	pool := x509.NewCertPool()
	return pool.AppendCertsFromPEM([]byte(s))
}

// check applies schema_def.lua ssl and ssl.lua check_ssl_conf.
func (s *SSL) check(path string, p fieldSet) error {
	if err := checkDesc(path, s.Desc); err != nil {
		return err
	}
	if err := checkLabels(path, s.Labels); err != nil {
		return err
	}
	if err := defaultEnum(path, p, "type", &s.Type, "server", "server", "client"); err != nil {
		return err
	}
	if !p.has("cert") {
		return fieldErr(path, "cert", "is required")
	}
	if !p.has("key") {
		return fieldErr(path, "key", "is required")
	}
	if s.Type == "server" {
		switch {
		case p.has("sni") && p.has("snis"):
			return fieldErr(path, "snis", "only one of sni or snis is allowed")
		case !p.has("sni") && !p.has("snis"):
			return fieldErr(path, "sni", "is required for a server certificate (sni or snis)")
		}
	}
	if p.has("sni") {
		if err := checkHost(joinPath(path, "sni"), s.SNI); err != nil {
			return err
		}
	}
	if p.has("snis") {
		if len(s.SNIs) == 0 {
			return fieldErr(path, "snis", "must have at least 1 item")
		}
		for i, n := range s.SNIs {
			if err := checkHost(indexPath(joinPath(path, "snis"), i), n); err != nil {
				return err
			}
		}
	}
	if s.Status != nil && *s.Status != 0 && *s.Status != 1 {
		return fieldErr(path, "status", "must be 0 or 1")
	}
	if len(s.SSLProtocols) > 3 {
		return fieldErr(path, "ssl_protocols", "must have at most 3 items")
	}
	if i := firstDup(s.SSLProtocols); i >= 0 {
		return &FieldError{Path: indexPath(joinPath(path, "ssl_protocols"), i), Rule: "duplicate item"}
	}
	for i, v := range s.SSLProtocols {
		if err := checkEnum(indexPath(joinPath(path, "ssl_protocols"), i), v, "TLSv1.1", "TLSv1.2", "TLSv1.3"); err != nil {
			return err
		}
	}
	for i, c := range s.Certs {
		if err := checkStrLen(indexPath(joinPath(path, "certs"), i), c, 128, 64*1024); err != nil {
			return err
		}
	}
	for i, k := range s.Keys {
		if err := checkStrLen(indexPath(joinPath(path, "keys"), i), k, 64, 64*1024); err != nil {
			return err
		}
	}
	if err := checkCertKey(path, "cert", "key", s.Cert, s.Key); err != nil {
		return err
	}
	if s.Type == "client" {
		return nil
	}
	if len(s.Certs) != len(s.Keys) {
		return fieldErr(path, "keys", "mismatched number of certs and keys")
	}
	for i := range s.Certs {
		if err := checkCertKey(path, "certs["+strconv.Itoa(i)+"]", "keys["+strconv.Itoa(i)+"]", s.Certs[i], s.Keys[i]); err != nil {
			return err
		}
	}
	return nil
}

// check applies ssl.client: ca required and parsable, depth >= 0 (default
// 1), skip_mtls_uri_regex non-empty, unique, compilable.
func (c *SSLClient) check(path string, p fieldSet) error {
	if !p.has("ca") {
		return fieldErr(path, "ca", "is required")
	}
	if err := checkStrLen(joinPath(path, "ca"), c.CA, 128, 64*1024); err != nil {
		return err
	}
	if !isSecretRef(c.CA) && !parsesAsCertPEM(c.CA) {
		return fieldErr(path, "ca", "must be PEM encoded X.509 certificates")
	}
	if !p.has("depth") {
		c.Depth = 1
	} else if c.Depth < 0 {
		return fieldErr(path, "depth", "must be >= 0")
	}
	if p.has("skip_mtls_uri_regex") {
		rp := joinPath(path, "skip_mtls_uri_regex")
		if len(c.SkipMTLSURIRegex) == 0 {
			return &FieldError{Path: rp, Rule: "must have at least 1 item"}
		}
		if i := firstDup(c.SkipMTLSURIRegex); i >= 0 {
			return &FieldError{Path: indexPath(rp, i), Rule: "duplicate item"}
		}
		for i, re := range c.SkipMTLSURIRegex {
			if _, err := regexp.Compile(re); err != nil {
				return &FieldError{Path: indexPath(rp, i), Rule: "invalid regex: " + err.Error()}
			}
		}
	}
	return nil
}
