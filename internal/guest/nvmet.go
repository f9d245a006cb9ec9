package guest

import (
	"fmt"
	"strings"
)

// NvmetTarget describes a kernel nvmet-tcp target configured inside the
// guest through configfs, with a brd ramdisk as namespace 1.
type NvmetTarget struct {
	NQN     string
	Port    int      // TCP port the guest listens on (default 4420)
	SizeMiB int      // ramdisk size (default 64)
	Hosts   []string // allowed host NQNs; empty: any host
}

// Script returns shell lines (for Options.Script) that load brd and nvmet-tcp
// and expose the ramdisk /dev/ram0 as namespace 1 of t.NQN on 0.0.0.0:Port.
// The lines use `must`, so a configuration failure stops the script.
func (t NvmetTarget) Script() string {
	if t.Port == 0 {
		t.Port = 4420
	}
	if t.SizeMiB == 0 {
		t.SizeMiB = 64
	}
	var b strings.Builder
	fmt.Fprintf(&b, "must brd_load modprobe brd rd_nr=1 rd_size=%d\n", t.SizeMiB*1024)
	b.WriteString("must nvmet_load modprobe nvmet-tcp\n")
	fmt.Fprintf(&b, "NVMET_NQN=%s\n", shellQuote(t.NQN))
	b.WriteString(`nvmet_setup() {
	set -e
	C=/sys/kernel/config/nvmet
	S=$C/subsystems/$NVMET_NQN
	mkdir $S
`)
	if len(t.Hosts) == 0 {
		b.WriteString("\techo 1 > $S/attr_allow_any_host\n")
	} else {
		b.WriteString("\techo 0 > $S/attr_allow_any_host\n")
		for _, h := range t.Hosts {
			fmt.Fprintf(&b, "\tmkdir -p $C/hosts/%s\n\tln -s $C/hosts/%s $S/allowed_hosts/%s\n", shellQuote(h), shellQuote(h), shellQuote(h))
		}
	}
	fmt.Fprintf(&b, `	mkdir $S/namespaces/1
	echo /dev/ram0 > $S/namespaces/1/device_path
	echo 1 > $S/namespaces/1/enable
	mkdir $C/ports/1
	echo tcp > $C/ports/1/addr_trtype
	echo ipv4 > $C/ports/1/addr_adrfam
	echo 0.0.0.0 > $C/ports/1/addr_traddr
	echo %d > $C/ports/1/addr_trsvcid
	ln -s $S $C/ports/1/subsystems/$NVMET_NQN
}
must nvmet_configure nvmet_setup
`, t.Port)
	return b.String()
}
