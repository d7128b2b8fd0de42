// Package contract is the behaviour every sharedfs backend must show: one
// test suite, run by the sharedfs tests over afero.MemMapFs, the local
// backend and the Tahoe-LAFS backend (against tahoetest), and available to
// any other backend:
//
//	func TestMyBackend(t *testing.T) {
//		contract.Run(t, func(t testing.TB) afero.Fs { return newMyBackend(t) })
//	}
package contract

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jobx/jobx/sharedfs"
	"github.com/spf13/afero"
)

// Run runs the contract. newBackend must return a fresh, empty backend
// each time it is called; Run opens workflow filesystems on it with
// sharedfs.New and closes them with t.Cleanup.
func Run(t *testing.T, newBackend func(t testing.TB) afero.Fs) {
	open := func(t *testing.T) *sharedfs.FS {
		t.Helper()
		return openFS(t, newBackend(t), "wf")
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, f *sharedfs.FS)
	}{
		{"mkdir creates missing parents and is idempotent", testMkdir},
		{"write then read returns the same bytes", testWriteRead},
		{"ls lists sorted by name with sizes and kinds", testLs},
		{"stat describes files, directories and the root", testStat},
		{"cp copies a file and replaces the destination", testCp},
		{"cpr copies a directory tree", testCpr},
		{"mv renames within a directory", testMvSameDir},
		{"mv moves files and directories across directories", testMvAcross},
		{"rm removes files but not directories", testRm},
		{"rmdir removes a whole tree", testRmdir},
		{"exists, isfile and isdir tell kinds apart", testExists},
		{"missing paths wrap fs.ErrNotExist and name the path", testNotExist},
		{"paths that escape the workflow root are refused", testEscapes},
		{"absolute paths are relative to the workflow root", testAbsolute},
		{"open honours create, exclusive, append and truncate", testOpenFlags},
		{"an opened file reads, seeks and lists", testOpenRead},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
	t.Run("two workflows on one backend are isolated", func(t *testing.T) {
		b := newBackend(t)
		testIsolation(t, openFS(t, b, "a"), openFS(t, b, "ab"))
	})
}

func openFS(t testing.TB, backend afero.Fs, workflow string) *sharedfs.FS {
	t.Helper()
	f, err := sharedfs.New(backend, workflow)
	if err != nil {
		t.Fatalf("New(%q): %v", workflow, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, f *sharedfs.FS, p, data string) {
	t.Helper()
	must(t, f.WriteFile(p, []byte(data), 0o644))
}

func read(t testing.TB, f *sharedfs.FS, p string) string {
	t.Helper()
	b, err := f.ReadFile(p)
	if err != nil {
		t.Fatalf("ReadFile(%q): %v", p, err)
	}
	return string(b)
}

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

func wantBool(t testing.TB, what string, got bool, err error, want bool) {
	t.Helper()
	if err != nil || got != want {
		t.Fatalf("%s = %v, %v; want %v, nil", what, got, err, want)
	}
}

func names(es []sharedfs.EntryStat) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
	}
	return out
}

func testMkdir(t *testing.T, f *sharedfs.FS) {
	must(t, f.Mkdir("a/b/c"))
	must(t, f.Mkdir("a/b/c"))
	must(t, f.Mkdir("a/b"))
	ok, err := f.IsDir("a/b/c")
	wantBool(t, "IsDir(a/b/c)", ok, err, true)
	write(t, f, "a/file", "x")
	wantErr(t, "Mkdir over a file", f.Mkdir("a/file"), fs.ErrExist)
	wantErr(t, "Mkdir below a file", f.Mkdir("a/file/sub"), sharedfs.ErrNotDir)
}

func testWriteRead(t *testing.T, f *sharedfs.FS) {
	write(t, f, "deep/er/x.txt", "hello")
	if got := read(t, f, "deep/er/x.txt"); got != "hello" {
		t.Fatalf("read %q, want hello", got)
	}
	write(t, f, "deep/er/x.txt", "bye")
	if got := read(t, f, "deep/er/x.txt"); got != "bye" {
		t.Fatalf("after overwrite read %q, want bye", got)
	}
	write(t, f, "empty", "")
	if got := read(t, f, "empty"); got != "" {
		t.Fatalf("empty file read %q", got)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<14)
	must(t, f.WriteFile("big", big, 0o644))
	if got, err := f.ReadFile("big"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file: %d bytes, %v", len(got), err)
	}
	_, err := f.ReadFile("deep")
	wantErr(t, "ReadFile of a directory", err, sharedfs.ErrIsDir)
	wantErr(t, "WriteFile over the root", f.WriteFile("/", nil, 0o644), sharedfs.ErrIsDir)
	wantErr(t, "WriteFile below a file", f.WriteFile("empty/x", nil, 0o644), sharedfs.ErrNotDir)
}

func testLs(t *testing.T, f *sharedfs.FS) {
	write(t, f, "d/b.txt", "bb")
	write(t, f, "d/a.txt", "a")
	write(t, f, "d/C.txt", "ccc")
	must(t, f.Mkdir("d/sub"))
	es, err := f.Ls("d")
	must(t, err)
	if got, want := names(es), []string{"C.txt", "a.txt", "b.txt", "sub"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Ls names %v, want %v", got, want)
	}
	sizes := map[string]int64{"C.txt": 3, "a.txt": 1, "b.txt": 2}
	for _, e := range es {
		if e.Name == "sub" {
			if !e.IsDir || !e.Mode.IsDir() {
				t.Errorf("sub: IsDir %v mode %v, want a directory", e.IsDir, e.Mode)
			}
			continue
		}
		if e.IsDir || !e.Mode.IsRegular() || e.Size != sizes[e.Name] {
			t.Errorf("%s: IsDir %v mode %v size %d, want a %d-byte file", e.Name, e.IsDir, e.Mode, e.Size, sizes[e.Name])
		}
		if e.ModTime.IsZero() || time.Since(e.ModTime) > time.Hour {
			t.Errorf("%s: mod time %v, want about now", e.Name, e.ModTime)
		}
	}
	root, err := f.Ls("/")
	must(t, err)
	if got := names(root); !reflect.DeepEqual(got, []string{"d"}) {
		t.Fatalf("Ls(/) = %v, want [d]", got)
	}
	empty, err := f.Ls("d/sub")
	if err != nil || len(empty) != 0 {
		t.Fatalf("Ls(empty dir) = %v, %v", empty, err)
	}
	_, err = f.Ls("d/a.txt")
	wantErr(t, "Ls of a file", err, sharedfs.ErrNotDir)
}

func testStat(t *testing.T, f *sharedfs.FS) {
	write(t, f, "dir/f", "12345")
	st, err := f.Stat("dir/f")
	must(t, err)
	if st.Name != "f" || st.Size != 5 || st.IsDir {
		t.Fatalf("Stat(dir/f) = %+v", st)
	}
	st, err = f.Stat("dir")
	must(t, err)
	if st.Name != "dir" || !st.IsDir {
		t.Fatalf("Stat(dir) = %+v", st)
	}
	st, err = f.Stat(".")
	must(t, err)
	if !st.IsDir || st.Name != "/" {
		t.Fatalf("Stat(.) = %+v, want the root directory named /", st)
	}
}

func testCp(t *testing.T, f *sharedfs.FS) {
	write(t, f, "src/x", "one")
	must(t, f.Cp("src/x", "dst/y"))
	if got := read(t, f, "dst/y"); got != "one" {
		t.Fatalf("copy reads %q", got)
	}
	if got := read(t, f, "src/x"); got != "one" {
		t.Fatalf("source changed to %q", got)
	}
	write(t, f, "src/z", "two")
	must(t, f.Cp("src/z", "dst/y"))
	if got := read(t, f, "dst/y"); got != "two" {
		t.Fatalf("replaced copy reads %q", got)
	}
	wantErr(t, "Cp of a directory", f.Cp("src", "other"), sharedfs.ErrIsDir)
	wantErr(t, "Cp onto a directory", f.Cp("src/x", "dst"), sharedfs.ErrIsDir)
	wantErr(t, "Cp of a missing file", f.Cp("nope", "x"), fs.ErrNotExist)
	wantErr(t, "Cp onto itself", f.Cp("src/x", "/src/./x"), sharedfs.ErrBadPath)
}

func testCpr(t *testing.T, f *sharedfs.FS) {
	write(t, f, "tree/a", "A")
	write(t, f, "tree/sub/b", "B")
	must(t, f.Mkdir("tree/empty"))
	must(t, f.Cpr("tree", "copy/of/tree"))
	if read(t, f, "copy/of/tree/a") != "A" || read(t, f, "copy/of/tree/sub/b") != "B" {
		t.Fatal("copied tree has wrong contents")
	}
	ok, err := f.IsDir("copy/of/tree/empty")
	wantBool(t, "IsDir(copied empty dir)", ok, err, true)
	if read(t, f, "tree/sub/b") != "B" {
		t.Fatal("source tree changed")
	}
	must(t, f.Cpr("tree/a", "single"))
	if read(t, f, "single") != "A" {
		t.Fatal("Cpr of a file did not copy it")
	}
	wantErr(t, "Cpr onto an existing path", f.Cpr("tree", "copy/of/tree"), fs.ErrExist)
	wantErr(t, "Cpr into itself", f.Cpr("tree", "tree/inner"), sharedfs.ErrBadPath)
	wantErr(t, "Cpr of a missing path", f.Cpr("nope", "x"), fs.ErrNotExist)
}

func testMvSameDir(t *testing.T, f *sharedfs.FS) {
	write(t, f, "d/old", "data")
	must(t, f.Mv("d/old", "d/new"))
	if read(t, f, "d/new") != "data" {
		t.Fatal("moved file has wrong contents")
	}
	ok, err := f.Exists("d/old")
	wantBool(t, "Exists(old)", ok, err, false)
	write(t, f, "d/other", "other")
	must(t, f.Mv("d/other", "d/new"))
	if read(t, f, "d/new") != "other" {
		t.Fatal("mv did not replace the destination file")
	}
	must(t, f.Mv("d/new", "d/new"))
	must(t, f.Mkdir("d/sub"))
	wantErr(t, "Mv onto a directory", f.Mv("d/new", "d/sub"), fs.ErrExist)
	wantErr(t, "Mv of a missing file", f.Mv("d/none", "d/x"), fs.ErrNotExist)
}

func testMvAcross(t *testing.T, f *sharedfs.FS) {
	write(t, f, "a/f", "F")
	must(t, f.Mv("a/f", "b/c/g"))
	if read(t, f, "b/c/g") != "F" {
		t.Fatal("file moved across directories has wrong contents")
	}
	ok, err := f.Exists("a/f")
	wantBool(t, "Exists(a/f) after mv", ok, err, false)

	write(t, f, "tree/x/y", "Y")
	must(t, f.Mv("tree", "moved/tree"))
	if read(t, f, "moved/tree/x/y") != "Y" {
		t.Fatal("moved directory lost its contents")
	}
	ok, err = f.Exists("tree")
	wantBool(t, "Exists(tree) after mv", ok, err, false)
	must(t, f.Mv("moved/tree", "renamed"))
	if read(t, f, "renamed/x/y") != "Y" {
		t.Fatal("directory renamed up a level lost its contents")
	}
	wantErr(t, "Mv of a directory into itself", f.Mv("renamed", "renamed/x/z"), sharedfs.ErrBadPath)
	wantErr(t, "Mv of the root", f.Mv("/", "x"), sharedfs.ErrBadPath)
	write(t, f, "plain", "p")
	wantErr(t, "Mv of a directory onto a file", f.Mv("renamed", "plain"), fs.ErrExist)
}

func testRm(t *testing.T, f *sharedfs.FS) {
	write(t, f, "d/f", "x")
	must(t, f.Rm("d/f"))
	ok, err := f.Exists("d/f")
	wantBool(t, "Exists after Rm", ok, err, false)
	wantErr(t, "Rm of a directory", f.Rm("d"), sharedfs.ErrIsDir)
	wantErr(t, "Rm of a missing file", f.Rm("d/f"), fs.ErrNotExist)
}

func testRmdir(t *testing.T, f *sharedfs.FS) {
	write(t, f, "t/a/b/c", "x")
	write(t, f, "t/d", "y")
	must(t, f.Rmdir("t"))
	ok, err := f.Exists("t")
	wantBool(t, "Exists after Rmdir", ok, err, false)
	must(t, f.Mkdir("empty"))
	must(t, f.Rmdir("empty"))
	wantErr(t, "Rmdir of a missing directory", f.Rmdir("t"), fs.ErrNotExist)
	write(t, f, "file", "x")
	wantErr(t, "Rmdir of a file", f.Rmdir("file"), sharedfs.ErrNotDir)
	wantErr(t, "Rmdir of the root", f.Rmdir("/"), sharedfs.ErrBadPath)
	wantErr(t, "Rmdir of the root as ..", f.Rmdir("a/.."), sharedfs.ErrBadPath)
}

func testExists(t *testing.T, f *sharedfs.FS) {
	write(t, f, "d/f", "x")
	for _, tc := range []struct {
		p                   string
		exists, file, isdir bool
	}{
		{"d/f", true, true, false},
		{"d", true, false, true},
		{"/", true, false, true},
		{"missing", false, false, false},
		{"d/missing/deeper", false, false, false},
		{"d/f/below-a-file", false, false, false},
	} {
		ok, err := f.Exists(tc.p)
		wantBool(t, "Exists("+tc.p+")", ok, err, tc.exists)
		ok, err = f.IsFile(tc.p)
		wantBool(t, "IsFile("+tc.p+")", ok, err, tc.file)
		ok, err = f.IsDir(tc.p)
		wantBool(t, "IsDir("+tc.p+")", ok, err, tc.isdir)
	}
}

func testNotExist(t *testing.T, f *sharedfs.FS) {
	_, err := f.Stat("no/such")
	wantErr(t, "Stat", err, fs.ErrNotExist)
	if !strings.Contains(err.Error(), "no/such") {
		t.Errorf("Stat error %q does not name the path", err)
	}
	_, err = f.ReadFile("nothing")
	wantErr(t, "ReadFile", err, fs.ErrNotExist)
	_, err = f.Ls("nothing")
	wantErr(t, "Ls", err, fs.ErrNotExist)
	_, err = f.Open("nothing", os.O_RDONLY, 0)
	wantErr(t, "Open", err, fs.ErrNotExist)
	_, err = f.Open("no/parent", os.O_WRONLY|os.O_CREATE, 0o644)
	wantErr(t, "Open for create without a parent", err, fs.ErrNotExist)
	wantErr(t, "Rm", f.Rm("nothing"), fs.ErrNotExist)
	wantErr(t, "Mv", f.Mv("nothing", "x"), fs.ErrNotExist)
}

func testEscapes(t *testing.T, f *sharedfs.FS) {
	for _, p := range []string{"", "..", "../x", "a/../../b", "/../etc/passwd", "a/b/../../..", "../wf/x", "a\x00b", "bad\xffutf8"} {
		_, err := f.Stat(p)
		wantErr(t, "Stat("+strings.ToValidUTF8(p, "?")+")", err, sharedfs.ErrBadPath)
		wantErr(t, "WriteFile("+strings.ToValidUTF8(p, "?")+")", f.WriteFile(p, []byte("x"), 0o644), sharedfs.ErrBadPath)
		_, err = f.Exists(p)
		wantErr(t, "Exists("+strings.ToValidUTF8(p, "?")+")", err, sharedfs.ErrBadPath)
		wantErr(t, "Mkdir", f.Mkdir(p), sharedfs.ErrBadPath)
		wantErr(t, "Cp", f.Cp("x", p), sharedfs.ErrBadPath)
		wantErr(t, "Mv", f.Mv(p, "x"), sharedfs.ErrBadPath)
		wantErr(t, "Rmdir", f.Rmdir(p), sharedfs.ErrBadPath)
		_, err = f.Open(p, os.O_RDONLY, 0)
		wantErr(t, "Open", err, sharedfs.ErrBadPath)
		if err != nil && !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("bad path error %v does not wrap fs.ErrInvalid", err)
		}
	}
	// ".." that stays inside the root is fine.
	write(t, f, "a/../b", "ok")
	if read(t, f, "b") != "ok" {
		t.Fatal("a/../b is not b")
	}
}

func testAbsolute(t *testing.T, f *sharedfs.FS) {
	write(t, f, "/etc/passwd", "not the host's")
	if read(t, f, "etc/passwd") != "not the host's" {
		t.Fatal("/etc/passwd is not etc/passwd of the workflow root")
	}
	if got := f.Root(); got != "/working/wf" {
		t.Fatalf("Root() = %q", got)
	}
}

func testOpenFlags(t *testing.T, f *sharedfs.FS) {
	file, err := f.Open("new", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	must(t, err)
	_, err = io.WriteString(file, "first")
	must(t, err)
	must(t, file.Close())
	_, err = f.Open("new", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	wantErr(t, "O_EXCL on an existing file", err, fs.ErrExist)

	file, err = f.Open("new", os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = file.Write([]byte("+more"))
	must(t, err)
	must(t, file.Close())
	if got := read(t, f, "new"); got != "first+more" {
		t.Fatalf("after append read %q", got)
	}

	file, err = f.Open("new", os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err)
	_, err = file.Write([]byte("T"))
	must(t, err)
	must(t, file.Close())
	if got := read(t, f, "new"); got != "T" {
		t.Fatalf("after truncate read %q", got)
	}

	file, err = f.Open("created-empty", os.O_WRONLY|os.O_CREATE, 0o644)
	must(t, err)
	must(t, file.Close())
	ok, err := f.IsFile("created-empty")
	wantBool(t, "IsFile(created-empty)", ok, err, true)

	_, err = f.Open("missing", os.O_WRONLY, 0)
	wantErr(t, "O_WRONLY without O_CREATE on a missing file", err, fs.ErrNotExist)
	must(t, f.Mkdir("dir"))
	if _, err = f.Open("dir", os.O_WRONLY|os.O_CREATE, 0o644); err == nil {
		t.Fatal("opening a directory for writing succeeded")
	}
}

func testOpenRead(t *testing.T, f *sharedfs.FS) {
	write(t, f, "d/f", "0123456789")
	write(t, f, "d/g", "")
	file, err := f.Open("d/f", os.O_RDONLY, 0)
	must(t, err)
	defer file.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(file, buf); err != nil || string(buf) != "0123" {
		t.Fatalf("first read %q, %v", buf, err)
	}
	if _, err := file.Seek(6, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(file)
	if err != nil || string(rest) != "6789" {
		t.Fatalf("read after seek %q, %v", rest, err)
	}
	if n, err := file.ReadAt(buf[:3], 2); err != nil || string(buf[:n]) != "234" {
		t.Fatalf("ReadAt %q, %v", buf[:n], err)
	}
	fi, err := file.Stat()
	if err != nil || fi.Size() != 10 || fi.IsDir() {
		t.Fatalf("file Stat %v, %v", fi, err)
	}

	dir, err := f.Open("d", os.O_RDONLY, 0)
	must(t, err)
	defer dir.Close()
	got, err := dir.Readdirnames(-1)
	must(t, err)
	if len(got) != 2 {
		t.Fatalf("Readdirnames = %v, want f and g", got)
	}
}

func testIsolation(t *testing.T, a, b *sharedfs.FS) {
	write(t, a, "secret", "a's")
	must(t, a.Mkdir("adir"))
	ok, err := b.Exists("secret")
	wantBool(t, "b.Exists(secret)", ok, err, false)
	es, err := b.Ls("/")
	if err != nil || len(es) != 0 {
		t.Fatalf("b.Ls(/) = %v, %v; want an empty root", names(es), err)
	}
	_, err = b.ReadFile("../a/secret")
	wantErr(t, "b reading ../a/secret", err, sharedfs.ErrBadPath)
	_, err = b.ReadFile("/../a/secret")
	wantErr(t, "b reading /../a/secret", err, sharedfs.ErrBadPath)
	write(t, b, "secret", "b's")
	if read(t, a, "secret") != "a's" || read(t, b, "secret") != "b's" {
		t.Fatal("workflows share a file")
	}
}
