// Package strictjson holds configuration files to the names their Go types
// give: encoding/json matches object keys case-insensitively and lets the
// last of two equal keys win, so `"Role": "admin"` beside `"role": "read"`
// would be read as admin by a file that a reviewer reads as read-only.
// CheckKeys refuses such a file before it is used.
//
// It imports only the standard library; access and mirrors import it for
// the access and credentials files.
package strictjson
