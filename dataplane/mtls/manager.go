package mtls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// Stats are the Manager's counters; all fields are atomics.
type Stats struct {
	// Updates counts published Materials.
	Updates atomic.Int64
	// Rejected counts objects that failed to compile.
	Rejected atomic.Int64
	// PeerRejected counts peer certificates refused (chain or identity).
	PeerRejected atomic.Int64
	// NoCertificate counts handshakes with no certificate to present.
	NoCertificate atomic.Int64
}

// Manager publishes the Material in force and builds tls.Configs reading
// it per handshake. Safe for concurrent use; Update is called by one
// goroutine (the data plane's snapshot builder) at a time.
type Manager struct {
	cur   atomic.Pointer[Material]
	log   *slog.Logger
	stats Stats
	// now is the verification clock.
	now func() time.Time
	mu  sync.Mutex // serializes Update
	// Keyring decrypts APISIX-encrypted keys; nil: APISIX's default.
	keyring []string
}

// NewManager returns a Manager with an empty Material. log receives
// handshake rejections (never key material); nil discards.
func NewManager(log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: log, now: time.Now}
	m.cur.Store(EmptyMaterial())
	return m
}

// Stats returns the live counters.
func (m *Manager) Stats() *Stats { return &m.stats }

// Material returns the Material in force (never nil).
func (m *Manager) Material() *Material { return m.cur.Load() }

// Update compiles ssls and secrets and publishes the result; objects that
// fail keep their previous version, and each failure is logged (object id
// and field, never material) and returned.
func (m *Manager) Update(ssls map[string]*apisix.SSL, secrets map[string]*apisix.Secret) []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mat, errs := BuildMaterial(Inputs{SSLs: ssls, Secrets: secrets, Keyring: m.keyring}, m.cur.Load())
	for _, err := range errs {
		m.stats.Rejected.Add(1)
		m.log.Error("mtls: object rejected, previous version stays in force", "err", err)
	}
	m.cur.Store(mat)
	m.stats.Updates.Add(1)
	return errs
}

// verifyChain checks leaf+intermediates against ca at now: expiry, chain
// to ca, depth, then subject alt names against sans (ca.sans when sans is
// nil). It returns the leaf.
func (m *Manager) verifyChain(certs []*x509.Certificate, ca *caSet, sans []SANMatcher) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: no certificate presented", ErrPeerCertificate)
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: ca.pool, Intermediates: inter, CurrentTime: m.now(),
		// Envoy does not enforce extended key usage; SPIFFE certificates
		// carry both serverAuth and clientAuth anyway.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %q (CA %s): %w", ErrPeerCertificate, sanList(leaf), ca.name, err)
	}
	if ca.depth > 0 {
		ok := false
		for _, ch := range chains {
			if len(ch)-1 <= ca.depth {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("%w: %q: chain longer than depth %d", ErrPeerCertificate, sanList(leaf), ca.depth)
		}
	}
	if sans == nil {
		sans = ca.sans
	}
	if !matchAnySAN(sans, leaf) {
		return fmt.Errorf("%w: %q matches none of %v", ErrPeerIdentity, sanList(leaf), sans)
	}
	return nil
}

// reject counts and logs a refused peer; the error is returned as is.
func (m *Manager) reject(side, ref string, err error) error {
	m.stats.PeerRejected.Add(1)
	m.log.Warn("mtls: "+side+" certificate rejected", "ref", ref, "err", err)
	return err
}

var errNoCA = errors.New("no trusted CA configured")
