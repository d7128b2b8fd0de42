package images

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the modification time of every file jobx writes into an image,
// so that the same inputs give the same bytes.
var epoch = time.Unix(0, 0).UTC()

// layer is a written image layer.
type layer struct {
	file   string        // the gzip'd tar, a temporary file
	digest digest.Digest // of the compressed bytes
	diffID digest.Digest // of the uncompressed tar
	size   int64
}

type countingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// writeLayer writes r's entries as a deterministic gzip'd tar: sorted
// paths, epoch times, owner 0:0, no user or group names, a fixed gzip
// header and compression level.
func writeLayer(r *rootfs, tmpDir string) (*layer, error) {
	f, err := os.CreateTemp(tmpDir, "layer-*.tar.gz")
	if err != nil {
		return nil, err
	}
	l := &layer{file: f.Name()}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			os.Remove(l.file)
		}
	}()
	compressed := &countingWriter{w: f, h: sha256.New()}
	gz, err := gzip.NewWriterLevel(compressed, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	gz.Header.ModTime = epoch
	gz.Header.OS = 3 // Unix
	raw := &countingWriter{w: gz, h: sha256.New()}
	tw := tar.NewWriter(raw)
	buf := make([]byte, 1<<20)
	for _, e := range r.sorted() {
		name := strings.TrimPrefix(e.Path, "/")
		hdr := &tar.Header{Name: name, ModTime: epoch, Mode: int64(e.Mode), Format: tar.FormatPAX}
		switch {
		case e.Dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case e.Link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.Link, 0o777
		default:
			hdr.Typeflag = tar.TypeReg
		}
		var src io.Reader
		if hdr.Typeflag == tar.TypeReg {
			if e.Source != "" {
				sf, err := os.Open(e.Source)
				if err != nil {
					return nil, err
				}
				defer sf.Close()
				st, err := sf.Stat()
				if err != nil {
					return nil, err
				}
				hdr.Size, src = st.Size(), sf
			} else {
				hdr.Size, src = int64(len(e.Data)), strings.NewReader(string(e.Data))
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Path, err)
		}
		if src != nil {
			n, err := io.CopyBuffer(tw, src, buf)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Path, err)
			}
			if n != hdr.Size {
				return nil, fmt.Errorf("%s: changed while read", e.Path)
			}
			if c, ok := src.(io.Closer); ok {
				c.Close()
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	l.digest = digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(compressed.h.Sum(nil)))
	l.diffID = digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(raw.h.Sum(nil)))
	l.size = compressed.n
	ok = true
	return l, nil
}

// imageConfig is the OCI configuration of a jobx image: a non-root user
// and a minimal environment; no creation time, so it is reproducible.
func imageConfig(l *layer) ([]byte, error) {
	cfg := ocispec.Image{
		Platform: ocispec.Platform{Architecture: goarch(), OS: "linux"},
		Config: ocispec.ImageConfig{
			User:       "65534:65534",
			Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8"},
			WorkingDir: "/",
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.diffID}},
	}
	return json.Marshal(cfg)
}

// writeArchive writes an OCI image-layout tar holding one image named ref
// (index annotations io.containerd.image.name and
// org.opencontainers.image.ref.name) and returns its manifest descriptor.
func writeArchive(w io.Writer, ref string, l *layer) (ocispec.Descriptor, error) {
	cfg, err := imageConfig(l)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specsVersioned(),
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: l.digest, Size: l.size}},
	})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest)),
		Platform: &ocispec.Platform{Architecture: goarch(), OS: "linux"},
	}
	named := mDesc
	_, tag, _ := strings.Cut(ref[strings.LastIndex(ref, "/")+1:], ":")
	named.Annotations = map[string]string{"io.containerd.image.name": ref, ocispec.AnnotationRefName: tag}
	index, err := json.Marshal(ocispec.Index{Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{named}})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	tw := tar.NewWriter(w)
	add := func(name string, data []byte, file string, size int64) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, ModTime: epoch, Typeflag: tar.TypeReg, Size: size, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if file != "" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir, Format: tar.FormatPAX})
	}
	blob := func(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }
	layout := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	steps := []func() error{
		func() error { return dir("blobs/") },
		func() error { return dir("blobs/sha256/") },
	}
	blobs := []struct {
		d    digest.Digest
		data []byte
		file string
		size int64
	}{
		{cfgDesc.Digest, cfg, "", int64(len(cfg))},
		{l.digest, nil, l.file, l.size},
		{mDesc.Digest, manifest, "", int64(len(manifest))},
	}
	// Blobs in digest order, then the index and layout files.
	for i := range blobs {
		for j := i + 1; j < len(blobs); j++ {
			if blobs[j].d < blobs[i].d {
				blobs[i], blobs[j] = blobs[j], blobs[i]
			}
		}
	}
	for _, b := range blobs {
		steps = append(steps, func() error { return add(blob(b.d), b.data, b.file, b.size) })
	}
	steps = append(steps,
		func() error { return add("index.json", index, "", int64(len(index))) },
		func() error { return add("oci-layout", layout, "", int64(len(layout))) },
	)
	for _, s := range steps {
		if err := s(); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return mDesc, tw.Close()
}
