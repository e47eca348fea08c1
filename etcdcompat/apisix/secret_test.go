package apisix

import (
	"errors"
	"strings"
	"testing"
)

// testCAPEM is a self-signed CA certificate (public material only).
const testCAPEM = `-----BEGIN CERTIFICATE-----
MIIBajCCAQ+gAwIBAgIBATAKBggqhkjOPQQDAjAcMRowGAYDVQQDExFtZXNoYWdl
bnQtdGVzdC1jYTAeFw0yNDAxMDEwMDAwMDBaFw00NDAxMDEwMDAwMDBaMBwxGjAY
BgNVBAMTEW1lc2hhZ2VudC10ZXN0LWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD
QgAELed5RMaCYJDYyGfIdiV5iH6ZLrXpqufJxVUXR26wbMo/hVWfP8CLt5FJla03
JL+CLVCvr3vKS0VKoPUzMkjEzqNCMEAwDgYDVR0PAQH/BAQDAgIEMA8GA1UdEwEB
/wQFMAMBAf8wHQYDVR0OBBYEFIfi3AWKTUu+lMVPC+dT3UNIrzjYMAoGCCqGSM49
BAMCA0kAMEYCIQCXwRMjDfUFCEegbBUU7+hF4tFtzTYrKN1XqbjcYVkcigIhANHk
QaF4iRHsp3w8Crbs1BEdIMV2GgZpOY882DVrljtb
-----END CERTIFICATE-----
`

func TestDecodeSecret(t *testing.T) {
	ok := `{"trusted_ca":` + quote(caOrSkip(t)) + `,"match_subject_alt_names":["spiffe://default/*"],"labels":{"meshagent.xds.name":"mesh_ca:secret:default"}}`
	v, err := Decode([]byte(SecretPrefix+"mesh_ca"), []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	s, isSecret := v.(*Secret)
	if !isSecret || s.ID != "mesh_ca" || s.Labels[LabelXDSName] != "mesh_ca:secret:default" || len(s.MatchSANs) != 1 {
		t.Fatalf("decoded %#v", v)
	}
	cases := []struct{ name, key, value, want string }{
		{"no ca", SecretPrefix + "x", `{}`, "trusted_ca"},
		{"bad ca", SecretPrefix + "x", `{"trusted_ca":"not a pem"}`, "trusted_ca"},
		{"unknown field", SecretPrefix + "x", `{"trusted_ca":` + quote(caOrSkip(t)) + `,"crl":"x"}`, "crl"},
		{"empty matcher", SecretPrefix + "x", `{"trusted_ca":` + quote(caOrSkip(t)) + `,"match_subject_alt_names":[""]}`, "match_subject_alt_names[0]"},
		{"no id", SecretPrefix, `{}`, "secret key"},
		{"nested id", SecretPrefix + "a/b", `{}`, "secret key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.key), []byte(tc.value))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
			if tc.want != "secret key" && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

// caOrSkip returns a CA PEM the decoder accepts (failing if it does not).
func caOrSkip(t *testing.T) string {
	t.Helper()
	if !parsesAsCertPEM(testCAPEM) {
		t.Fatal("embedded test CA does not parse")
	}
	return testCAPEM
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "\n", `\n`) + `"`
}

func FuzzDecodeSecret(f *testing.F) {
	f.Add([]byte(`{"trusted_ca":"x","match_subject_alt_names":["a*"]}`))
	f.Add([]byte(`{"trusted_ca":` + quote(testCAPEM) + `}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSecret(SecretPrefix+"f", b)
		if err == nil && (s == nil || !parsesAsCertPEM(s.TrustedCA)) {
			t.Fatalf("accepted a secret without a parsable CA")
		}
	})
}
