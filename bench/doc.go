// Package bench holds Relais's benchmarks. Each one runs beside a
// reference measured in the same run (raw PBKDF2, a bare net/http handler,
// raw AES-GCM...) so that results are read as ratios, which survive the
// machine they run on. Figures and method: bench/README.md. Run with
// `make bench`.
package bench
