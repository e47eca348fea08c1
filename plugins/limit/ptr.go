package limit

import "fmt"

func ptrString(p any) string { return fmt.Sprintf("%p", p) }
