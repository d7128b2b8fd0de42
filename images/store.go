// Package images builds, imports and lists the images that jobx's
// containerd sandbox runs handlers in.
//
// Without a container registry, jobx builds its images itself from the
// host's files: each processor's interpreter, its shared libraries and
// standard library, dash as /bin/sh and busybox's applets, written as a
// deterministic OCI image-layout archive (sorted entries, epoch times, owner
// 0:0, a fixed gzip header), so the same inputs give the same digest. A
// Store keeps the archives and an index of image references; a runner
// imports an image into its own containerd namespace on first use (Load),
// and pulls references the store does not hold.
//
//	st, err := images.Open(dir)
//	recs, err := st.Build(ctx, "python", "sh")  // cached by a hash of the inputs
//	img, err := st.Load(ctx, cli, images.Ref("python"))
package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	client "github.com/containerd/containerd/v2/client"
	cimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrNotFound is returned (wrapped) for an image reference the store does
// not hold.
var ErrNotFound = errors.New("image not found")

// Snapshotter is the snapshotter images are unpacked for.
const Snapshotter = "overlayfs"

// recipeVersion changes whenever the recipes or the archive format change,
// so that cached builds are redone.
const recipeVersion = "jobx-images-1"

// Record is one image the store holds.
type Record struct {
	Ref     string    `json:"ref"`
	Digest  string    `json:"digest,omitempty"` // manifest digest; empty until known
	Archive string    `json:"archive"`          // file name under the store's archives/
	Source  string    `json:"source"`           // "build:<processor>" or "import:<file name>"
	Inputs  string    `json:"inputs,omitempty"` // hash of a build's inputs
	Size    int64     `json:"size"`             // archive bytes
	Created time.Time `json:"created"`
}

// Store keeps image archives and their index in a directory. Its methods
// are safe for concurrent use within a process; processes sharing a
// directory see each other's completed writes (files are replaced
// atomically).
type Store struct {
	dir string
	mu  sync.Mutex // serialises index updates
}

// Open returns the store in dir, creating it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "archives"), 0o755); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }

func (s *Store) read() (map[string]Record, error) {
	m := map[string]Record{}
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("image store %s: %w", s.indexPath(), err)
	}
	return m, nil
}

func (s *Store) update(fn func(m map[string]Record)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.read()
	if err != nil {
		return err
	}
	fn(m)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.indexPath() + fmt.Sprintf(".%d.tmp", os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	return os.Rename(tmp, s.indexPath())
}

// List returns the store's records sorted by reference.
func (s *Store) List() ([]Record, error) {
	m, err := s.read()
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// Get returns the record of ref, or an error wrapping ErrNotFound.
func (s *Store) Get(ref string) (Record, error) {
	m, err := s.read()
	if err != nil {
		return Record{}, err
	}
	r, ok := m[ref]
	if !ok {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return r, nil
}

// ArchivePath returns the path of a record's archive.
func (s *Store) ArchivePath(r Record) string { return filepath.Join(s.dir, "archives", r.Archive) }

// Build builds the images of the named processors (all of Buildable when
// none is named) from the host's files. A build whose inputs (the recipe
// version and every input file's path, size, mode and modification time)
// are unchanged is not redone. Building is reproducible: the same inputs
// give the same image digest.
func (s *Store) Build(ctx context.Context, processors ...string) ([]Record, error) {
	if len(processors) == 0 {
		processors = Buildable()
	}
	var out []Record
	for _, p := range processors {
		r, err := s.build(ctx, p)
		if err != nil {
			return out, fmt.Errorf("build image for %s: %w", p, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (s *Store) build(ctx context.Context, processor string) (Record, error) {
	fsys, err := recipe(ctx, processor)
	if err != nil {
		return Record{}, err
	}
	ref := Ref(processor)
	inputs, err := inputsHash(fsys)
	if err != nil {
		return Record{}, err
	}
	if old, err := s.Get(ref); err == nil && old.Inputs == inputs {
		if _, err := os.Stat(s.ArchivePath(old)); err == nil {
			return old, nil
		}
	}
	l, err := writeLayer(fsys, s.dir)
	if err != nil {
		return Record{}, err
	}
	defer os.Remove(l.file)
	f, err := os.CreateTemp(filepath.Join(s.dir, "archives"), ".build-*")
	if err != nil {
		return Record{}, err
	}
	defer os.Remove(f.Name())
	desc, err := writeArchive(f, ref, l)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Record{}, err
	}
	st, err := os.Stat(f.Name())
	if err != nil {
		return Record{}, err
	}
	rec := Record{Ref: ref, Digest: desc.Digest.String(), Archive: imageName(processor) + "-" + desc.Digest.Encoded()[:16] + ".tar",
		Source: "build:" + processor, Inputs: inputs, Size: st.Size(), Created: time.Now().UTC()}
	if err := os.Rename(f.Name(), s.ArchivePath(rec)); err != nil {
		return Record{}, err
	}
	return rec, s.update(func(m map[string]Record) { m[ref] = rec })
}

// inputsHash hashes what a build reads: the recipe version and, per entry,
// its path, kind, mode and content identity (host file size and mtime,
// link target or literal data).
func inputsHash(r *rootfs) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", recipeVersion, goarch())
	for _, e := range r.sorted() {
		switch {
		case e.Dir:
			fmt.Fprintf(h, "d %s %o\n", e.Path, e.Mode)
		case e.Link != "":
			fmt.Fprintf(h, "l %s %s\n", e.Path, e.Link)
		case e.Source != "":
			st, err := os.Stat(e.Source)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "f %s %s %o %d %d\n", e.Path, e.Source, e.Mode, st.Size(), st.ModTime().UnixNano())
		default:
			fmt.Fprintf(h, "g %s %o %x\n", e.Path, e.Mode, sha256.Sum256(e.Data))
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Import copies an image archive built elsewhere (an OCI image layout or
// `docker save` output) into the store and records the references it
// names. An archive naming no reference is recorded as name, which must
// then be given.
func (s *Store) Import(ctx context.Context, archive, name string) ([]Record, error) {
	in, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", archive, err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "archives"), ".import-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(tmp, h), in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", archive, err)
	}
	refs, err := archiveRefs(tmp.Name())
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", archive, err)
	}
	if len(refs) == 0 {
		if name == "" {
			return nil, fmt.Errorf("import %s: the archive names no image; give a name", archive)
		}
		refs = map[string]string{name: ""}
	} else if name != "" {
		var d string
		for _, v := range refs {
			d = v
		}
		refs = map[string]string{name: d}
	}
	file := "import-" + hex.EncodeToString(h.Sum(nil))[:16] + ".tar"
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, "archives", file)); err != nil {
		return nil, err
	}
	var out []Record
	for ref, d := range refs {
		out = append(out, Record{Ref: ref, Digest: d, Archive: file, Source: "import:" + filepath.Base(archive), Size: size, Created: time.Now().UTC()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, s.update(func(m map[string]Record) {
		for _, r := range out {
			m[r.Ref] = r
		}
	})
}

// archiveRefs reads the image references an archive names, with their
// manifest digests when known: an OCI index.json's annotations, or a
// docker archive's manifest.json RepoTags.
func archiveRefs(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	refs := map[string]string{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return refs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not an image archive: %w", err)
		}
		switch strings.TrimPrefix(hdr.Name, "./") {
		case "index.json":
			var idx ocispec.Index
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				return nil, fmt.Errorf("index.json: %w", err)
			}
			for _, m := range idx.Manifests {
				if n := m.Annotations["io.containerd.image.name"]; n != "" {
					refs[n] = m.Digest.String()
				}
			}
		case "manifest.json":
			var ms []struct{ RepoTags []string }
			if err := json.NewDecoder(tr).Decode(&ms); err != nil {
				return nil, fmt.Errorf("manifest.json: %w", err)
			}
			for _, m := range ms {
				for _, t := range m.RepoTags {
					if _, ok := refs[normalize(t)]; !ok {
						refs[normalize(t)] = ""
					}
				}
			}
		}
	}
}

// normalize turns a docker short name ("python:3.11") into containerd's
// full form ("docker.io/library/python:3.11").
func normalize(ref string) string {
	name := ref
	if i := strings.IndexByte(name, '/'); i < 0 {
		return "docker.io/library/" + ref
	} else if first := name[:i]; !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io/" + ref
	}
	return ref
}

// Load makes ref available, unpacked, in the client's namespace (the one
// in ctx or the client's default): an image already there whose digest
// matches the store's record is used as is; otherwise the store's archive
// is imported, or, for a reference the store does not hold, the image is
// pulled from its registry.
func (s *Store) Load(ctx context.Context, cli *client.Client, ref string) (client.Image, error) {
	rec, recErr := s.Get(ref)
	img, err := cli.GetImage(ctx, ref)
	switch {
	case err == nil && (recErr != nil || rec.Digest == "" || img.Target().Digest.String() == rec.Digest):
	case err != nil && !errdefs.IsNotFound(err):
		return nil, fmt.Errorf("image %s: %w", ref, err)
	case recErr == nil:
		if img, err = s.importRecord(ctx, cli, rec); err != nil {
			return nil, err
		}
	case errors.Is(recErr, ErrNotFound) && strings.HasPrefix(ref, Registry+"/"):
		// jobx's own images are built here, never pulled.
		return nil, fmt.Errorf("image %s is not built: run jobx images build %s", ref, strings.TrimSuffix(strings.TrimPrefix(ref, Registry+"/"), ":latest"))
	case errors.Is(recErr, ErrNotFound):
		if img, err = cli.Pull(ctx, ref, client.WithPullUnpack, client.WithPullSnapshotter(Snapshotter)); err != nil {
			return nil, fmt.Errorf("image %s is not in the image store (jobx images build|import) and cannot be pulled: %w", ref, err)
		}
		return img, nil
	default:
		return nil, recErr
	}
	ok, err := img.IsUnpacked(ctx, Snapshotter)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	if !ok {
		if err := img.Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("unpack image %s: %w", ref, err)
		}
	}
	return img, nil
}

func (s *Store) importRecord(ctx context.Context, cli *client.Client, rec Record) (client.Image, error) {
	f, err := os.Open(s.ArchivePath(rec))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", rec.Ref, err)
	}
	defer f.Close()
	imgs, err := cli.Import(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("import image %s: %w", rec.Ref, err)
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("import image %s: the archive names no image", rec.Ref)
	}
	chosen := imgs[0]
	for _, im := range imgs {
		if im.Name == rec.Ref || (rec.Digest != "" && im.Target.Digest.String() == rec.Digest) {
			chosen = im
			break
		}
	}
	if chosen.Name != rec.Ref {
		// A name given at import time: point it at the archive's image.
		named := cimages.Image{Name: rec.Ref, Target: chosen.Target}
		is := cli.ImageService()
		if _, err := is.Update(ctx, named, "target"); err != nil {
			if !errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("import image %s: %w", rec.Ref, err)
			}
			if _, err := is.Create(ctx, named); err != nil {
				return nil, fmt.Errorf("import image %s: %w", rec.Ref, err)
			}
		}
		chosen = named
	}
	return client.NewImage(cli, chosen), nil
}

// Verify checks that a record's archive still has the digest recorded.
func (s *Store) Verify(rec Record) error {
	refs, err := archiveRefs(s.ArchivePath(rec))
	if err != nil {
		return err
	}
	if d, ok := refs[rec.Ref]; ok && d != "" && rec.Digest != "" && d != rec.Digest {
		return fmt.Errorf("image %s: archive holds %s, index says %s", rec.Ref, d, rec.Digest)
	}
	return nil
}

func goarch() string { return runtime.GOARCH }

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }
