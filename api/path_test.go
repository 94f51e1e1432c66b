package api

import (
	"bytes"
	"testing"
)

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"//", "/"},
		{"/a//b", "/a/b"},
		{"/a/b/", "/a/b/"},
		{"/a/./b", "/a/b"},
		{"/a/b/..", "/a/"},
		{"/a/b/../..", "/"},
		{"/..", "/"},
		{"/a/.", "/a/"},
		{"/%61%2f%2F%25%7e", "/a%2F%2F%25~"},
		{"/%2e%2E/a", "/a"},
		{"/a%", "/a%25"},
		{"/a%4", "/a%254"},
		{"/a%4g", "/a%254g"},
		{"/a%41", "/aA"},
		{"/%0%41", "/%250A"},
	} {
		if got := string(cleanPath(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("cleanPath(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzCleanPath: a clean path starts with a slash, holds no empty, "."
// or ".." segment, and is its own clean path; cleaning never panics.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "//healthz", "/%68ealthz", "/a/../../b/./c/", "/a%2Fb%25", "/%2e%2E/%", "/a%4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := cleanPath(nil, []byte(in))
		if len(out) == 0 || out[0] != '/' {
			t.Fatalf("cleanPath(%q) = %q: want a leading slash", in, out)
		}
		for _, bad := range []string{"//", "/./", "/../"} {
			if bytes.Contains(out, []byte(bad)) {
				t.Fatalf("cleanPath(%q) = %q holds %q", in, out, bad)
			}
		}
		if bytes.HasSuffix(out, []byte("/.")) || bytes.HasSuffix(out, []byte("/..")) {
			t.Fatalf("cleanPath(%q) = %q ends in a dot segment", in, out)
		}
		if again := cleanPath(nil, out); !bytes.Equal(again, out) {
			t.Fatalf("cleanPath(%q) = %q, but cleanPath of that is %q", in, out, again)
		}
	})
}
