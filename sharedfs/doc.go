// Package sharedfs gives each jobx workflow its own shared filesystem, the
// successor of JobX's FS (JOBX_SEMANTICS.md 4.7) without its defects: every
// workflow gets its own root, "/working/<workflow>", instead of a
// process-wide wrapper stuck on the first workflow's prefix.
//
// A backend is an afero.Fs holding the "/working" tree:
//
//   - Local (NewLocal): a host directory; workflow roots are
//     <dir>/working/<workflow>, confined with os.Root so that neither ".."
//     nor a symbolic link leads out (HostDir gives the directory to
//     bind-mount into sandboxes);
//   - Tahoe (NewTahoe): a Tahoe-LAFS directory reached through a gateway's
//     web API; tahoetest provides a faithful in-memory double;
//   - any other afero.Fs, such as afero.MemMapFs in tests.
//
// Usage:
//
//	cfg, err := sharedfs.ParseConfig(data) // {"backend": "local", "dir": "/var/lib/jobx/fs"}
//	fsys, err := sharedfs.Open(cfg, "wordcount")
//	defer fsys.Close()
//	err = fsys.WriteFile("tmp/part-0", data, 0o644)
//	entries, err := fsys.Ls("tmp")
//
// The contract subpackage holds the test suite every backend passes.
package sharedfs
