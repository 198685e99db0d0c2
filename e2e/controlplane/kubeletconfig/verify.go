package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
)

// verifyUpstream checks the copies of the kubelet's code against serverGo (the module's
// cmd/kubelet/app/server.go): every function of upstream.go must equal the function of the
// same name there, and the statements of our RunE up to its "End of the copy" comment must
// equal the first statements of NewKubeletCommand's RunE. Comments are not compared.
func verifyUpstream(serverGo string) error {
	src, err := os.ReadFile(serverGo)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	theirs, err := parser.ParseFile(fset, serverGo, src, 0)
	if err != nil {
		return err
	}
	ours, err := parser.ParseFile(fset, "upstream.go", upstreamSource, 0)
	if err != nil {
		return err
	}
	funcs := map[string]*ast.FuncDecl{}
	for _, decl := range theirs.Decls {
		if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil {
			funcs[fn.Name.Name] = fn
		}
	}
	checked := 0
	for _, decl := range ours.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok {
			continue
		}
		upstream, ok := funcs[fn.Name.Name]
		if !ok {
			return fmt.Errorf("%s: no function %s (the kubelet changed: update upstream.go)", serverGo, fn.Name.Name)
		}
		if render(fset, fn) != render(fset, upstream) {
			return fmt.Errorf("%s: function %s differs from upstream.go (the kubelet changed: update the copy)", serverGo, fn.Name.Name)
		}
		checked++
	}
	if checked == 0 {
		return fmt.Errorf("upstream.go has no functions")
	}

	mainFile, err := parser.ParseFile(fset, "main.go", mainSource, 0)
	if err != nil {
		return err
	}
	ourRun := runE(mainFile, "newKubeletCommand")
	theirRun := runE(theirs, "NewKubeletCommand")
	if ourRun == nil || theirRun == nil {
		return fmt.Errorf("RunE of the kubelet command not found (ours: %v, theirs: %v)", ourRun != nil, theirRun != nil)
	}
	// Our RunE ends with `_ = skippedDropinFiles; return printConfig(...)`.
	copied := len(ourRun.Body.List) - 2
	if copied <= 0 || copied > len(theirRun.Body.List) {
		return fmt.Errorf("RunE: %d copied statements, upstream has %d", copied, len(theirRun.Body.List))
	}
	for i := 0; i < copied; i++ {
		if render(fset, ourRun.Body.List[i]) != render(fset, theirRun.Body.List[i]) {
			return fmt.Errorf("%s: statement %d of NewKubeletCommand's RunE differs from main.go:\n%s", serverGo, i+1, render(fset, theirRun.Body.List[i]))
		}
	}
	return nil
}

func render(fset *token.FileSet, node any) string {
	var buf bytes.Buffer
	if fn, ok := node.(*ast.FuncDecl); ok {
		copied := *fn
		copied.Doc = nil
		node = &copied
	}
	if err := printer.Fprint(&buf, fset, node); err != nil {
		return "error: " + err.Error()
	}
	return buf.String()
}

// runE finds the RunE function literal in the function named fn.
func runE(file *ast.File, fn string) *ast.FuncLit {
	var found *ast.FuncLit
	for _, decl := range file.Decls {
		f, ok := decl.(*ast.FuncDecl)
		if !ok || f.Name.Name != fn {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			if key, ok := kv.Key.(*ast.Ident); ok && key.Name == "RunE" {
				if lit, ok := kv.Value.(*ast.FuncLit); ok {
					found = lit
				}
			}
			return true
		})
	}
	return found
}
