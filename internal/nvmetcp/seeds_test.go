package nvmetcp

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteSeedCorpus regenerates testdata/fuzz seeds from the byte
// sequences of nvme-tcp-facts.md when KURA_WRITE_SEEDS=1.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("KURA_WRITE_SEEDS") != "1" {
		t.Skip("set KURA_WRITE_SEEDS=1 to regenerate")
	}
	seeds := map[string][]byte{
		"linux-icreq":   linuxICReq(),
		"linux-connect": linuxConnect("nqn.2019-05.io.kura:vol1", "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"),
		"linux-icreq-connect": append(linuxICReq(),
			linuxConnect("nqn.2014-08.org.nvmexpress.discovery", "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001")...),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodePDU")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		s := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte('\\x00')\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
