package apisix

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"strings"
)

// APISIX encrypts private keys at rest (ssl.key, ssl.keys[],
// upstream.tls.client_key) with apisix.data_encryption.keyring when its
// Admin API writes them: AES-CBC (AES-128 for a 16-byte key, AES-256 for a
// 32-byte key), the key doubling as the IV, PKCS#7 padding, base64. A value
// starting with "---" is a plain PEM key (apisix/ssl.lua aes_decrypt_pkey).

// ErrKeyDecrypt is returned by DecryptPrivateKey when no keyring entry
// decrypts the key.
var ErrKeyDecrypt = errors.New("apisix: private key is neither PEM nor decryptable with the data_encryption keyring")

// DefaultKeyring returns APISIX's default apisix.data_encryption.keyring
// (apisix/cli/config.lua), which every APISIX that did not change it uses.
func DefaultKeyring() []string { return []string{"qeddd145sfvddff3", "edd1c9f0985e76a2"} }

// DecryptPrivateKey returns the PEM form of a private key field: the value
// itself when it is PEM ("---" prefix), otherwise the value decrypted with
// the first keyring entry that yields a PEM block. The error never
// contains key material.
func DecryptPrivateKey(key string, keyring []string) (string, error) {
	if strings.HasPrefix(key, "---") {
		return key, nil
	}
	ct, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return "", ErrKeyDecrypt
	}
	for _, k := range keyring {
		if len(k) != 16 && len(k) != 32 {
			continue
		}
		block, err := aes.NewCipher([]byte(k))
		if err != nil {
			continue
		}
		pt := make([]byte, len(ct))
		cipher.NewCBCDecrypter(block, []byte(k)[:aes.BlockSize]).CryptBlocks(pt, ct)
		n := int(pt[len(pt)-1])
		if n < 1 || n > aes.BlockSize || n > len(pt) {
			continue
		}
		pad := true
		for _, b := range pt[len(pt)-n:] {
			pad = pad && int(b) == n
		}
		if pad && strings.HasPrefix(string(pt[:len(pt)-n]), "---") {
			return string(pt[:len(pt)-n]), nil
		}
	}
	return "", ErrKeyDecrypt
}

// looksEncrypted reports whether key has the shape of an encrypted key:
// base64 of whole AES blocks.
func looksEncrypted(key string) bool {
	ct, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(ct) > 0 && len(ct)%aes.BlockSize == 0
}
