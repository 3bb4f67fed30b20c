// Command argocd-lua runs an Argo CD resource health check the way Argo CD does: on
// gopher-lua (the Lua 5.1 interpreter Argo CD embeds), with the object as the global `obj`
// (maps and lists as tables, numbers as Lua numbers, as argo-cd's util/lua decodes them)
// and the returned table read for `status` and `message`. tests/argocd_health.rs runs
// every fixture through it as well as through mlua, and requires the same answer.
//
// Usage: argocd-lua SCRIPT.lua; one JSON object per line on stdin, one
// {"status": ..., "message": ...} per line on stdout.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
)

func decode(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := l.NewTable()
		for k, e := range v {
			t.RawSetString(k, decode(l, e))
		}
		return t
	case []any:
		t := l.NewTable()
		for i, e := range v {
			t.RawSetInt(i+1, decode(l, e))
		}
		return t
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

func main() {
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	for in.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(in.Bytes(), &obj); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// Argo CD opens only some libraries; the checks need base and table.
		l := lua.NewState(lua.Options{SkipOpenLibs: true})
		for _, lib := range []struct {
			name string
			fn   lua.LGFunction
		}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
			l.Push(l.NewFunction(lib.fn))
			l.Push(lua.LString(lib.name))
			l.Call(1, 0)
		}
		l.SetGlobal("obj", decode(l, obj))
		if err := l.DoString(string(script)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		hs, ok := l.Get(-1).(*lua.LTable)
		if !ok {
			fmt.Fprintln(os.Stderr, "the script did not return a table")
			os.Exit(1)
		}
		out, _ := json.Marshal(map[string]string{
			"status":  lua.LVAsString(hs.RawGetString("status")),
			"message": lua.LVAsString(hs.RawGetString("message")),
		})
		fmt.Println(string(out))
		l.Close()
	}
}
