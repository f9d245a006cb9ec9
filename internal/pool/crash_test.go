package pool

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/testtool"
)

// The crash test: a child process (this test binary re-executed with
// crashChildEnv set) imports a file-backed pool and runs random operations,
// reporting each intent before it starts and an ack once it is durable
// (after Flush, or after a metadata operation returned) over a pipe. The
// parent SIGKILLs it at a random moment, re-imports, runs Check and
// verifies every acknowledged operation; blocks with unacknowledged writes
// may hold any of their candidate values.
const crashChildEnv = "KURA_POOL_CRASH_CHILD"

const (
	crashBS   = 4096
	crashSize = 512 << 10
)

func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("crash test child; run by TestCrash")
	}
	out := os.NewFile(3, "report")
	w := bufio.NewWriter(out)
	say := func(f string, a ...any) {
		fmt.Fprintf(w, f+"\n", a...)
		w.Flush()
	}
	dev, err := blockdev.OpenFile(path, blockdev.FileOptions{BlockSize: crashBS, Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Import(ctx, dev)
	if err != nil {
		say("fail import: %v", err)
		t.Fatal(err)
	}
	seed, _ := strconv.ParseUint(os.Getenv(crashChildEnv+"_SEED"), 10, 64)
	say("ready")
	crashOps(p, seed, say, func() bool { return false })
}

// crashOps runs random operations on p until stop returns true or an
// operation fails, reporting intents and acks through say (see TestCrash).
func crashOps(p *Pool, seed uint64, say func(string, ...any), stop func() bool) {
	r := rand.New(rand.NewPCG(seed, 5))
	n := 0
	for !stop() {
		n++
		reps, snaps := p.Replicas(), p.Snapshots()
		switch op := r.IntN(100); {
		case op < 8 || len(reps) == 0:
			if len(reps) >= 4 {
				continue
			}
			name := fmt.Sprintf("r%d_%d", seed, n)
			thin := r.IntN(2) == 0
			say("c %s %t", name, thin)
			if _, err := p.CreateReplica(ctx, name, ReplicaOptions{Size: crashSize, Thin: thin}); err != nil {
				say("fail %v", err)
				return
			}
			say("ok")
		case op < 60:
			rep := reps[r.IntN(len(reps))]
			blk := r.IntN(crashSize / crashBS)
			cnt := 1 + r.IntN(min(8, crashSize/crashBS-blk))
			s := r.Uint64() | 1
			say("w %s %d %d %d", rep.Name(), blk, cnt, s)
			if _, err := rep.WriteAt(pattern(s, cnt*crashBS), int64(blk*crashBS)); err != nil {
				say("fail %v", err)
				return
			}
		case op < 68:
			rep := reps[r.IntN(len(reps))]
			blk := r.IntN(crashSize / crashBS)
			cnt := 1 + r.IntN(crashSize/crashBS-blk)
			say("w %s %d %d 0", rep.Name(), blk, cnt)
			if err := rep.Unmap(int64(blk*crashBS), int64(cnt*crashBS)); err != nil {
				say("fail %v", err)
				return
			}
		case op < 85:
			if err := reps[0].Flush(); err != nil {
				say("fail %v", err)
				return
			}
			say("ok")
		case op < 90:
			if len(snaps) >= 6 {
				continue
			}
			rep := reps[r.IntN(len(reps))]
			name := fmt.Sprintf("s%d_%d", seed, n)
			say("s %s %s", rep.Name(), name)
			if _, err := p.CreateSnapshot(ctx, rep.Name(), name, ""); err != nil {
				say("fail %v", err)
				return
			}
			say("ok")
		case op < 93:
			if len(snaps) == 0 || len(reps) >= 4 {
				continue
			}
			sn := snaps[r.IntN(len(snaps))].Name
			name := fmt.Sprintf("k%d_%d", seed, n)
			say("k %s %s", sn, name)
			if _, err := p.CloneSnapshot(ctx, sn, name, ""); err != nil {
				say("fail %v", err)
				return
			}
			say("ok")
		case op < 96:
			rep := reps[r.IntN(len(reps))]
			say("d %s", rep.Name())
			if err := p.DestroyReplica(ctx, rep.Name()); err != nil {
				say("fail %v", err)
				return
			}
			say("ok")
		default:
			if len(snaps) == 0 {
				continue
			}
			sn := snaps[r.IntN(len(snaps))].Name
			say("x %s", sn)
			err := p.DestroySnapshot(ctx, sn, r.IntN(2) == 0)
			if errors.Is(err, ErrHasDependents) {
				say("no")
				continue
			}
			if err != nil {
				say("fail %v", err)
				return
			}
			say("ok")
		}
	}
}

// cvol is the parent's model of one volume: acknowledged content plus
// writes issued since the last acknowledgement.
type cvol struct {
	data []byte
	pend []cwrite
	snap bool
}

type cwrite struct {
	blk, cnt int
	d        []byte // nil = zeros
}

// candidates reports whether got is an acceptable content for v.
func (v *cvol) verify(got []byte) error {
	for b := 0; b < len(v.data)/crashBS; b++ {
		g := got[b*crashBS : (b+1)*crashBS]
		if string(g) == string(v.data[b*crashBS:(b+1)*crashBS]) {
			continue
		}
		ok := false
		for _, w := range v.pend {
			if b < w.blk || b >= w.blk+w.cnt {
				continue
			}
			if w.d == nil && isZero(g) || w.d != nil && string(g) == string(w.d[(b-w.blk)*crashBS:(b-w.blk+1)*crashBS]) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("block %d matches neither acknowledged nor pending data (zero=%v, ack zero=%v, %d pending)", b, isZero(g), isZero(v.data[b*crashBS:(b+1)*crashBS]), len(v.pend))
		}
	}
	return nil
}

func (v *cvol) ack() {
	for _, w := range v.pend {
		if w.d == nil {
			clear(v.data[w.blk*crashBS : (w.blk+w.cnt)*crashBS])
		} else {
			copy(v.data[w.blk*crashBS:], w.d)
		}
	}
	v.pend = nil
}

func TestCrash(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in child")
	}
	cycles := 20
	if testtool.Long() {
		cycles = 200
	}
	dev, path := fileDev(t, 64<<20, false)
	p, err := Create(ctx, dev, "crash", CreateOptions{ClusterSize: testCS})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	model := map[string]*cvol{}
	var totalLines, totalVols int
	defer func() {
		t.Logf("%d cycles, %d reported operations, %d volumes verified", cycles, totalLines, totalVols)
	}()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for cycle := 1; cycle <= cycles; cycle++ {
		delay := time.Duration(5+r.IntN(150)) * time.Millisecond
		lines := runCrashChild(t, path, cycle, delay)
		totalLines += len(lines)
		totalVols += len(model)
		meta := applyReport(t, model, lines, false)
		q, err := Import(ctx, dev)
		if err != nil {
			t.Fatalf("cycle %d: import after crash: %v", cycle, err)
		}
		verifyCrash(t, q, model, meta, cycle)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// applyReport applies a child's report lines to the model and returns the
// metadata intent left unacknowledged, if any.
func applyReport(t *testing.T, model map[string]*cvol, lines []string, allowFail bool) []string {
	var meta []string // last unacknowledged metadata intent
	for _, ln := range lines {
		f := strings.Fields(ln)
		switch f[0] {
		case "ready":
		case "fail":
			if !allowFail {
				t.Fatalf("child failed: %s", ln)
			}
		case "w":
			blk, _ := strconv.Atoi(f[2])
			cnt, _ := strconv.Atoi(f[3])
			s, _ := strconv.ParseUint(f[4], 10, 64)
			w := cwrite{blk: blk, cnt: cnt}
			if s != 0 {
				w.d = pattern(s, cnt*crashBS)
			}
			model[f[1]].pend = append(model[f[1]].pend, w)
		case "no": // refused without committing anything
			meta = nil
		case "ok": // durable, and so is everything before it
			if meta != nil {
				applyMeta(model, meta)
			}
			meta = nil
			for _, v := range model {
				v.ack()
			}
		default:
			meta = f
		}
	}
	return meta
}

// verifyCrash checks an imported pool against the model and adopts what
// it holds for blocks that had several candidates.
func verifyCrash(t *testing.T, q *Pool, model map[string]*cvol, meta []string, cycle int) {
	t.Helper()
	if err := q.Check(ctx); err != nil {
		t.Fatalf("cycle %d: check after crash: %v", cycle, err)
	}
	// An unacknowledged metadata operation may or may not have happened.
	if meta != nil {
		resolveMeta(t, q, model, meta)
	}
	for name, v := range model {
		var d blockdev.Device
		var err error
		if v.snap {
			d, err = q.Snapshot(name)
		} else {
			d, err = q.Replica(name)
		}
		if err != nil {
			t.Fatalf("cycle %d: acknowledged %s missing: %v", cycle, name, err)
		}
		got := read(t, d, crashSize, 0)
		if err := v.verify(got); err != nil {
			t.Fatalf("cycle %d: %s: %v", cycle, name, err)
		}
		v.data, v.pend = got, nil
	}
	if n := len(q.Replicas()) + len(q.Snapshots()); n != len(model) {
		t.Fatalf("cycle %d: pool has %d volumes, model %d", cycle, n, len(model))
	}
}

func applyMeta(model map[string]*cvol, f []string) {
	switch f[0] {
	case "c":
		model[f[1]] = &cvol{data: make([]byte, crashSize)}
	case "s":
		src := model[f[1]]
		src.ack() // a snapshot flushes everything before it
		model[f[2]] = &cvol{data: slices.Clone(src.data), snap: true}
	case "k":
		model[f[2]] = &cvol{data: slices.Clone(model[f[1]].data)}
	case "d", "x":
		delete(model, f[1])
	}
}

// resolveMeta decides from the imported pool whether the interrupted
// metadata operation f happened, checking the content either way.
func resolveMeta(t *testing.T, q *Pool, model map[string]*cvol, f []string) {
	exists := func(n string) bool {
		_, e1 := q.Replica(n)
		_, e2 := q.Snapshot(n)
		return e1 == nil || e2 == nil
	}
	switch f[0] {
	case "c":
		if exists(f[1]) {
			model[f[1]] = &cvol{data: make([]byte, crashSize)}
		}
	case "s":
		if exists(f[2]) {
			src := model[f[1]]
			model[f[2]] = &cvol{data: slices.Clone(src.data), pend: slices.Clone(src.pend), snap: true}
		}
	case "k":
		if exists(f[2]) {
			model[f[2]] = &cvol{data: slices.Clone(model[f[1]].data)}
		}
	case "d", "x":
		if !exists(f[1]) {
			delete(model, f[1])
		}
	}
}

// runCrashChild runs one child cycle and returns its report lines.
func runCrashChild(t *testing.T, path string, cycle int, delay time.Duration) []string {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, fmt.Sprintf("%s_SEED=%d", crashChildEnv, cycle))
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	lines := make(chan string, 1<<16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// Wait for "ready", then kill after delay.
	var out []string
	select {
	case ln := <-lines:
		out = append(out, ln)
		if ln != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("cycle %d: child: %s", cycle, ln)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("cycle %d: child did not start", cycle)
	}
	time.Sleep(delay)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	<-done
	pr.Close()
	close(lines)
	for ln := range lines {
		out = append(out, ln)
	}
	return out
}
