package main

import (
	"fmt"
	"runtime"

	"github.com/refkeeper/refkeeper/gitops"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func versionString() string {
	return fmt.Sprintf("refkeeper %s (%s, libgit2 %s)", version, runtime.Version(), gitops.LibgitVersion())
}
