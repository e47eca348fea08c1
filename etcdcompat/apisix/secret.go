package apisix

import (
	"errors"
	"fmt"
	"strings"
)

// SecretPrefix is where meshagent keeps SDS validation contexts (trusted
// CAs and subject-alt-name matchers), which have no APISIX kind:
// SecretPrefix + <id>. Certificate secrets are ssl objects instead.
const SecretPrefix = "/meshagent/secrets/"

// Secret is an SDS validation context as the xDS translation writes it
// under SecretPrefix. It is meshagent's own object (not an APISIX kind).
type Secret struct {
	// ID is the key's id (set from the key when decoded from the store).
	ID ID `json:"id,omitempty"`
	// Labels carry the xDS provenance (LabelXDSName is the SDS secret name).
	Labels Labels `json:"labels,omitempty"`
	// TrustedCA is one or more PEM encoded CA certificates.
	TrustedCA string `json:"trusted_ca"`
	// MatchSANs are subject-alt-name matchers: a literal matches exactly;
	// a trailing "*" makes it a prefix match.
	MatchSANs []string `json:"match_subject_alt_names,omitempty"`
}

// errSecretKey rejects keys under SecretPrefix that name no id.
var errSecretKey = errors.New("apisix: secret key must be " + SecretPrefix + "<id>")

// DecodeSecret strictly decodes and validates a Secret stored at key
// (SecretPrefix + id): unknown fields are errors, trusted_ca must be PEM
// encoded X.509 certificates. Errors never quote certificate material.
func DecodeSecret(key string, value []byte) (*Secret, error) {
	id, ok := strings.CutPrefix(key, SecretPrefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return nil, fmt.Errorf("%w: %q", errSecretKey, key)
	}
	s := &Secret{}
	if err := decodeStrict(value, s); err != nil {
		return nil, fmt.Errorf("apisix: secret %q: %w", id, err)
	}
	s.ID = ID(id)
	return s, nil
}

// check requires a parsable trusted_ca.
func (s *Secret) check(path string, p fieldSet) error {
	if err := checkLabels(path, s.Labels); err != nil {
		return err
	}
	if !p.has("trusted_ca") {
		return fieldErr(path, "trusted_ca", "is required")
	}
	if !parsesAsCertPEM(s.TrustedCA) {
		return fieldErr(path, "trusted_ca", "must be PEM encoded X.509 certificates")
	}
	for i, m := range s.MatchSANs {
		if m == "" {
			return &FieldError{Path: indexPath(joinPath(path, "match_subject_alt_names"), i), Rule: "must not be empty"}
		}
	}
	return nil
}
