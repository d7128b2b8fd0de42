package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Registry is the host name of the references jobx gives the images it
// builds. Nothing is ever pulled from it: those images exist only in the
// local image store and in containerd.
const Registry = "jobx.local"

// Ref returns the image reference of jobx's image for a processor
// ("python", "node", "sh", "exec"), e.g. "jobx.local/python:latest". The
// "exec" processor runs in the "generic" image.
func Ref(processor string) string {
	return Registry + "/" + imageName(processor) + ":latest"
}

func imageName(processor string) string {
	if processor == "exec" {
		return "generic"
	}
	return processor
}

// Buildable lists the processors whose images Build can make.
func Buildable() []string { return []string{"python", "node", "sh", "exec"} }

// recipe assembles a processor's root filesystem from the host's files.
func recipe(ctx context.Context, processor string) (*rootfs, error) {
	r := newRootfs()
	if err := shell(ctx, r); err != nil {
		return nil, err
	}
	switch processor {
	case "sh":
	case "python":
		if err := python(ctx, r); err != nil {
			return nil, err
		}
	case "exec":
		// The generic image: sh, python and perl, the interpreters a #!
		// handler most often names.
		if err := python(ctx, r); err != nil {
			return nil, err
		}
		if err := perl(ctx, r); err != nil {
			return nil, err
		}
	case "node":
		if err := node(ctx, r); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("no image recipe for processor %q (have %s)", processor, strings.Join(Buildable(), ", "))
	}
	return r, nil
}

// shell adds /bin/sh (dash, as on the host, so that handlers run as `sh -n`
// checked them) and busybox's applets (sed, tr, env, ...).
func shell(ctx context.Context, r *rootfs) error {
	dash, err := hostFile("/bin/dash", "/usr/bin/dash")
	if err != nil {
		return fmt.Errorf("dash: %w (apt-get install dash)", err)
	}
	if err := r.binary(ctx, "/bin/dash", dash); err != nil {
		return err
	}
	r.link("/bin/sh", "dash")
	bb, err := hostFile("/bin/busybox", "/usr/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	if libs, err := sharedLibs(ctx, bb); err != nil || len(libs) > 0 {
		return fmt.Errorf("busybox at %s is not static (apt-get install busybox-static)", bb)
	}
	if err := r.file("/bin/busybox", bb); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	for _, a := range applets {
		p := "/" + a
		if _, ok := r.entries[p]; ok || path.Base(p) == "sh" {
			continue
		}
		r.link(p, "/bin/busybox")
	}
	return nil
}

// python adds the host's python3 with its standard library (tests, IDLE,
// tkinter, ensurepip and site-packages left out).
func python(ctx context.Context, r *rootfs) error {
	exe, err := hostFile("/usr/bin/python3", "/usr/local/bin/python3")
	if err != nil {
		return fmt.Errorf("python3: %w (apt-get install python3)", err)
	}
	out, err := exec.CommandContext(ctx, exe, "-I", "-c",
		"import sys,sysconfig;print(sys.executable);print(sysconfig.get_paths()['stdlib']);print(sysconfig.get_config_var('DESTSHARED') or '')").Output()
	if err != nil {
		return fmt.Errorf("python3: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return fmt.Errorf("python3: unexpected output %q", out)
	}
	bin, err := filepath.EvalSymlinks(lines[0])
	if err != nil {
		return fmt.Errorf("python3: %w", err)
	}
	if err := r.binary(ctx, bin, bin); err != nil {
		return err
	}
	if path.Base(bin) != "python3" {
		r.link(path.Join(path.Dir(bin), "python3"), path.Base(bin))
	}
	if path.Dir(bin) != "/usr/bin" {
		r.link("/usr/bin/python3", bin)
	}
	skip := func(rel string, d fs.DirEntry) bool {
		top, _, _ := strings.Cut(rel, "/")
		switch top {
		case "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "dist-packages", "lib2to3", "pydoc_data":
			return true
		}
		if strings.HasPrefix(top, "config-") || (d.IsDir() && (d.Name() == "tests" || d.Name() == "test")) {
			return true
		}
		n := d.Name()
		return strings.Contains(n, ".opt-1.pyc") || strings.Contains(n, ".opt-2.pyc") || strings.HasSuffix(n, ".exe")
	}
	stdlib := lines[1]
	if err := r.tree(ctx, stdlib, stdlib, skip); err != nil {
		return fmt.Errorf("python3 standard library: %w", err)
	}
	if len(lines) > 2 && lines[2] != "" && !strings.HasPrefix(lines[2], stdlib+"/") {
		if err := r.tree(ctx, lines[2], lines[2], skip); err != nil {
			return fmt.Errorf("python3 extension modules: %w", err)
		}
	}
	return nil
}

// node adds the host's node binary and its libraries.
func node(ctx context.Context, r *rootfs) error {
	exe, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("node: %w (apt-get install nodejs)", err)
	}
	bin, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return err
	}
	if err := r.binary(ctx, bin, bin); err != nil {
		return err
	}
	if bin != "/usr/bin/node" {
		r.link("/usr/bin/node", bin)
	}
	return nil
}

// perl adds the host's perl with its core library (perl-base and perl's
// modules), when perl is installed.
func perl(ctx context.Context, r *rootfs) error {
	exe, err := hostFile("/usr/bin/perl")
	if err != nil {
		return fmt.Errorf("perl: %w (apt-get install perl)", err)
	}
	if err := r.binary(ctx, "/usr/bin/perl", exe); err != nil {
		return err
	}
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu/perl-base", "/usr/lib/x86_64-linux-gnu/perl", "/usr/share/perl", "/usr/share/perl5", "/etc/perl"} {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		if err := r.tree(ctx, dir, dir, nil); err != nil {
			return fmt.Errorf("perl library %s: %w", dir, err)
		}
	}
	return nil
}

// hostFile returns the first candidate that exists, with symbolic links
// resolved.
func hostFile(candidates ...string) (string, error) {
	for _, c := range candidates {
		if p, err := filepath.EvalSymlinks(c); err == nil {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p, nil
			}
		}
	}
	return "", errors.New("none of " + strings.Join(candidates, ", ") + " exists")
}
