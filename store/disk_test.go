package store

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/faultfs"
)

// newDisk returns a fault-injecting disk of capacity bytes and its
// Options.OpenFile.
func newDisk(capacity int64) *testDisk {
	return &testDisk{faultfs.NewDisk(capacity)}
}

type testDisk struct{ *faultfs.Disk }

func (d *testDisk) open(path string) (File, error) {
	f, err := d.Open(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// impression returns a batch of one impression record of user u.
func impression(u string) *Batch {
	var b Batch
	b.AddImpression(3, t0, unixMinute(t0.UnixNano()), 0, 0, []byte(u), nil)
	return &b
}

// TestFullDiskRefusesBeforeAccepting: on a file system that reserves,
// appends are refused with ErrNoSpace once the reserved space runs out;
// every record accepted before is written and fsync'd, within the fsync
// interval, though the disk is full; nothing refused is ever written.
func TestFullDiskRefusesBeforeAccepting(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(minReserve + 20<<10)
	l, err := OpenLog(d, 1, Options{FsyncInterval: 20 * time.Millisecond, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Reserving() {
		t.Fatal("the log does not reserve on a file system that can")
	}
	accepted := 0
	var refused error
	for i := 0; refused == nil; i++ {
		if i > 1<<20 {
			t.Fatal("appends never refused on a full disk")
		}
		refused = l.Append(impression("u"))
		if refused == nil {
			accepted++
		}
	}
	if !errors.Is(refused, ErrNoSpace) || !errors.Is(refused, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk = %v, want ErrNoSpace for ENOSPC", refused)
	}
	if l.Err() != nil {
		t.Fatalf("Err() = %v: a write failed, though every accepted record had space", l.Err())
	}
	// The loss window holds though the disk is full: everything accepted
	// is fsync'd by the writer's own ticker, not only at Close.
	want := int64(walHeader + accepted*len(impression("u").buf))
	deadline := time.After(10 * time.Second)
	for fs.Durable() < want {
		select {
		case <-fs.Synced:
		case <-deadline:
			t.Fatalf("%d of %d accepted bytes fsync'd on a full disk", fs.Durable(), want)
		}
	}
	// Still refused, and refused again after a retry of the reservation.
	if err := l.Append(impression("v")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("second Append on a full disk = %v, want ErrNoSpace", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, st, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != accepted || st.Torn != nil {
		t.Fatalf("replayed %d records (torn %v), want the %d accepted", len(got), st.Torn, accepted)
	}
	for _, r := range got {
		if string(r.User) != "u" {
			t.Fatalf("replayed a refused record %q", r.User)
		}
	}
	t.Logf("%d records accepted in %d bytes of disk", accepted, fs.Capacity)
}

// TestFullDiskRecovers: once the disk has room again, the writer reserves
// again and appends are accepted.
func TestFullDiskRecovers(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(minReserve + 1<<10)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for l.Append(impression("u")) == nil {
		n++
	}
	fs.Set(func(d *faultfs.Disk) { d.Capacity += 4 * minReserve })
	deadline := time.Now().Add(10 * time.Second)
	for l.Append(impression("w")) != nil {
		if time.Now().After(deadline) {
			t.Fatal("appends still refused 10s after the disk has room")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n+1 || string(got[n].User) != "w" {
		t.Fatalf("replayed %d records, want %d then w", len(got), n+1)
	}
}

// TestRotateNeedsReservedSpace: a rotation that cannot reserve room in the
// new segment for every record promised fails, and the log goes on in the
// old segment, losing nothing.
func TestRotateNeedsReservedSpace(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(minReserve + 8<<10)
	l, err := OpenLog(d, 1, Options{FsyncInterval: time.Hour, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(impression("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Rotate(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Rotate on a full disk = %v, want ENOSPC", err)
	}
	if err := l.Append(impression("b")); err != nil {
		t.Fatal(err)
	}
	fs.Set(func(d *faultfs.Disk) { d.Capacity += 2 * minReserve })
	seg, err := l.Rotate()
	if err != nil || seg != 2 {
		t.Fatalf("Rotate with room = %d, %v; want segment 2", seg, err)
	}
	if err := l.Append(impression("c")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[0].User)+string(got[1].User)+string(got[2].User) != "abc" {
		t.Fatalf("replayed %d records, want a, b, c", len(got))
	}
	// The rotation gave back segment 1's unused reservation.
	if b, size := fs.Files[0].Blocks(), fs.Files[0].Size(); b != size {
		t.Fatalf("segment 1 holds %d bytes of blocks for %d bytes", b, size)
	}
}

// TestFailedCampaignIsRetracted: a campaign whose write fails (before,
// midway or after its bytes), or whose fsync fails, is answered with the
// error and never reaches the log, while an impression that fails the same
// way is kept and written once the disk works; the segment is cut back, so
// no damage is left behind.
func TestFailedCampaignIsRetracted(t *testing.T) {
	faults := map[string]func(d *faultfs.Disk){
		"write fails":        func(d *faultfs.Disk) { d.WriteErr = 1 },
		"write fails midway": func(d *faultfs.Disk) { d.WriteErr, d.Partial = 1, 5 },
		"write fails after":  func(d *faultfs.Disk) { d.WriteErr, d.Partial = 1, 1<<20 },
		"fsync fails":        func(d *faultfs.Disk) { d.SyncErr = 1 },
	}
	for name, fault := range faults {
		t.Run(name, func(t *testing.T) {
			d := openTestDir(t)
			fs := newDisk(1 << 30)
			l, err := OpenLog(d, 1, Options{FsyncInterval: 0, Reserve: minReserve, OpenFile: fs.open})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Append(impression("before")); err != nil {
				t.Fatal(err)
			}
			fs.Set(fault)
			var ghost Batch
			ghost.AddCampaign(9, "ghost", "Ghost", t0)
			if err := l.Append(&ghost); !errors.Is(err, syscall.EIO) {
				t.Fatalf("campaign Append on a failing disk = %v, want EIO", err)
			}
			fs.Set(fault)
			if err := l.Append(impression("during")); !errors.Is(err, syscall.EIO) {
				t.Fatalf("impression Append on a failing disk = %v, want EIO", err)
			}
			if err := l.Append(impression("after")); err != nil {
				t.Fatalf("Append once the disk works: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got, st, err := collect(t, d)
			if err != nil || st.Torn != nil {
				t.Fatalf("replay: %v (torn %v), want a clean log", err, st.Torn)
			}
			var users string
			for _, r := range got {
				if r.Kind == KindCampaign {
					t.Fatalf("the retracted campaign %q is in the log", r.ID)
				}
				users += string(r.User) + " "
			}
			if users != "before during after " {
				t.Fatalf("replayed %q, want before, during, after", users)
			}
		})
	}
}

// TestRetractionWaitsForTheCut: while the segment cannot be cut back, a
// failed campaign's Append does not return (an error now could be undone
// by a write already on disk); once the disk works it is written and
// Append succeeds.
func TestRetractionWaitsForTheCut(t *testing.T) {
	d := openTestDir(t)
	fs := newDisk(1 << 30)
	l, err := OpenLog(d, 1, Options{FsyncInterval: 0, Reserve: minReserve, OpenFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	fs.Set(func(d *faultfs.Disk) { d.WriteErr, d.SyncErr, d.FailCut, d.Partial = 1<<30, 1<<30, true, 1<<20 })
	var c Batch
	c.AddCampaign(9, "kept", "Kept", t0)
	done := make(chan error, 1)
	go func() { done <- l.Append(&c) }()
	<-fs.IOErrs // the campaign's write failed
	if err := l.Append(impression("x")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("impression Append on a failing disk = %v, want EIO", err)
	}
	select {
	case err := <-done:
		t.Fatalf("campaign Append returned %v before its retraction was durable", err)
	default:
	}
	fs.Set(func(d *faultfs.Disk) { d.WriteErr, d.SyncErr, d.FailCut = 0, 0, false })
	if err := <-done; err != nil {
		t.Fatalf("campaign Append once the disk works = %v, want nil (written)", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Kind != KindCampaign || string(got[1].User) != "x" {
		t.Fatalf("replayed %+v, want the campaign then x", got)
	}
}
