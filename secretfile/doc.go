// Package secretfile keeps the secrets the server generates for itself
// beside its repos root (the API token, the fetch-token key, the key of the
// mirrors' credential digests): Shared reads the one kept in a file, or
// creates it if there is none, so that every replica on that root and every
// restart use the same one; Read refuses a file that others may read, that
// belongs to another user, that is a symbolic link or not a regular file.
package secretfile
