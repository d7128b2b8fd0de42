package images_test

import (
	"context"
	"testing"

	client "github.com/containerd/containerd/v2/client"
	"github.com/jobx/jobx/images"
	"github.com/jobx/jobx/internal/testenv/testbox"
)

func TestBuildIsReproducibleAndCached(t *testing.T) {
	ctx := context.Background()
	var digests []string
	for i := 0; i < 2; i++ {
		st, err := images.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		recs, err := st.Build(ctx, "sh")
		if err != nil {
			t.Fatal(err)
		}
		again, err := st.Build(ctx, "sh")
		if err != nil {
			t.Fatal(err)
		}
		if again[0].Created != recs[0].Created {
			t.Fatal("an unchanged build was redone")
		}
		if err := st.Verify(recs[0]); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, recs[0].Digest)
	}
	if digests[0] != digests[1] {
		t.Fatalf("same inputs, different digests: %v", digests)
	}
}

func TestImportRecordsTheArchiveNamesAndLoadUnpacks(t *testing.T) {
	ctx := context.Background()
	built, err := images.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := built.Build(ctx, "sh")
	if err != nil {
		t.Fatal(err)
	}
	st, err := images.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	imported, err := st.Import(ctx, built.ArchivePath(recs[0]), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(imported) != 1 || imported[0].Ref != images.Ref("sh") || imported[0].Digest != recs[0].Digest {
		t.Fatalf("imported %+v, built %+v", imported, recs[0])
	}
	named, err := st.Import(ctx, built.ArchivePath(recs[0]), "example.com/tools/sh:1")
	if err != nil || named[0].Ref != "example.com/tools/sh:1" {
		t.Fatalf("named import: %+v %v", named, err)
	}
	list, _ := st.List()
	if len(list) != 2 {
		t.Fatalf("list: %+v", list)
	}

	testbox.RequireContainerd(t)
	addr := testbox.Containerd(t)
	cli, err := client.New(addr, client.WithDefaultNamespace("jobx-images-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, ref := range []string{images.Ref("sh"), "example.com/tools/sh:1"} {
		img, err := st.Load(ctx, cli, ref)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := img.IsUnpacked(ctx, images.Snapshotter); !ok {
			t.Fatalf("%s not unpacked", ref)
		}
		if img.Target().Digest.String() != recs[0].Digest && ref == images.Ref("sh") {
			t.Fatalf("%s: digest %s, want %s", ref, img.Target().Digest, recs[0].Digest)
		}
	}
	if _, err := st.Load(ctx, cli, "jobx.local/missing:latest"); err == nil {
		t.Fatal("loading an unknown image from an unreachable registry succeeded")
	}
}
