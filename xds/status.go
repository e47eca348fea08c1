package xds

import (
	"time"
)

// State is the sync state of one resource type.
type State int

// The states of a resource type, in the order they are reached.
const (
	// StateIdle: nothing requested yet (e.g. no EDS cluster known).
	StateIdle State = iota
	// StateRequested: a request was sent, no response applied yet.
	StateRequested
	// StateACKed: the last response was applied and ACKed.
	StateACKed
	// StateNACKed: the last response was rejected; the config from the
	// last ACKed response stays in force.
	StateNACKed
)

// String is the state name shown by /xds_status.
func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateRequested:
		return "requested"
	case StateACKed:
		return "acked"
	case StateNACKed:
		return "nacked"
	}
	return "unknown"
}

// MarshalText encodes the state by name (for JSON status output).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// TypeStatus is the sync status of one resource type.
type TypeStatus struct {
	TypeURL string `json:"type_url"`
	State   State  `json:"state"`
	// Version is the version_info of the last ACKed response (delta: its
	// system_version_info, or the nonce when the server sets none).
	Version string `json:"version"`
	// Nonce is the nonce of the last response received.
	Nonce        string    `json:"nonce"`
	LastACK      time.Time `json:"last_ack,omitzero"`
	LastNACK     time.Time `json:"last_nack,omitzero"`
	NACKMessage  string    `json:"last_nack_message,omitempty"`
	ACKs         int64     `json:"acks"`
	NACKs        int64     `json:"nacks"`
	Resources    int       `json:"resources"`
	Subscribed   []string  `json:"subscribed,omitempty"`
	WildcardSubs bool      `json:"wildcard"`
}

// Status is the client's whole sync status.
type Status struct {
	Server    string       `json:"server"`
	Mode      string       `json:"mode"`
	NodeID    string       `json:"node_id"`
	Connected bool         `json:"connected"`
	Ready     bool         `json:"ready"`
	Reconnect int64        `json:"reconnects"`
	LastError string       `json:"last_error,omitempty"`
	Types     []TypeStatus `json:"types"`
}
