package guest

import (
	"bytes"
	"fmt"
	"path"
	"sort"
	"strings"
)

// cpioFile is one regular file of a newc archive.
type cpioFile struct {
	name string // relative path, no leading slash
	mode uint32 // permission bits
	data []byte
}

// newcArchive builds an uncompressed "newc" (070701) cpio archive holding the
// files and every parent directory they need, ending with the trailer. The
// kernel unpacks such an archive appended to the initramfs.
func newcArchive(files []cpioFile) []byte {
	var b bytes.Buffer
	ino := uint32(1)
	dirs := map[string]bool{}
	var dirList []string
	for _, f := range files {
		for d := path.Dir(f.name); d != "." && d != "/"; d = path.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				dirList = append(dirList, d)
			}
		}
	}
	// Parents before children.
	sort.Slice(dirList, func(i, j int) bool {
		return strings.Count(dirList[i], "/") < strings.Count(dirList[j], "/")
	})
	for _, d := range dirList {
		writeEntry(&b, ino, 0o040755, 2, d, nil)
		ino++
	}
	for _, f := range files {
		writeEntry(&b, ino, 0o100000|f.mode, 1, f.name, f.data)
		ino++
	}
	writeEntry(&b, 0, 0, 1, "TRAILER!!!", nil)
	return b.Bytes()
}

func writeEntry(b *bytes.Buffer, ino, mode, nlink uint32, name string, data []byte) {
	fmt.Fprintf(b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	b.WriteString(name)
	b.WriteByte(0)
	pad4(b)
	b.Write(data)
	pad4(b)
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}
