package bench

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAPIRatioExternalClient is BenchmarkAPIRatio with the load
// generator in a child process (TestAPIClientProcess), as a load test
// tool would be: the benchmark process then holds the servers only, and
// its CPU per request is the server's alone. Both servers (the whole
// authenticated stack and the bare handler) are driven by the same child,
// in ten alternating slices, over keep-alive connections from 4 x
// GOMAXPROCS goroutines. It reports, per request, the wall time (client
// and server sharing the two cores, as before) and the server process's
// CPU time, and both ratios: "ratio" (bare time / authenticated time) and
// "server-cpu-ratio" (bare server CPU / authenticated server CPU: the
// throughput a CPU-bound server reaches with each, its client elsewhere).
func BenchmarkAPIRatioExternalClient(b *testing.B) {
	srv, tok := apiServer(b)
	bare := bareServer(b)
	c := startHTTPClientProcess(b)
	stackURL, bareURL := srv.URL+"/api/v1/permissions", bare.URL
	c.run(b, stackURL, tok, 64) // open the connections
	c.run(b, bareURL, "", 64)
	const slices = 10
	per := max(b.N/slices, 1)
	var wallS, cpuS, wallR, cpuR time.Duration
	b.ResetTimer()
	for i := range slices {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, stack := range order {
			cpu0 := processCPU()
			if stack {
				wallS += c.run(b, stackURL, tok, per)
				cpuS += processCPU() - cpu0
			} else {
				wallR += c.run(b, bareURL, "", per)
				cpuR += processCPU() - cpu0
			}
		}
	}
	n := float64(per * slices)
	b.ReportMetric(float64(wallS.Nanoseconds())/n, "auth-ns/op")
	b.ReportMetric(float64(wallR.Nanoseconds())/n, "bare-ns/op")
	b.ReportMetric(float64(cpuS.Nanoseconds())/n, "auth-server-cpu-ns/op")
	b.ReportMetric(float64(cpuR.Nanoseconds())/n, "bare-server-cpu-ns/op")
	b.ReportMetric(float64(wallR)/float64(wallS), "ratio")
	b.ReportMetric(float64(cpuR)/float64(cpuS), "server-cpu-ratio")
}

// httpClientProcess is the child process that sends the requests.
type httpClientProcess struct {
	in  io.Writer
	out *bufio.Scanner
}

func startHTTPClientProcess(b *testing.B) *httpClientProcess {
	b.Helper()
	in, out := startChild(b, "TestAPIClientProcess", "RELAIS_BENCH_HTTP_CLIENT_CHILD")
	return &httpClientProcess{in: in, out: bufio.NewScanner(out)}
}

// run has the child send n GET requests to url (with the bearer token if
// not empty) and returns the time they took, measured here.
func (c *httpClientProcess) run(b *testing.B, url, token string, n int) time.Duration {
	b.Helper()
	if token == "" {
		token = "-"
	}
	start := time.Now()
	if _, err := fmt.Fprintf(c.in, "%s %s %d\n", url, token, n); err != nil {
		b.Fatal(err)
	}
	for c.out.Scan() {
		line := c.out.Text()
		if line == "DONE" {
			return time.Since(start)
		}
		if strings.HasPrefix(line, "ERROR") {
			b.Fatal(line)
		}
	}
	b.Fatal("the HTTP client process ended")
	return 0
}

// TestAPIClientProcess is the load generator of
// BenchmarkAPIRatioExternalClient (it runs only as that child): for each
// line "URL TOKEN N" on its standard input it sends N requests and prints
// DONE, or ERROR and the reason.
func TestAPIClientProcess(t *testing.T) {
	if os.Getenv("RELAIS_BENCH_HTTP_CLIENT_CHILD") != "1" {
		t.Skip("the HTTP client process of BenchmarkAPIRatioExternalClient")
	}
	transports := map[string]*http.Transport{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		n, err := 0, fmt.Errorf("want URL TOKEN N")
		if len(f) == 3 {
			n, err = strconv.Atoi(f[2])
		}
		if err != nil {
			fmt.Println("ERROR", err)
			continue
		}
		url, token := f[0], f[1]
		tr := transports[url]
		if tr == nil {
			tr = &http.Transport{MaxIdleConnsPerHost: 64}
			transports[url] = tr
		}
		var left atomic.Int64
		left.Store(int64(n))
		var failed atomic.Value
		var wg sync.WaitGroup
		for range 4 * runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					req, _ := http.NewRequest("GET", url, nil)
					if token != "-" {
						req.Header.Set("Authorization", "Bearer "+token)
					}
					res, err := tr.RoundTrip(req)
					if err != nil {
						failed.Store(err.Error())
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					_ = res.Body.Close()
					if res.StatusCode != http.StatusOK {
						failed.Store("status " + res.Status)
						return
					}
				}
			})
		}
		wg.Wait()
		if msg, ok := failed.Load().(string); ok {
			fmt.Println("ERROR", msg)
			continue
		}
		fmt.Println("DONE")
	}
}

// startChild runs this test binary again as a child process running only
// the test named test, with the environment variable env set to 1 (the
// test skips itself without it), and returns its standard input and
// output; its standard error is this process's. The child ends when its
// input is closed, at the benchmark's cleanup, which waits for it.
func startChild(b *testing.B, test, env string) (io.WriteCloser, io.Reader) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1") // #nosec G204 -- this test binary
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Wait()
	})
	return in, out
}
