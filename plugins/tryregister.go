package plugins

import "fmt"

// TryRegister is Register for plugins named in configuration (external
// processes, .so files), where a duplicate name or a late registration is
// an operator's mistake to report, not a bug to panic on.
func TryRegister(p Plugin) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	Register(p)
	return nil
}
