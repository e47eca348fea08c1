package apisix

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// encryptLikeAPISIX encrypts as apisix/core/data_encryption.lua does.
func encryptLikeAPISIX(t *testing.T, plain, key string) string {
	t.Helper()
	block, err := aes.NewCipher([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	n := aes.BlockSize - len(plain)%aes.BlockSize
	pt := []byte(plain + strings.Repeat(string(rune(n)), n))
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, []byte(key)[:aes.BlockSize]).CryptBlocks(ct, pt)
	return base64.StdEncoding.EncodeToString(ct)
}

func TestEncryptedKeys(t *testing.T) {
	p := testCerts(t)
	ssl := func(key string) []byte {
		b, _ := json.Marshal(map[string]any{"cert": p.cert, "key": key, "sni": "a.example.com"})
		return b
	}
	// Encrypted with APISIX's default keyring (second entry too): checked.
	for _, k := range DefaultKeyring() {
		enc := encryptLikeAPISIX(t, p.key, k)
		if _, err := DecodeKind(KindSSL, ssl(enc)); err != nil {
			t.Fatalf("key encrypted with %q rejected: %v", k, err)
		}
		if got, err := DecryptPrivateKey(enc, DefaultKeyring()); err != nil || got != p.key {
			t.Fatalf("DecryptPrivateKey: %v", err)
		}
	}
	// Encrypted with the default keyring but not matching the cert: rejected.
	if _, err := DecodeKind(KindSSL, ssl(encryptLikeAPISIX(t, p.key2, DefaultKeyring()[0]))); err == nil ||
		!strings.Contains(err.Error(), "key: must be a PEM encoded private key matching cert") {
		t.Fatalf("mismatched encrypted key: %v", err)
	}
	// A custom 32-byte keyring: accepted by shape, decrypted by the data plane.
	custom := "0123456789abcdef0123456789abcdef"
	enc := encryptLikeAPISIX(t, p.key, custom)
	if _, err := DecodeKind(KindSSL, ssl(enc)); err != nil {
		t.Fatalf("custom-keyring key rejected: %v", err)
	}
	if _, err := DecryptPrivateKey(enc, DefaultKeyring()); !errors.Is(err, ErrKeyDecrypt) {
		t.Fatalf("wrong keyring: %v", err)
	}
	if got, err := DecryptPrivateKey(enc, []string{"short", custom}); err != nil || got != p.key {
		t.Fatalf("custom keyring: %v", err)
	}
	// Neither PEM nor ciphertext: rejected without echoing it.
	junk := strings.Repeat("not-a-key!", 10)
	_, err := DecodeKind(KindSSL, ssl(junk))
	if err == nil || !strings.Contains(err.Error(), "key: must be a PEM encoded private key") || strings.Contains(err.Error(), junk) {
		t.Fatalf("junk key: %v", err)
	}
}
