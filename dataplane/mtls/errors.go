package mtls

import "errors"

// Errors of the package. Handshake errors wrap one of them and name the
// object (ssl id or secret name) they concern.
var (
	// ErrNoCertificate means no certificate is configured for the SNI,
	// ssl id or secret a handshake needs.
	ErrNoCertificate = errors.New("mtls: no certificate")
	// ErrUnknownSecret means a referenced SDS secret or ssl object is not
	// in the Material in force.
	ErrUnknownSecret = errors.New("mtls: unknown secret")
	// ErrPeerCertificate means the peer presented no certificate, or one
	// that does not chain to the trusted CA (expired, unknown authority,
	// chain too deep).
	ErrPeerCertificate = errors.New("mtls: peer certificate rejected")
	// ErrPeerIdentity means the peer's certificate is valid but none of its
	// subject alt names matches match_subject_alt_names.
	ErrPeerIdentity = errors.New("mtls: peer identity rejected")
	// ErrInvalid wraps configuration errors (bad PEM, bad matcher); the
	// message names the field.
	ErrInvalid = errors.New("mtls: invalid config")
)
