package goplugin

import "fmt"

func symbolErr(path, sym string, err error) error {
	return fmt.Errorf("%w: %s does not export %s: %v", ErrSymbol, path, sym, err)
}
