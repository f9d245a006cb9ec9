package benchsuite

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

type engKind int

const (
	engReplica engKind = iota
	engNexus1
	engNexus3
	engNVMf
)

// kuraHas reports whether `kura <cmd...> --help` succeeds, i.e. whether
// the CLI has that command yet.
func kuraHas(ctx context.Context, kura string, args ...string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kura, append(args, "--help")...).CombinedOutput()
	if err != nil {
		return false
	}
	// cobra prints the parent's help for unknown subcommands only with an
	// error; a successful help that names the usage of the command is good.
	return strings.Contains(string(out), "Usage")
}

func startKuraEngine(k engKind) func(ctx context.Context, env *Env) (*Target, error) {
	return func(ctx context.Context, env *Env) (*Target, error) {
		if env.Kura == "" {
			return nil, fmt.Errorf("%w: kura binary not built", ErrUnavailable)
		}
		if !kuraHas(ctx, env.Kura, "engine") {
			return nil, fmt.Errorf("%w: `kura engine` not built yet", ErrUnavailable)
		}
		return startEngine(ctx, env, k)
	}
}

func startEngine(ctx context.Context, env *Env, k engKind) (*Target, error) {
	return nil, fmt.Errorf("%w: engine wiring pending", ErrUnavailable)
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}
