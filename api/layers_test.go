package api

import (
	"go/parser"
	gotoken "go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHTTPLayerOnly: api is the HTTP layer only. It reaches the state
// through the tracker, never through the stores or the dedup and counter
// structures below it (docs/DESIGN.md, "Packages").
func TestHTTPLayerOnly(t *testing.T) {
	forbidden := []string{"/store", "/store/redisstore", "/sketch", "/stats"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		ast, err := parser.ParseFile(gotoken.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if path == "github.com/impressiond/impressiond"+bad {
					t.Errorf("%s imports %s: the HTTP layer goes through the tracker", f, path)
				}
			}
		}
	}
}
