package deploy

import (
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestMain removes the binaries the tests built (testdata.RefkeeperBinary).
func TestMain(m *testing.M) { testdata.Main(m) }
