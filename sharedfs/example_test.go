package sharedfs_test

import (
	"fmt"

	"github.com/jobx/jobx/sharedfs"
	"github.com/spf13/afero"
)

func Example() {
	backend := afero.NewMemMapFs() // or sharedfs.NewLocal(dir), sharedfs.NewTahoe(...)
	fsys, err := sharedfs.New(backend, "wordcount")
	if err != nil {
		panic(err)
	}
	defer fsys.Close()

	_ = fsys.WriteFile("tmp/part-0", []byte("to be or not to be"), 0o644)
	_ = fsys.Cp("tmp/part-0", "out/result")
	entries, _ := fsys.Ls("out")
	for _, e := range entries {
		fmt.Println(e.Name, e.Size)
	}
	_, err = fsys.ReadFile("../other-workflow/secret")
	fmt.Println(err)
	// Output:
	// result 18
	// read ../other-workflow/secret: path escapes the workflow root: bad path: invalid argument
}
