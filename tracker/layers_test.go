package tracker

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoWireProtocol: the domain core speaks no wire protocol and knows no
// front end (docs/DESIGN.md, "Packages"), so any front end can call it.
func TestNoWireProtocol(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(path, "fasthttp") || path == "net/http" || path == "encoding/json" ||
				path == "github.com/impressiond/impressiond/api" {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
