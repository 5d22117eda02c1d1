package access

import "fmt"

// FileError is an access file that cannot be read or is not the documented
// JSON. The message names the entry and the field, never a secret.
type FileError struct {
	Path   string
	Reason string
}

func (e *FileError) Error() string {
	return fmt.Sprintf("access file %s: %s", e.Path, e.Reason)
}
