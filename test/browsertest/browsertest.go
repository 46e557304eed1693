// Package browsertest starts headless Chromium (Debian's chromium,
// driven with chromedp) for the tests that read interlock's pages as a
// person would, and keeps their screenshots where a person looks at
// them.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/interlock/interlock/test/testenv"
)

// ArtifactsDir is where a test leaves files for a person to look at:
// $INTERLOCK_ARTIFACTS/TestName when set (make test sets it and CI keeps
// it), else the test's own temporary directory.
func ArtifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("INTERLOCK_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	return dir
}

// Chrome starts a headless Chromium with a profile of its own (its
// cookies are its own person's) and a width x height viewport. The
// returned context carries timeout for the page's steps. Certificate
// errors are ignored: the pages are served with certificates of
// interlock's own CA, which a person would have accepted.
func Chrome(t *testing.T, width, height int64, timeout time.Duration) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	testenv.Require(t, "chromium (make test installs it)", err)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(int(width), int(height)), chromedp.IgnoreCertErrors,
		chromedp.Flag("hide-scrollbars", false))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first action starts the browser and must not carry the
	// timeout (it would stop the browser when it ends); the page's
	// steps do.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancelTimeout)
	return ctx
}

// Screenshot saves the viewport, or the whole page when full, as
// ArtifactsDir(t)/name.png and logs where.
func Screenshot(t *testing.T, ctx context.Context, name string, full bool) {
	t.Helper()
	a := chromedp.CaptureScreenshot()
	if full {
		a = chromedp.FullScreenshot(100)
	}
	png, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("chromium: screenshot %s: %v", name, err)
	}
	p := filepath.Join(ArtifactsDir(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}
