// Command workspace_server serves the Databricks CLI's own fake workspace (libs/testserver, the server its
// acceptance tests run against) on a loopback port, so the bundle tests judge the bundle with the real CLI
// against an API imitated by the people who own it. Every request is appended as one JSON line to -log;
// a call no handler answers is logged as an "error" line (and answered 501), so tests can fail on it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/databricks/cli/libs/testserver"
)

// recorder appends JSON lines to the request log; the fake workspace's handlers run concurrently.
type recorder struct {
	mu   sync.Mutex
	file *os.File
}

func (r *recorder) write(entry map[string]any) {
	line, err := json.Marshal(entry)
	if err != nil {
		line = []byte(fmt.Sprintf(`{"error": %q}`, err.Error()))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.file.Write(append(line, '\n'))
}

// process implements the small testing interface testserver.New takes (testutil.TestingT) for a
// long-running process: log lines go to the request log, failures are recorded instead of ending a test.
type process struct {
	log      *recorder
	tempDir  string
	cleanups []func()
}

func (p *process) Log(args ...any)                 { p.log.write(map[string]any{"log": fmt.Sprint(args...)}) }
func (p *process) Logf(format string, args ...any) { p.Log(fmt.Sprintf(format, args...)) }
func (p *process) Error(args ...any)               { p.log.write(map[string]any{"error": fmt.Sprint(args...)}) }
func (p *process) Errorf(format string, args ...any) {
	p.Error(fmt.Sprintf(format, args...))
}
func (p *process) Fatal(args ...any)                 { p.Error(args...); p.FailNow() }
func (p *process) Fatalf(format string, args ...any) { p.Errorf(format, args...); p.FailNow() }
func (p *process) Skip(args ...any)                  { p.Log(args...) }
func (p *process) Skipf(format string, args ...any)  { p.Logf(format, args...) }
func (p *process) FailNow()                          { p.close(); os.Exit(1) }
func (p *process) Cleanup(f func())                  { p.cleanups = append(p.cleanups, f) }
func (p *process) Context() context.Context          { return context.Background() }
func (p *process) Setenv(key, value string)          { _ = os.Setenv(key, value) }
func (p *process) TempDir() string                   { return p.tempDir }
func (p *process) Helper()                           {}

func (p *process) close() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}

func main() {
	logPath := flag.String("log", "requests.jsonl", "file receiving one JSON line per request")
	flag.Parse()

	file, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tempDir, err := os.MkdirTemp("", "workspace-server-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p := &process{log: &recorder{file: file}, tempDir: tempDir}
	p.Cleanup(func() { _ = os.RemoveAll(tempDir) })

	// httptest binds 127.0.0.1 on a free port: the server is never reachable from outside this machine.
	server := testserver.New(p)
	testserver.AddDefaultHandlers(server)
	server.RequestCallback = func(request *testserver.Request) {
		entry := map[string]any{
			"method": request.Method,
			"path":   request.URL.Path,
			"query":  request.URL.Query(),
		}
		var body any
		decoder := json.NewDecoder(bytes.NewReader(request.Body))
		decoder.UseNumber() // job ids exceed a float64's 53 bits: keep every digit
		if decoder.Decode(&body) == nil {
			entry["body"] = body
		} else if len(request.Body) > 0 {
			entry["body_bytes"] = len(request.Body) // an uploaded file: its size is enough
		}
		p.log.write(entry)
	}

	// The one line on stdout: the URL the tests point DATABRICKS_HOST at.
	fmt.Println(server.URL)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	p.close()
	_ = file.Close()
}
