package cli

import (
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// humanSize formats bytes the way the tables show them: "0 B", "512 B",
// "96.0 MiB", "1.0 GiB".
func humanSize(b uint64) string {
	if b < 1000 {
		return fmt.Sprintf("%d B", b)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(b) / 1024
	i := 0
	// Like the reference client, move to the next unit from 1000 on:
	// 1000 MiB shows as "1.0 GiB".
	for v >= 1000 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := fmt.Sprintf("%.1f %s", v, units[i])
	return s
}

// printJSON writes m as indented JSON with the proto field names and every
// field present, for scripts (-o json).
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
