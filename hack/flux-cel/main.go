// Command flux-cel evaluates Flux Kustomization healthCheckExprs the way kustomize-controller
// does (github.com/fluxcd/pkg/runtime/cel: the object's top-level fields as variables,
// optional types on; the expressions tried in the order inProgress, failed, current, and
// InProgress when none holds), for tests/flux_health.rs. It reads one JSON object per line
// on stdin, {"inProgress": "...", "failed": "...", "current": "...", "object": {...}},
// and prints one status per line: Current, Failed, InProgress, or "Error: ..." when an
// expression cannot be evaluated (kustomize-controller then waits until its timeout).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
)

type request struct {
	InProgress string         `json:"inProgress"`
	Failed     string         `json:"failed"`
	Current    string         `json:"current"`
	Object     map[string]any `json:"object"`
}

func eval(expr string, obj map[string]any) (bool, error) {
	if expr == "" {
		return false, nil
	}
	var opts []cel.EnvOption
	opts = append(opts, cel.OptionalTypes(), ext.Strings(), ext.Lists(), ext.Sets())
	for _, name := range []string{"apiVersion", "kind", "metadata", "spec", "status"} {
		opts = append(opts, cel.Variable(name, cel.DynType))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return false, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return false, fmt.Errorf("%s: %w", expr, iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		return false, err
	}
	vars := map[string]any{}
	for k, v := range obj {
		vars[k] = v
	}
	out, _, err := prg.Eval(vars)
	if err != nil {
		return false, fmt.Errorf("%s: %w", expr, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%s: not a bool: %v", expr, out.Value())
	}
	return b, nil
}

// integers turns JSON numbers into int64 where they are integers, else float64.
func integers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = integers(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = integers(e)
		}
		return v
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	default:
		return v
	}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	for in.Scan() {
		var req request
		dec := json.NewDecoder(bytes.NewReader(in.Bytes()))
		// Integers stay integers, as in the unstructured objects kustomize-controller reads.
		dec.UseNumber()
		if err := dec.Decode(&req); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		obj, _ := integers(req.Object).(map[string]any)
		status := "InProgress"
		for _, step := range []struct{ expr, status string }{
			{req.InProgress, "InProgress"}, {req.Failed, "Failed"}, {req.Current, "Current"},
		} {
			ok, err := eval(step.expr, obj)
			if err != nil {
				// kustomize-controller keeps waiting on an expression that fails to
				// evaluate (a field that is not there yet) until its timeout.
				status = "Error: " + err.Error()
				break
			}
			if ok {
				status = step.status
				break
			}
		}
		fmt.Println(status)
	}
}
