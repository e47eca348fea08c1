//go:build !race

package goplugin_test

const raceEnabled = false
